"""Refunds to the original payment: tenant refunds (ledger wallet -> cash) and automatic refunds of extra payments.

A tenant refund is booked first (wallet -> cash:<provider>, never more than the balance nor the
order's refundable rest; state `refunding`), committed, then sent to the provider with the refund
order's own number as the provider's idempotency key. `success` settles it (`refunded`); a
definite refusal, or a refund the provider later reports CLOSED/ABNORMAL, voids the booking
(cash -> wallet, key `refund-void:<no>`) and marks it `failed`; `processing` waits for the
provider's refund notice. An extra payment (an order paid twice) never reached the ledger: it is
refunded in full by the `payment_refund` outbox job and recorded on its ProviderPayment row.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.ledger import cash_code, transfer
from billing.money import Money
from payments.provider import Notice, PaymentProvider, ProviderError, ProviderRefused
from services import audit, ledger, outbox, wallets
from services.errors import Conflict, NotFound, ServiceError
from services.payments import NoticeOutcome, add_conflict
from services.uow import in_transaction
from store.models import Order, ProviderPayment
from store.types import utcnow

log = logging.getLogger(__name__)
ONLINE = ("alipay", "wechatpay")
FINAL_REFUND = {"success": "refunded", "closed": "failed", "abnormal": "failed"}


async def refund_order(session: AsyncSession, order_id: int, amount: Money, key: str, *,
                       providers: Mapping[str, PaymentProvider], actor: str = "staff") -> Order:
    """Refund part or all of a paid order to the payer's original account; returns the refund order.

    Takes a session with no transaction open (it commits). The same key returns the same refund.
    """
    amount = wallets.require_money(amount)
    refund = await _book(session, order_id, amount, key, providers, actor)
    await session.commit()
    if refund.state != "refunding":
        return refund
    return await send_refund(session, refund.id, providers)


async def send_refund(session: AsyncSession, refund_id: int, providers: Mapping[str, PaymentProvider]) -> Order:
    """Ask the provider for a booked refund (safe to repeat: the refund number is its key)."""
    refund = await session.get(Order, refund_id, populate_existing=True)
    orig = await session.get(Order, refund.refund_of) if refund and refund.refund_of else None
    if refund is None or orig is None:
        raise NotFound(f"refund {refund_id} not found")
    await session.commit()
    note = ""
    try:
        status = await providers[orig.provider].refund(orig.out_trade_no, refund.out_trade_no,
                                                       Money(refund.amount_fen), Money(orig.amount_fen))
    except ProviderRefused as ex:
        status, note = "closed", f"refused: {ex}"
    except ProviderError as ex:
        log.warning("refund %s not sent yet (%s); it is retried", refund.out_trade_no, ex)
        return refund
    if status in FINAL_REFUND:
        await settle(session, refund.id, FINAL_REFUND[status], note or f"provider: {status}")
    await session.commit()
    return refund


async def _book(session: AsyncSession, order_id: int, amount: Money, key: str,
                providers: Mapping[str, PaymentProvider], actor: str) -> Order:
    existing = await session.scalar(select(Order).where(Order.idempotency_key == key))
    if existing is not None:
        if (existing.kind, existing.refund_of, existing.amount_fen) != ("refund", order_id, amount.fen):
            raise Conflict(f"idempotency key {key!r} was already used for something else")
        return existing
    orig = await session.get(Order, order_id, with_for_update=True)
    if orig is None or orig.kind != "recharge":
        raise NotFound(f"order {order_id} not found")
    if orig.state not in ("credited", "refunded") or orig.provider not in providers:
        raise ServiceError(f"order {orig.out_trade_no} ({orig.state}, {orig.provider}) cannot be refunded online")
    done = await session.scalar(select(func.coalesce(func.sum(Order.amount_fen), 0)).where(
        Order.refund_of == orig.id, Order.kind == "refund", Order.state != "failed"))
    if int(done or 0) + amount.fen > orig.amount_fen:
        raise ServiceError(f"refund {amount} exceeds what is left of {Money(orig.amount_fen)} "
                           f"(already refunded {Money(int(done or 0))})")
    refund = await wallets.refund(session, orig.account_id, amount, key, provider=orig.provider,
                                  meter_id=orig.meter_id, actor=actor, note=f"refund of {orig.out_trade_no}")
    refund.refund_of, refund.state, refund.channel = orig.id, "refunding", orig.channel
    await audit.record(session, actor, "payment.refund", "order", orig.id,
                       after={"refund": refund.out_trade_no, "amount_fen": amount.fen}, site_id=orig.site_id)
    return refund


async def settle(session: AsyncSession, refund_id: int, state: str, note: str) -> None:
    """A refund's final state, once: `refunded`, or `failed` with the wallet given back."""
    refund = await session.get(Order, refund_id, with_for_update=True, populate_existing=True)
    if refund is None or refund.state != "refunding":
        return
    refund.state, refund.note = state, note[:300]
    orig = await session.get(Order, refund.refund_of, with_for_update=True) if refund.refund_of else None
    if state == "failed":
        acc = await wallets.get_account(session, refund.account_id, lock=True)
        wallet = await wallets.wallet_for(session, acc, refund.meter_id)
        txn = transfer(f"refund-void:{refund.out_trade_no}", "refund_void", cash_code(refund.provider), wallet,
                       Money(refund.amount_fen), memo=f"refund {refund.out_trade_no} failed: money back")
        await ledger.post_id(session, acc.site_id, txn, actor="system:payments", order_id=refund.id,
                             account_id=acc.id)
    elif orig is not None:
        done = await session.scalar(select(func.coalesce(func.sum(Order.amount_fen), 0)).where(
            Order.refund_of == orig.id, Order.kind == "refund", Order.state == "refunded"))
        if int(done or 0) >= orig.amount_fen:
            orig.state = "refunded"
    await audit.record(session, "system:payments", f"payment.refund_{state}", "order", refund.id,
                       after={"amount_fen": refund.amount_fen}, reason=note, site_id=refund.site_id)


def _refund_no(notice: Notice) -> str:
    return str(notice.raw.get("out_refund_no") or notice.raw.get("out_biz_no") or "")


async def refund_confirmed(session: AsyncSession, order: Order, notice: Notice) -> NoticeOutcome:
    """A `refunded` notice: settle the refund it names; a refund we never asked for is a conflict."""
    no = _refund_no(notice)
    extra = await session.scalar(select(ProviderPayment).where(
        ProviderPayment.order_id == order.id, ProviderPayment.refund_no == no)) if no else None
    if extra is not None:
        if extra.status in ("refund_due", "refunding"):
            extra.status, extra.refunded_at = "refunded", utcnow()
        return NoticeOutcome(True, "refund_confirmed")
    ours = {r.out_trade_no: r for r in await session.scalars(select(Order).where(
        Order.refund_of == order.id, Order.kind == "refund"))}
    if no in ours:
        await settle(session, ours[no].id, "refunded", f"{notice.provider} refund notice")
    booked = sum(r.amount_fen for r in ours.values() if r.state != "failed")
    unknown = (no and no not in ours) or (notice.provider == order.provider and notice.refunded.fen > booked)
    if unknown:
        await add_conflict(session, notice, "refund", Money(booked).to_yuan_str(),
                           notice.refunded.to_yuan_str(), order)
        return NoticeOutcome(True, "refund_unknown")
    return NoticeOutcome(True, "refund_confirmed")


async def refund_not_done(session: AsyncSession, order: Order, notice: Notice) -> NoticeOutcome:
    """A WeChat REFUND.CLOSED / REFUND.ABNORMAL: the money did not go back; tell staff, restore the wallet."""
    no, status = _refund_no(notice), str(notice.raw.get("refund_status"))
    extra = await session.scalar(select(ProviderPayment).where(
        ProviderPayment.order_id == order.id, ProviderPayment.refund_no == no)) if no else None
    if extra is not None and extra.status != "refunded":
        extra.status, extra.last_error = "refund_failed", f"refund {status}"
    refund = await session.scalar(select(Order).where(Order.out_trade_no == no, Order.kind == "refund"))
    if refund is not None:
        await settle(session, refund.id, "failed", f"{notice.provider} refund {status}")
    await add_conflict(session, notice, "refund_status", "SUCCESS", status, order)
    return NoticeOutcome(True, "refund_failed")


async def refund_extra(sessions: async_sessionmaker[AsyncSession],
                               providers: Mapping[str, PaymentProvider], payment_id: int) -> str:
    """The `payment_refund` job: refund an extra payment in full, record it, ack its outbox row.

    ProviderError propagates (the job retries); the refund number makes a repeat harmless.
    """
    key = f"payment-refund:{payment_id}"
    async with sessions() as session:
        payment = await session.get(ProviderPayment, payment_id)
        order = await session.get(Order, payment.order_id) if payment else None
    if payment is None or order is None or payment.status != "refund_due":
        await in_transaction(sessions, lambda s: outbox.ack(s, key))
        return payment.status if payment else "missing"
    amount, error = Money(payment.amount_fen), None
    try:
        status = await providers[payment.provider].refund(order.out_trade_no, payment.refund_no or "",
                                                          amount, amount)
    except ProviderRefused as ex:
        status, error = "closed", str(ex)
    new = {"success": "refunded", "processing": "refunding"}.get(status, "refund_failed")

    async def record(session: AsyncSession) -> str:
        row = await session.get(ProviderPayment, payment_id, with_for_update=True)
        assert row is not None
        if row.status == "refund_due":
            row.status, row.last_error = new, (error or None) and error[:300]
            row.refunded_at = utcnow() if new == "refunded" else None
            await audit.record(session, "system:payments", f"payment.extra_{new}", "order", row.order_id,
                               after={"trade_no": row.trade_no, "amount_fen": row.amount_fen}, reason=error,
                               site_id=order.site_id)
        await outbox.ack(session, key)
        return row.status
    return await in_transaction(sessions, record)


async def refund_extra_payments(sessions: async_sessionmaker[AsyncSession],
                                providers: Mapping[str, PaymentProvider]) -> int:
    """Sweep: refund every extra payment still due (cron backstop for the outbox job); returns how many."""
    async with sessions() as session:
        ids = list(await session.scalars(select(ProviderPayment.id).where(
            ProviderPayment.status == "refund_due", ProviderPayment.provider.in_(list(providers)))))
    done = 0
    for payment_id in ids:
        try:
            done += await refund_extra(sessions, providers, payment_id) != "refund_due"
        except ProviderError as ex:
            log.warning("extra payment %s not refunded yet: %s", payment_id, ex)
    return done


__all__ = ["ONLINE", "refund_confirmed", "refund_extra", "refund_extra_payments", "refund_not_done",
           "refund_order", "send_refund", "settle"]
