"""Asking the providers: the active query of orders whose notify never came, and the daily reconciliation.

Query schedule: an order still `created` is queried 1, 5 and 15 minutes after it was created,
then hourly until 24 h (the providers' notify retry window); a missed slot is not caught up
twice (one query covers every slot that has passed). At 24 h with no payment it is `closed`; a
payment reported later (by notify or reconciliation) still credits it, since closed is not final.
Recharge and bill orders (services.bill_payments) are queried and reconciled alike; a bill order's
ledger credit is its `billpay:order:<out_trade_no>` transaction (what settled the bill plus any change).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments.provider import Notice, PaymentProvider, ProviderError
from services.payment_refunds import send_refund
from services.bill_payments import payment_key
from services.payments import PAID_KINDS, handle_notice
from services.uow import in_transaction
from store.models import LedgerTransaction, Order, Posting, ProviderPayment, ReconciliationItem
from store.types import utcnow

log = logging.getLogger(__name__)
SCHEDULE_S: tuple[int, ...] = (60, 300, 900, *(3600 * h for h in range(1, 25)))
CREDITED = ("credited", "refunded")


@dataclass(frozen=True)
class QueryReport:
    queried: int
    credited: int
    closed: int
    errors: int


def slots_passed(created_at: datetime, now: datetime) -> int:
    """How many query slots of the schedule have come by `now`."""
    age_s = (now - created_at).total_seconds()
    return sum(1 for s in SCHEDULE_S if s <= age_s)


async def query_pending(sessions: async_sessionmaker[AsyncSession], providers: Mapping[str, PaymentProvider],
                        now: datetime | None = None) -> QueryReport:
    """Query every unpaid order whose next slot has come; a paid answer is applied like a notify."""
    now = now or utcnow()
    since = now - timedelta(seconds=SCHEDULE_S[-1] + 3600)
    async with sessions() as session:
        rows = (await session.execute(select(Order.id, Order.out_trade_no, Order.created_at, Order.raw).where(
            Order.kind.in_(PAID_KINDS), Order.state == "created", Order.created_at >= since))).all()
    queried = credited = closed = errors = 0
    for order_id, out_trade_no, created_at, raw in rows:
        due = slots_passed(created_at, now)
        if due <= int((raw or {}).get("queries", 0)):
            continue
        started = {slot.split(":")[0] for slot in (raw or {}).get("starts", {})}
        try:
            notices = [n for name in sorted(started & providers.keys())
                       if (n := await providers[name].query(out_trade_no)) is not None]
        except ProviderError as ex:
            log.warning("query of %s failed, next run tries again: %s", out_trade_no, ex)
            errors += 1
            continue
        queried += 1
        for notice in notices:
            if notice.status in ("paid", "refunded"):
                outcome = await in_transaction(sessions, lambda s, n=notice: handle_notice(s, n))
                credited += outcome.result == "credited"
        closed += await in_transaction(sessions, lambda s, i=order_id, d=due: _queried(s, i, d))
    return QueryReport(queried, credited, closed, errors)


async def _queried(session: AsyncSession, order_id: int, due: int) -> bool:
    order = await session.get(Order, order_id, with_for_update=True)
    if order is None:
        return False
    order.raw = {**(order.raw or {}), "queries": due}
    if due >= len(SCHEDULE_S) and order.state == "created":
        order.state, order.note = "closed", "no payment within 24 h"
        return True
    return False


async def retry_refunds(sessions: async_sessionmaker[AsyncSession], providers: Mapping[str, PaymentProvider],
                        now: datetime | None = None, after_s: int = 60) -> int:
    """Send again refunds still `refunding` (their number keeps it idempotent); returns how many settled."""
    cutoff = (now or utcnow()) - timedelta(seconds=after_s)
    async with sessions() as session:
        ids = list(await session.scalars(select(Order.id).where(
            Order.kind == "refund", Order.state == "refunding", Order.created_at <= cutoff,
            Order.provider.in_(list(providers)))))
    settled = 0
    for refund_id in ids:
        async with sessions() as session:
            settled += (await send_refund(session, refund_id, providers)).state != "refunding"
    return settled


# -- reconciliation ----------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    provider: str
    out_trade_no: str
    order_id: int | None
    kind: str
    ours_fen: int | None = None
    theirs_fen: int | None = None
    detail: str = ""


def compare(order: Order, theirs: Notice | None, ledger_fen: int, refunded_fen: int) -> list[Difference]:
    """Differences between one order (state, ledger credit, refunds) and the provider's record of it."""
    def diff(kind: str, ours: int | None, other: int | None, detail: str = "") -> Difference:
        return Difference(order.provider, order.out_trade_no, order.id, kind, ours, other, detail)

    credited = order.state in CREDITED
    out: list[Difference] = []
    if credited and ledger_fen != order.amount_fen:
        out.append(diff("ledger_differs", order.amount_fen, ledger_fen, "order amount vs ledger credit"))
    if theirs is None:
        return out + ([diff("missing_at_provider", order.amount_fen, None)] if credited else [])
    paid = theirs.status in ("paid", "refunded") or (theirs.status == "closed" and refunded_fen > 0)
    if paid and theirs.amount.fen != order.amount_fen:
        out.append(diff("amount_differs", order.amount_fen, theirs.amount.fen))
    if paid and not credited:
        out.append(diff("not_credited", 0, theirs.amount.fen, f"provider says {theirs.status}, we say {order.state}"))
    if credited and not paid:
        out.append(diff("not_paid_at_provider", order.amount_fen, 0, f"provider says {theirs.status}"))
    if theirs.refunded.is_positive and theirs.refunded.fen != refunded_fen:
        out.append(diff("refund_differs", refunded_fen, theirs.refunded.fen))
    return out


@dataclass(frozen=True)
class ReconReport:
    day: str
    checked: int
    differences: Sequence[Difference]


async def reconcile_day(sessions: async_sessionmaker[AsyncSession], providers: Mapping[str, PaymentProvider],
                        day: date, tz: str = "Asia/Shanghai") -> ReconReport:
    """Query each order of the local `day` at its provider, compare with the ledger, store the differences."""
    start = datetime.combine(day, time(0), ZoneInfo(tz))
    end = start + timedelta(days=1)
    async with sessions() as session:
        orders = list(await session.scalars(select(Order).where(
            Order.kind.in_(PAID_KINDS), Order.provider.in_(list(providers)),
            or_(Order.paid_at.between(start, end), Order.created_at.between(start, end))).order_by(Order.id)))
        books = {o.id: await _ledger_and_refunds(session, o) for o in orders}
        extras = list(await session.scalars(select(ProviderPayment).where(
            ProviderPayment.order_id.in_([o.id for o in orders]), ProviderPayment.role == "extra",
            ProviderPayment.status != "refunded")))
    found: list[Difference] = []
    for order in orders:
        try:
            theirs = await providers[order.provider].query(order.out_trade_no)
        except ProviderError as ex:
            found.append(Difference(order.provider, order.out_trade_no, order.id, "query_failed", detail=str(ex)[:300]))
            continue
        found += compare(order, theirs, *books[order.id])
    by_id = {o.id: o for o in orders}
    found += [Difference(e.provider, by_id[e.order_id].out_trade_no, e.order_id, "extra_not_refunded", 0,
                         e.amount_fen, f"{e.trade_no}: {e.status}") for e in extras]
    await in_transaction(sessions, lambda s: _store(s, day.isoformat(), found))
    return ReconReport(day.isoformat(), len(orders), found)


def credit_key(order: Order) -> str:
    """The ledger transaction that took an order's money in."""
    if order.kind == "bill":
        return f"billpay:{payment_key(order.out_trade_no)}"
    return f"recharge:{order.out_trade_no}"


async def _ledger_and_refunds(session: AsyncSession, order: Order) -> tuple[int, int]:
    credit = await session.scalar(select(func.coalesce(func.sum(Posting.amount_fen), 0))
                                  .join(LedgerTransaction, LedgerTransaction.id == Posting.txn_id)
                                  .where(LedgerTransaction.key == credit_key(order),
                                         Posting.amount_fen > 0))
    refunded = await session.scalar(select(func.coalesce(func.sum(Order.amount_fen), 0)).where(
        Order.refund_of == order.id, Order.kind == "refund", Order.state == "refunded"))
    return int(credit or 0), int(refunded or 0)


async def _store(session: AsyncSession, day: str, found: list[Difference]) -> None:
    """Replace the day's rows: a rerun reports what is still different now."""
    await session.execute(delete(ReconciliationItem).where(ReconciliationItem.day == day))
    seen: set[tuple[str, str, str]] = set()
    for d in found:
        if (d.provider, d.out_trade_no, d.kind) in seen:
            continue
        seen.add((d.provider, d.out_trade_no, d.kind))
        session.add(ReconciliationItem(day=day, provider=d.provider, out_trade_no=d.out_trade_no,
                                       order_id=d.order_id, kind=d.kind, ours_fen=d.ours_fen,
                                       theirs_fen=d.theirs_fen, detail=d.detail[:300]))
