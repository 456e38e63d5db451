"""Batch operations over many meters: set tariff, switch relays/valves, settings, recharge.

A task snapshots its meters (chosen by a selector) as items when created. Running it (now, or
by `run_due_batches` once `run_at` has come) turns each pending item into its effect, one
transaction per chunk: a meter command queued under the key `batch:<task>:<meter>` (the rows
services.relay.queue_command writes, inserted in bulk; the command executor delivers and confirms
them), or a database change (tariff, alert amounts, a recharge keyed `batch:<task>:<account>`). Keys make a re-run, a crash mid-chunk or two
workers at once harmless: nothing is done twice. Items follow their command to done / failed;
a failed item can be retried (a new command key `...:<attempt>`); a task can be cancelled.
Every step leaves an audit entry.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.money import Money
from services import audit, command_wake, meter_commands, relay, wallets
from services.batch_select import ACTIONS, Selector, check_params, select_meters
from services.errors import NotFound, ServiceError
from services.uow import in_transaction
from store.models import Account, BatchItem, BatchTask, Meter, MeterCommand, Tariff
from store.types import utcnow

log = logging.getLogger(__name__)
COMMAND_ACTIONS = frozenset({"relay_off", "relay_on", "time_sync"})
ITEM_STATES = ("pending", "sent", "done", "failed", "cancelled", "skipped")
OPEN_TASK = ("scheduled", "running")
CHUNK = 200
MAX_ITEMS = 50_000
__all__ = ["ACTIONS", "Selector", "create_task", "run_due_batches", "run_task", "progress", "retry_failed", "cancel_task"]


async def create_task(session: AsyncSession, selector: Selector, action: str, params: dict[str, Any], actor: str,
                      run_at: datetime | None = None, name: str = "", deadline_s: int = 3600,
                      max_attempts: int = 3, now: datetime | None = None) -> BatchTask:
    """A task over the meters `selector` picks today; it runs at `run_at` (default: now)."""
    now = now or utcnow()
    clean = await check_params(session, selector.site_id, action, params)
    if action in COMMAND_ACTIONS:
        clean["max_attempts"] = max(1, int(max_attempts))
    meters = await select_meters(session, selector)
    if not meters:
        raise ServiceError("no meter matches this selection")
    if len(meters) > MAX_ITEMS:
        raise ServiceError(f"a task may hold at most {MAX_ITEMS} meters")
    task = BatchTask(site_id=selector.site_id, name=name[:200], action=action, params=clean,
                     selector=selector.as_json(), state="scheduled", run_at=run_at or now,
                     deadline_s=max(1, int(deadline_s)), created_by=actor, created_at=now, total=len(meters))
    session.add(task)
    await session.flush()
    await session.execute(insert(BatchItem), [
        dict(task_id=task.id, meter_id=m, account_id=a, state="pending", attempt=0, updated_at=now) for m, a in meters])
    await audit.record(session, actor, "batch.create", "batch_task", task.id, None,
                       {"action": action, "params": clean, "selector": task.selector, "meters": len(meters),
                        "run_at": task.run_at.isoformat()}, site_id=task.site_id)
    return task


async def _task(session: AsyncSession, task_id: int, lock: bool = False) -> BatchTask:
    stmt = select(BatchTask).where(BatchTask.id == task_id)
    task = await session.scalar(stmt.with_for_update() if lock else stmt)
    if task is None:
        raise NotFound(f"batch task {task_id} not found")
    return task


def command_key(task_id: int, meter_id: int, attempt: int) -> str:
    return f"batch:{task_id}:{meter_id}" if attempt <= 1 else f"batch:{task_id}:{meter_id}:{attempt}"


async def _apply(session: AsyncSession, task: BatchTask, item: BatchItem, meter: Meter) -> None:
    """Do one item's database effect (commands are queued in bulk by `_queue_commands`)."""
    p = task.params
    if task.action == "set_tariff":
        tariff = await session.get(Tariff, int(p["tariff_id"]))
        if tariff is None or tariff.utility != meter.utility:
            item.state, item.error = "failed", f"tariff is for {tariff.utility if tariff else '?'} meters"
            return
        item.result = f"tariff {meter.tariff_id} -> {tariff.id}"
        meter.tariff_id, item.state = tariff.id, "done"
    elif item.account_id is None:
        item.state, item.result = "skipped", "no account on this meter"
    elif task.action == "alert_amounts":
        acc = await session.get(Account, item.account_id, with_for_update=True)
        assert acc is not None
        acc.alert_settings = {**(acc.alert_settings or {}), "thresholds_fen": dict(p["thresholds_fen"])}
        item.state, item.result = "done", "alert amounts set"
    else:
        await _recharge(session, task, item, meter)
        await audit.record(session, task.created_by, "batch.recharge", "account", item.account_id, None,
                           {"task": task.id, "meter_id": meter.id, "amount_fen": p["amount_fen"], "result": item.result},
                           site_id=task.site_id)


async def _recharge(session: AsyncSession, task: BatchTask, item: BatchItem, meter: Meter) -> None:
    acc = await wallets.get_account(session, int(item.account_id or 0))
    per_meter = acc.balance_model == "per_meter"
    key = f"batch:{task.id}:{acc.id}" + (f":{meter.id}" if per_meter else "")
    seen = await session.scalar(select(func.count()).select_from(BatchItem).where(
        BatchItem.task_id == task.id, BatchItem.account_id == acc.id, BatchItem.result.like("order %")))
    order = await wallets.recharge(session, acc.id, Money(int(task.params["amount_fen"])), key, provider="cash",
                                   meter_id=meter.id if per_meter else None, actor=task.created_by)
    once = "" if per_meter or not seen else " (account already recharged by this task)"
    item.state, item.result = "done", f"order {order.out_trade_no}{once}"[:300]


def command_kind(action: str, utility: str) -> str:
    return {"relay_off": relay.OFF_KIND, "relay_on": relay.ON_KIND}.get(action, {}).get(utility, "time_sync")


async def _queue_commands(session: AsyncSession, task: BatchTask, items: list[BatchItem],
                          meters: dict[int, Meter], now: datetime) -> None:
    """relay.queue_command for many meters in two statements: same rows, same once-per-key rule."""
    want = {command_key(task.id, i.meter_id, i.attempt): i for i in items}
    found = dict((await session.execute(select(MeterCommand.key, MeterCommand.id)
                                        .where(MeterCommand.key.in_(list(want))))).all())
    new = [dict(key=k, meter_id=i.meter_id, kind=command_kind(task.action, meters[i.meter_id].utility), params={},
                state="queued", attempts=0, reason=f"batch {task.id}", created_by=task.created_by, created_at=now,
                next_attempt_at=now, expires_at=now + timedelta(seconds=task.deadline_s)) for k, i in want.items()
           if k not in found]
    if new:
        rows = await session.execute(insert(MeterCommand).returning(MeterCommand.key, MeterCommand.id), new)
        made = dict(rows.all())
        found.update(made)
        command_wake.announce(session, {meters[i.meter_id].gateway_id for k, i in want.items() if k in made})
    for k, item in want.items():
        item.command_id, item.state = found[k], "sent"
        item.result = command_kind(task.action, meters[item.meter_id].utility)


async def run_chunk(session: AsyncSession, task_id: int, now: datetime, limit: int = CHUNK) -> int:
    """Apply up to `limit` pending items of a task; returns how many were applied."""
    task = await _task(session, task_id)
    if task.state not in OPEN_TASK:
        return 0
    if task.state == "scheduled":
        task.state, task.started_at = "running", now
        await audit.record(session, task.created_by, "batch.start", "batch_task", task.id, {"state": "scheduled"},
                           {"state": "running"}, site_id=task.site_id)
    stmt = (select(BatchItem).where(BatchItem.task_id == task_id, BatchItem.state == "pending")
            .order_by(BatchItem.id).limit(limit))
    if session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    items = list(await session.scalars(stmt))
    if not items:
        return 0
    meters = {m.id: m for m in await session.scalars(select(Meter).where(Meter.id.in_([i.meter_id for i in items])))}
    for item in items:
        item.attempt, item.updated_at = max(item.attempt, 1), now
    if task.action in COMMAND_ACTIONS:
        await _queue_commands(session, task, items, meters, now)
    for item in items if task.action not in COMMAND_ACTIONS else ():
        try:
            await _apply(session, task, item, meters[item.meter_id])
        except ServiceError as ex:  # refused before anything was written (services' contract)
            item.state, item.error = "failed", str(ex)[:500]
    await _audit_items(session, task, "batch.step", items, task.created_by)
    return len(items)


async def _audit_items(session: AsyncSession, task: BatchTask, action: str, items: list[BatchItem], actor: str) -> None:
    """One entry per step: which meters went to which state (errors and command ids included)."""
    after: dict[str, Any] = {}
    for item in items:
        after.setdefault(item.state, []).append(item.meter_id)
        if item.error:
            after.setdefault("errors", {})[str(item.meter_id)] = item.error[:120]
        if item.command_id:
            after.setdefault("commands", {})[str(item.meter_id)] = item.command_id
    await audit.record(session, actor, action, "batch_task", task.id, None, after, site_id=task.site_id)


async def sync_items(session: AsyncSession, task_id: int, now: datetime) -> int:
    """Items follow their command: confirmed -> done; failed/expired/cancelled -> failed; and a command
    still queued after `max_attempts` tries (the meter does not answer) is cancelled, its item failed."""
    task = await _task(session, task_id)
    limit = int(task.params.get("max_attempts") or 0)
    settled = MeterCommand.state.not_in(relay.PENDING)
    if limit:
        settled = or_(settled, and_(MeterCommand.state == "queued", MeterCommand.attempts >= limit))
    rows = (await session.execute(select(BatchItem, MeterCommand)
                                  .join(MeterCommand, MeterCommand.id == BatchItem.command_id)
                                  .where(BatchItem.task_id == task_id, BatchItem.state == "sent", settled))).all()
    changed = []
    for item, cmd in rows:
        if cmd.state in relay.PENDING:
            if not (limit and cmd.attempts >= limit and cmd.state == "queued"):
                continue
            if not await meter_commands.cancel(session, cmd.id, "system:batches", f"batch {task.id}: gave up"):
                continue
            item.error = f"no answer after {cmd.attempts} attempts: {cmd.last_error or ''}"[:500]
            item.state = "failed"
        else:
            item.state = "done" if cmd.state == "confirmed" else "failed"
            item.error = None if cmd.state == "confirmed" else f"command {cmd.state}: {cmd.last_error or ''}"[:500]
        item.updated_at = now
        changed.append(item)
    if changed:
        await _audit_items(session, task, "batch.settled", changed, "system:batches")
    return len(changed)


async def _finish(session: AsyncSession, task_id: int, now: datetime) -> None:
    task = await _task(session, task_id, lock=True)
    counts = await progress_counts(session, task_id)
    if task.state == "running" and not counts.get("pending") and not counts.get("sent"):
        task.state, task.finished_at = "done", now
        await audit.record(session, "system:batches", "batch.finish", "batch_task", task.id, {"state": "running"},
                           {"state": "done", "counts": counts}, site_id=task.site_id)


async def run_task(sessions: async_sessionmaker[AsyncSession], task_id: int, now: datetime | None = None) -> None:
    """Apply every pending item (one transaction per chunk), then follow settled commands."""
    now = now or utcnow()
    while await in_transaction(sessions, lambda s: run_chunk(s, task_id, now)):
        pass
    await in_transaction(sessions, lambda s: sync_items(s, task_id, now))
    await in_transaction(sessions, lambda s: _finish(s, task_id, now))


async def run_due_batches(sessions: async_sessionmaker[AsyncSession], now: datetime | None = None) -> list[int]:
    """The job: run tasks whose time has come and follow every task with commands in flight."""
    now = now or utcnow()
    async with sessions() as s:
        due = set(await s.scalars(select(BatchTask.id).where(BatchTask.state.in_(OPEN_TASK), BatchTask.run_at <= now)))
        due |= set(await s.scalars(select(BatchItem.task_id).where(BatchItem.state == "sent").distinct()))
    for task_id in sorted(due):
        try:
            await run_task(sessions, task_id, now)
        except Exception:  # noqa: BLE001 - one broken task must not hold up the others
            log.exception("batch task %s failed this pass; it is picked up again next time", task_id)
    return sorted(due)


async def progress_counts(session: AsyncSession, task_id: int) -> dict[str, int]:
    rows = await session.execute(select(BatchItem.state, func.count()).where(BatchItem.task_id == task_id)
                                 .group_by(BatchItem.state))
    return {state: int(n) for state, n in rows}


async def progress(session: AsyncSession, task_id: int) -> dict[str, Any]:
    """Live progress: the task's state and its items counted by state."""
    task = await _task(session, task_id)
    counts = await progress_counts(session, task_id)
    settled = sum(counts.get(s, 0) for s in ("done", "failed", "cancelled", "skipped"))
    return {"id": task.id, "state": task.state, "action": task.action, "total": task.total,
            "counts": {s: counts.get(s, 0) for s in ITEM_STATES},
            "settled_pct": settled * 100 // task.total if task.total else 100}


async def retry_failed(session: AsyncSession, task_id: int, actor: str, now: datetime | None = None) -> int:
    """Put failed items back to pending (a new attempt, so a new command key); the task runs again."""
    now = now or utcnow()
    task = await _task(session, task_id, lock=True)
    if task.state == "cancelled":
        raise ServiceError("a cancelled task cannot be retried")
    items = list(await session.scalars(select(BatchItem).where(BatchItem.task_id == task_id, BatchItem.state == "failed")))
    for item in items:
        item.state, item.attempt, item.error, item.updated_at = "pending", item.attempt + 1, None, now
    if items:
        task.state, task.finished_at, task.run_at = "running", None, now
    await audit.record(session, actor, "batch.retry", "batch_task", task.id, None, {"items": len(items)},
                       site_id=task.site_id)
    return len(items)


async def cancel_task(session: AsyncSession, task_id: int, actor: str, now: datetime | None = None) -> int:
    """Stop a task: pending items and commands not yet sent are cancelled; returns items cancelled."""
    now = now or utcnow()
    task = await _task(session, task_id, lock=True)
    if task.state not in OPEN_TASK:
        raise ServiceError(f"the task is {task.state}")
    n = 0
    for item in await session.scalars(select(BatchItem).where(BatchItem.task_id == task_id,
                                                              BatchItem.state.in_(("pending", "sent")))):
        if item.state == "sent" and not await meter_commands.cancel(session, int(item.command_id or 0), actor,
                                                                    f"batch {task.id} cancelled"):
            continue  # already on the wire: it settles and the item follows it
        item.state, item.updated_at, n = "cancelled", now, n + 1
    before = task.state
    task.state, task.finished_at = "cancelled", now
    await audit.record(session, actor, "batch.cancel", "batch_task", task.id, {"state": before},
                       {"state": "cancelled", "items_cancelled": n}, site_id=task.site_id)
    return n
