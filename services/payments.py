"""Online recharges: open an order at a provider, and turn each verified notice into one credit.

The rules (payments/README.md has the adapter side):
- An order row is committed before the provider hears of it, so a notify normally finds it. If a
  notify still arrives first (a replica lagging, a crash between insert and commit), the order is
  unknown: we answer failure, the provider retries (Alipay 4m, 10m, ...; WeChat 15s, 15s, 30s, ...)
  and the retry, after the commit, credits. The active query (services.payment_checks) also finds it.
- One notice, one transaction: the order row is locked, the credit (ledger key
  `recharge:<out_trade_no>`), the meter-side push (a queued meter command), the receipt
  (outbox topic `notify`, queued once by wallets.credit_order) and the audit entry commit together.
  Repeats are no-ops that still ack.
- A paid (credited) order is final: closed/failed/pending notices never downgrade it.
- Amount / app id / merchant / currency mismatches become a PaymentConflict for staff and are
  acknowledged, never credited.
- An order may be open at more than one provider (the tenant switched channel). The first payment
  credits; any later payment for the same order is an `extra` ProviderPayment, refunded in full
  by the `payment_refund` outbox job (services.payment_refunds).
- A bill order (kind `bill`, services.bill_payments) is paid the same way; its credit settles the
  bill (services.postpaid.pay_bill, ledger key `billpay:order:<out_trade_no>`) instead of a top-up.
- After a refund: a repeated `paid` notice is a no-op (the ledger key exists); a `refunded`
  notice confirms our refund order; refunds we did not make become a conflict; a WeChat refund
  that ended CLOSED/ABNORMAL gives the money back to the wallet (services.payment_refunds).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from billing.money import Money
from payments.provider import Notice, NoticeMismatch, PaymentProvider, PayRequest
from services import audit, meter_credit, outbox, wallets
from services.errors import Conflict, NotFound
from store.models import Account, Meter, Order, PaymentConflict, ProviderPayment, Site
from store.types import utcnow

log = logging.getLogger(__name__)
REFUND_TOPIC = "payment_refund"
outbox.register_topic(REFUND_TOPIC, "refund_extra_payment")
OPEN_STATES = ("created", "closed", "failed", "conflict")  # not paid yet: a payment may still come
PAID_KINDS = ("recharge", "bill")  # orders a provider is paid for: a wallet top-up, or a bill (services.bill_payments)
# built once: every notice runs them
_PAID_ORDER = select(Order).where(Order.out_trade_no == bindparam("out_trade_no"),
                                  Order.kind.in_(PAID_KINDS)).with_for_update()
_ACCOUNT_AND_SITE = (select(Account, Site).join(Site, Site.id == Account.site_id)
                     .where(Account.id == bindparam("account_id")).with_for_update(of=Account)
                     .execution_options(populate_existing=True))


@dataclass(frozen=True)
class NoticeOutcome:
    """What a notice did; `ack` is what the provider is told (False: it will retry)."""

    ack: bool
    result: str  # credited | duplicate | extra_payment | conflict | unknown_order | ignored | refund_*


async def create_payment(session: AsyncSession, account_id: int, amount: Money, provider: PaymentProvider,
                         channel: str, idempotency_key: str, openid: str | None = None,
                         meter_id: int | None = None, *, notify_url: str, subject: str = "充值",
                         return_url: str | None = None, actor: str | None = None) -> Order:
    """Commit a `created` order, then open it at the provider (outside any transaction), store the PayStart.

    Takes a session with no transaction open; it commits twice. The same key returns the same
    order; the same key with another provider or channel opens the same order there too.
    """
    order = await _open_order(session, account_id, wallets.require_money(amount), provider.name, channel,
                              idempotency_key, meter_id, actor)
    await session.commit()
    return await open_at_provider(session, order, provider, channel, subject, notify_url, openid, return_url)


async def open_at_provider(session: AsyncSession, order: Order, provider: PaymentProvider, channel: str,
                           subject: str, notify_url: str, openid: str | None, return_url: str | None) -> Order:
    """Open a committed `created` order at `provider` once per provider and channel; store its PayStart."""
    starts = dict((order.raw or {}).get("starts", {}))
    slot = f"{provider.name}:{channel}"
    if order.state != "created" or slot in starts:
        return order
    start = await provider.create(PayRequest(order.out_trade_no, Money(order.amount_fen), subject, channel,
                                             notify_url, openid=openid, return_url=return_url))
    locked = await session.get(Order, order.id, with_for_update=True, populate_existing=True)
    assert locked is not None
    raw = dict(locked.raw or {})
    raw["starts"] = {**raw.get("starts", {}), slot: asdict(start)}
    locked.raw = raw
    await session.commit()
    return locked


async def _open_order(session: AsyncSession, account_id: int, amount: Money, provider: str, channel: str,
                      key: str, meter_id: int | None, actor: str | None) -> Order:
    existing = await session.scalar(select(Order).where(Order.idempotency_key == key))
    if existing is None:
        acc = await wallets.get_account(session, account_id)
        if acc.state != "open":
            raise Conflict(f"account {acc.code} is closed")
        await wallets.wallet_for(session, acc, meter_id)
        existing = Order(site_id=acc.site_id, account_id=acc.id, meter_id=meter_id, kind="recharge",
                         provider=provider, channel=channel, amount_fen=amount.fen, state="created",
                         idempotency_key=key, out_trade_no=wallets.new_trade_no("P"), actor=actor, raw={})
        session.add(existing)
        try:
            await session.flush()
        except IntegrityError:  # the same key, created concurrently: use the winner's order
            await session.rollback()
            existing = await session.scalar(select(Order).where(Order.idempotency_key == key))
            if existing is None:
                raise
    if (existing.account_id, existing.amount_fen, existing.kind) != (account_id, amount.fen, "recharge"):
        raise Conflict(f"idempotency key {key!r} was already used for a different order")
    return existing


async def handle_notice(session: AsyncSession, notice: Notice) -> NoticeOutcome:
    """Apply one verified notice (from a notify or a query) in the caller's transaction."""
    order = await session.scalar(_PAID_ORDER, {"out_trade_no": notice.out_trade_no})
    if order is None:
        log.warning("%s notice for unknown order %s: answered failure, the provider will retry",
                    notice.provider, notice.out_trade_no)
        return NoticeOutcome(False, "unknown_order")
    if notice.status == "paid" and "refund_status" in notice.raw:
        return await payment_refunds.refund_not_done(session, order, notice)
    if notice.status == "paid":
        return await _paid(session, order, notice)
    if notice.status == "refunded":
        return await payment_refunds.refund_confirmed(session, order, notice)
    if notice.status in ("closed", "failed") and order.state == "created":
        order.state, order.note = notice.status, f"{notice.provider} says {notice.status}"
        return NoticeOutcome(True, notice.status)
    return NoticeOutcome(True, "ignored")  # pending, or a late closed/failed: never a downgrade


async def _paid(session: AsyncSession, order: Order, notice: Notice) -> NoticeOutcome:
    if notice.amount.fen != order.amount_fen:
        await add_conflict(session, notice, "amount", Money(order.amount_fen).to_yuan_str(),
                           notice.amount.to_yuan_str(), order)
        if order.state in ("created", "closed", "failed"):
            order.state = "conflict"
        return NoticeOutcome(True, "conflict")
    # A primary payment is recorded in the same transaction that moves the order out of OPEN_STATES
    # (credit_order / credit_bill_order), under this order's row lock: an open order has none.
    if order.state not in OPEN_STATES:
        seen = await session.scalar(select(ProviderPayment.id).where(
            ProviderPayment.provider == notice.provider, ProviderPayment.trade_no == notice.trade_no))
        return NoticeOutcome(True, "duplicate") if seen is not None else await _extra(session, order, notice)
    if not await outbox.insert_ignoring(session, ProviderPayment, dict(
            order_id=order.id, provider=notice.provider, trade_no=notice.trade_no, amount_fen=notice.amount.fen,
            role="primary", status="credited", created_at=utcnow()), ["provider", "trade_no"]):
        log.warning("%s payment %s was already recorded for another order than %s: not credited again",
                    notice.provider, notice.trade_no, order.out_trade_no)
        return NoticeOutcome(True, "duplicate")
    if order.kind == "bill":
        _mark_paid(order, notice)
        await bill_payments.credit_bill_order(session, order)
        return NoticeOutcome(True, "credited")
    acc, site = await _lock_account(session, order.account_id)  # the lock order: account,
    meters = await meter_credit.lock_meters(session, acc)  # then its meters, read once for the rules below
    _mark_paid(order, notice)  # after the locking reads (they autoflush): the order then takes one UPDATE
    if await wallets.credit_order(session, order, actor=f"{notice.provider}:notify", account=acc, meters=meters):
        await _after_credit(session, order, acc, meters)
    del site  # held to here: the session keeps loaded objects weakly, and the credit's alerts read the site
    return NoticeOutcome(True, "credited")


def _mark_paid(order: Order, notice: Notice) -> None:
    order.provider, order.provider_trade_no = notice.provider, notice.trade_no
    order.paid_at = notice.paid_at or utcnow()


async def _lock_account(session: AsyncSession, account_id: int) -> tuple[Account, Site]:
    """The order's account, locked (as wallets.get_account(lock=True)), and its site, in one statement."""
    row = (await session.execute(_ACCOUNT_AND_SITE, {"account_id": account_id})).one_or_none()
    if row is None:
        raise NotFound(f"account {account_id} not found")
    return row[0], row[1]


async def _after_credit(session: AsyncSession, order: Order, acc: Account, meters: list[Meter]) -> None:
    """The credit's follow-ups, in its transaction: meter-side push and audit.

    The receipt was queued by wallets.credit_order (key `payment_received:recharge:<out_trade_no>`);
    a second one here would reach the tenant twice.
    """
    meter = _meter_side_meter(order, meters)
    if meter is not None:  # the order's lock and state make this once-only: no command has its key yet
        await meter_credit.queue_credit(session, meter.id, Money(order.amount_fen), f"credit:{order.out_trade_no}",
                                        actor=f"{order.provider}:notify", held_by=(acc, meter), up_to_balance=True,
                                        new_key=True)
    await audit.record(session, f"{order.provider}:notify", "payment.credited", "order", order.id,
                       after={"amount_fen": order.amount_fen, "trade_no": order.provider_trade_no},
                       site_id=order.site_id)


def _meter_side_meter(order: Order, meters: list[Meter]) -> Meter | None:
    """The meter that keeps its own balance and should receive this credit, if any."""
    mine = [m for m in meters if order.meter_id in (None, m.id)]
    if len(mine) == 1 and mine[0].billing_side == "meter":
        return mine[0]
    return None


async def _extra(session: AsyncSession, order: Order, notice: Notice) -> NoticeOutcome:
    """The order was already paid: keep this payment apart and have it refunded in full."""
    payment = ProviderPayment(order_id=order.id, provider=notice.provider, trade_no=notice.trade_no,
                              amount_fen=notice.amount.fen, role="extra", status="refund_due")
    session.add(payment)
    await session.flush()
    payment.refund_no = f"X{payment.id}{order.out_trade_no}"[:64]
    await outbox.write(session, f"payment-refund:{payment.id}", REFUND_TOPIC, {"payment_id": payment.id})
    await audit.record(session, f"{notice.provider}:notify", "payment.extra", "order", order.id,
                       after={"trade_no": notice.trade_no, "amount_fen": notice.amount.fen,
                              "provider": notice.provider}, reason="order paid twice: refunding the extra",
                       site_id=order.site_id)
    return NoticeOutcome(True, "extra_payment")


async def add_conflict(session: AsyncSession, notice: Notice, field: str, expected: str, actual: str,
                       order: Order | None = None) -> PaymentConflict:
    """Record an authentic notice we will not credit, once per (notice, field)."""
    key = f"{notice.provider}:{notice.out_trade_no}:{notice.trade_no}:{notice.status}:{field}:{actual}"[:200]
    row = await session.scalar(select(PaymentConflict).where(PaymentConflict.key == key))
    if row is not None:
        return row
    row = PaymentConflict(key=key, provider=notice.provider, out_trade_no=notice.out_trade_no,
                          trade_no=notice.trade_no, order_id=order.id if order else None, field=field,
                          expected=expected[:100], actual=actual[:100], raw=_plain(notice.raw))
    session.add(row)
    await session.flush()
    log.warning("payment conflict %s for %s: %s is %r, expected %r", notice.provider, notice.out_trade_no,
                field, actual, expected)
    return row


async def record_mismatch(session: AsyncSession, mismatch: NoticeMismatch) -> NoticeOutcome:
    """An authentic notice for another app id / merchant / currency: a conflict, acknowledged."""
    notice = mismatch.notice
    order = await session.scalar(select(Order).where(Order.out_trade_no == notice.out_trade_no))
    await add_conflict(session, notice, mismatch.field, mismatch.expected, mismatch.actual, order)
    return NoticeOutcome(True, "conflict")


def _plain(raw: dict[str, Any]) -> dict[str, Any]:
    return {str(k): v if isinstance(v, (str, int, float, bool, type(None), dict, list)) else str(v)
            for k, v in raw.items()}


from services import bill_payments, payment_refunds  # noqa: E402  (they build on the names above)
