"""Job functions, shared by the arq worker and the in-process runner. Jobs may run more than once:
each checks the outbox row first and acks it in the same transaction as its effect.

ctx keys: "sessions" (async_sessionmaker), "channels" (name -> Channel), "enqueuer"
(services.outbox.Enqueuer), optional "clock" (() -> aware datetime), "job_try" (set by the runner).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from arq import Retry
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services import alerting, notify, outbox
from services.uow import in_transaction
from store.models import LedgerAccount
from store.types import utcnow

log = logging.getLogger(__name__)
MAX_TRIES = 8
RETRY_DELAYS_S = (1, 5, 15, 60, 120, 300, 600)

Ctx = dict[str, Any]
RollupHook = Callable[[Ctx, datetime], Awaitable[None]]
_rollup_hooks: list[RollupHook] = []


def register_daily_rollup(hook: RollupHook) -> None:
    """Have `hook(ctx, now)` run by the daily roll-up cron (once, however often registered)."""
    if hook not in _rollup_hooks:
        _rollup_hooks.append(hook)


def retry_delay_s(job_try: int) -> int:
    """Backoff after the `job_try`-th failed try (the same in arq and in-process)."""
    return RETRY_DELAYS_S[min(job_try, len(RETRY_DELAYS_S)) - 1]


def now_of(ctx: Ctx) -> datetime:
    clock = ctx.get("clock")
    return clock() if clock is not None else utcnow()


async def guarded(ctx: Ctx, key: str, body: Callable[[], Awaitable[Any]]) -> Any:
    """Run a job body; a failure is noted on the outbox row and retried with backoff."""
    try:
        return await body()
    except Exception as ex:
        try_no = int(ctx.get("job_try", 1))
        log.warning("job %s failed (try %d): %s", key, try_no, ex)
        try:
            await outbox.note_error(ctx["sessions"], key, f"{type(ex).__name__}: {ex}")
        except Exception:  # noqa: BLE001 - the database may be what failed
            log.debug("could not note the error on %s", key)
        raise Retry(defer=retry_delay_s(try_no)) from ex


async def dispatch_notify(ctx: Ctx, key: str) -> int:
    """Topic notify: plan deliveries and ack in one transaction, then send those due now."""
    sessions, channels, now = ctx["sessions"], ctx["channels"], now_of(ctx)

    async def plan(session: AsyncSession) -> list[int] | None:
        row = await outbox.load(session, key)
        if row is None or row.done_at is not None:
            return None
        ids = await notify.plan_deliveries(session, key, row.payload, channels, now)
        await outbox.ack(session, key, now)
        return ids

    async def body() -> int:
        ids = await in_transaction(sessions, plan)
        if ids:
            return (await notify.send_due(sessions, channels, now, ids=ids)).sent
        return 0

    return int(await guarded(ctx, key, body))


JOBS: tuple[Callable[..., Awaitable[Any]], ...] = (dispatch_notify,)
_extra_jobs: list[Callable[..., Awaitable[Any]]] = []


def register_job(topic: str, job: Callable[..., Awaitable[Any]]) -> None:
    """Route outbox `topic` to `job(ctx, key)` (register before the worker is built).

    The job must check its outbox row first (jobs run at least once) and ack it
    (services.outbox.ack) in the transaction of its effect; `guarded` gives the retry rule.
    """
    if job not in _extra_jobs:
        _extra_jobs.append(job)
    outbox.register_topic(topic, job.__qualname__)  # the name arq files a job function under


def all_jobs() -> tuple[Callable[..., Awaitable[Any]], ...]:
    """The built-in jobs and those registered by other modules."""
    return JOBS + tuple(_extra_jobs)


# -- cron ---------------------------------------------------------------------------------


async def sweep_outbox(ctx: Ctx) -> int:
    """Enqueue outbox rows that are new or were never acknowledged."""
    timeout = int(ctx.get("ack_timeout_s", outbox.DEFAULT_ACK_TIMEOUT_S))
    report = await outbox.relay_pending(ctx["sessions"], ctx["enqueuer"], now_of(ctx), timeout)
    return report.enqueued


async def deliver_notifications(ctx: Ctx) -> int:
    """Send deliveries whose time came: quiet hours over, retries due, expired send leases."""
    return (await notify.send_due(ctx["sessions"], ctx["channels"], now_of(ctx))).sent


async def alert_repeats(ctx: Ctx) -> int:
    """Re-send due low-balance repeats (billing.alerts.due_repeats), then relay them."""
    now = now_of(ctx)

    async def step(session: AsyncSession) -> int:
        rows = await session.execute(select(LedgerAccount.account_id, func.sum(LedgerAccount.balance_fen))
                                     .where(LedgerAccount.account_id.is_not(None),
                                            LedgerAccount.code.like("wallet:%"))
                                     .group_by(LedgerAccount.account_id))
        balances = {int(a): int(b) for a, b in rows.tuples() if a is not None}
        return await alerting.send_due_repeats(session, now, balances)

    count = await in_transaction(ctx["sessions"], step)
    if count and ctx.get("enqueuer") is not None:
        await outbox.relay_pending(ctx["sessions"], ctx["enqueuer"], now)
    return count


async def daily_rollup(ctx: Ctx) -> int:
    """Placeholder for daily roll-ups: runs whatever other modules registered."""
    now = now_of(ctx)
    for hook in _rollup_hooks:
        try:
            await hook(ctx, now)
        except Exception:  # noqa: BLE001 - one failing roll-up must not stop the others
            log.exception("daily roll-up %s failed", getattr(hook, "__name__", hook))
    return len(_rollup_hooks)


async def staff_digest(ctx: Ctx) -> int:
    """Each site's daily digest for staff, at the site's local DIGEST_HOUR (once per day by key)."""
    from jobs.digest import queue_digests

    now = now_of(ctx)
    count = await in_transaction(ctx["sessions"], lambda s: queue_digests(s, now))
    if count and ctx.get("enqueuer") is not None:
        await outbox.relay_pending(ctx["sessions"], ctx["enqueuer"], now)
    return count


async def scan_lost_links(ctx: Ctx) -> int:
    """Meters and gateways silent past their site's lost_after_s: one alert per outage."""
    from jobs.digest import queue_lost_links

    now = now_of(ctx)
    count = await in_transaction(ctx["sessions"], lambda s: queue_lost_links(s, now))
    if count and ctx.get("enqueuer") is not None:
        await outbox.relay_pending(ctx["sessions"], ctx["enqueuer"], now)
    return count
