"""The provider notify routes: verify the signature first, apply in one transaction, answer the exact ack.

`/payments/alipay/notify` and `/payments/wechatpay/notify`. The answer goes out within the
providers' 5 s: parsing does no I/O, and if the database takes longer than `ACK_DEADLINE_S` we
answer failure (the provider retries) while the transaction finishes on its own; its repeat is
then a no-op.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from meterpay.web import SESSIONS
from payments.provider import NoticeMismatch, PaymentProvider, SignatureError
from services.payments import NoticeOutcome, handle_notice, record_mismatch
from services.uow import in_transaction

log = logging.getLogger(__name__)
ACK_DEADLINE_S = 4.5
AfterCommit = Callable[[NoticeOutcome], Awaitable[None]]


@dataclass
class PaymentWiring:
    """What the notify views need: providers by name and an optional post-commit hook."""

    providers: dict[str, PaymentProvider] = field(default_factory=dict)
    after_commit: AfterCommit | None = None  # e.g. relay the outbox to the job queue at once
    background: set[asyncio.Task[object]] = field(default_factory=set)


PAYMENTS = web.AppKey("payments", PaymentWiring)


def setup_payment_routes(app: web.Application, providers: Mapping[str, PaymentProvider] | None = None,
                         after_commit: AfterCommit | None = None) -> PaymentWiring:
    """Mount the notify routes; without `providers` they are built from settings at startup."""
    wiring = PaymentWiring(dict(providers or {}), after_commit)
    app[PAYMENTS] = wiring
    if providers is None:
        from payments.registry import providers_ctx
        app.cleanup_ctx.append(providers_ctx)
    app.on_cleanup.append(_drain)
    app.router.add_post("/payments/{provider:alipay|wechatpay}/notify", notify)
    return wiring


async def notify(request: web.Request) -> web.Response:
    """One provider notify: SignatureError -> failure; mismatch -> conflict + success; else apply."""
    wiring = request.app[PAYMENTS]
    name = request.match_info["provider"]
    provider = wiring.providers.get(name)
    if provider is None:
        raise web.HTTPNotFound(text=f"{name} payments are not configured")
    body = await request.read()
    work: Callable[[AsyncSession], Awaitable[NoticeOutcome]]
    try:
        notice = provider.parse_notify(request.headers, body)
        work = lambda session: handle_notice(session, notice)  # noqa: E731
    except SignatureError as ex:
        log.warning("%s notify refused: %s", name, ex)
        return _answer(provider.ack(False))
    except NoticeMismatch as ex:
        mismatch = ex
        work = lambda session: record_mismatch(session, mismatch)  # noqa: E731
    outcome = await _within_deadline(request.app, wiring, work)
    if outcome is not None and outcome.ack and wiring.after_commit is not None:
        _spawn(wiring, wiring.after_commit(outcome))
    return _answer(provider.ack(outcome is not None and outcome.ack))


async def _within_deadline(app: web.Application, wiring: PaymentWiring,
                           work: Callable[[AsyncSession], Awaitable[NoticeOutcome]]) -> NoticeOutcome | None:
    task = _spawn(wiring, in_transaction(app[SESSIONS], work))
    try:
        return await asyncio.wait_for(asyncio.shield(task), ACK_DEADLINE_S)
    except TimeoutError:
        log.warning("notify not applied within %.1f s: answered failure, the provider retries", ACK_DEADLINE_S)
    except Exception:  # noqa: BLE001 - any database failure: the provider retries later
        log.exception("notify could not be applied; answered failure")
    return None


def _spawn(wiring: PaymentWiring, coro: Awaitable[object]) -> asyncio.Task[object]:
    task: asyncio.Task[object] = asyncio.ensure_future(coro)
    wiring.background.add(task)
    task.add_done_callback(wiring.background.discard)
    task.add_done_callback(_log_failure)
    return task


def _log_failure(task: asyncio.Task[object]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("payment background work failed: %r", task.exception())


async def _drain(app: web.Application) -> None:
    tasks = list(app[PAYMENTS].background)
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


def _answer(ack: tuple[int, str, bytes]) -> web.Response:
    status, content_type, body = ack
    return web.Response(status=status, body=body, content_type=content_type)
