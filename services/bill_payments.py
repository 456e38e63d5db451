"""Paying a postpaid / dunning bill online: the same orders, providers and notifies as a recharge.

A bill order is an `Order` of kind ``bill`` whose ``raw["bill_id"]`` names the bill (no column of
its own: the order model stays provider- and purpose-agnostic). The tenant may pay the outstanding
amount or a part of it; an order is opened only for an issued, partly paid or overdue bill and never
for more than is outstanding at that moment. From there on it lives like a recharge order
(services.payments): notify or active query (services.payment_checks), exactly-once by the order
lock plus the ledger key, conflicts for mismatches, an order paid twice has its extra payment
refunded. Its credit is ``services.postpaid.pay_bill`` with payment key ``order:<out_trade_no>``
(ledger key ``billpay:order:<out_trade_no>``). If the bill was settled meanwhile by another payment
(cash desk, a second order) or voided, the money that finds nothing to settle is change and goes to
the tenant's wallet: the rule services.postpaid documents, so the tenant never loses it and staff
can refund it from the wallet like any balance.
"""

from __future__ import annotations

from dataclasses import dataclass
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from billing.money import Money
from payments.provider import PaymentProvider
from services import alerting, audit, postpaid, relay, wallets
from services.errors import Conflict, NotFound
from store.models import Account, Bill, BillPayment, Order
from store.types import utcnow

PAYABLE = ("issued", "partly_paid", "overdue")
KEY_PREFIX = "order:"


@dataclass(frozen=True, slots=True)
class PayableBill:
    """What the tenant sees before paying a bill."""

    id: int
    account_id: int
    number: str
    period: str
    status: str
    total: Money
    paid: Money
    outstanding: Money

    @property
    def payable(self) -> bool:
        return self.status in PAYABLE and self.outstanding.is_positive


def payment_key(out_trade_no: str) -> str:
    """The bill payment key (and, with `billpay:` before it, the ledger key) of a bill order."""
    return f"{KEY_PREFIX}{out_trade_no}"


async def payable_bill(session: AsyncSession, bill_id: int, account_id: int | None = None) -> PayableBill | None:
    """The bill, if it exists (and belongs to `account_id` when given)."""
    row = await session.get(Bill, bill_id, populate_existing=True)
    if row is None or (account_id is not None and row.account_id != account_id):
        return None
    return _view(row)


async def bill_by_number(session: AsyncSession, number: str, account_ids: list[int]) -> PayableBill | None:
    """The tenant's bill with this printable number among their accounts."""
    bill_id = await session.scalar(select(Bill.id).where(Bill.number == number, Bill.account_id.in_(account_ids))
                                   .order_by(Bill.id.desc()).limit(1))
    return None if bill_id is None else await payable_bill(session, bill_id)


async def bills_by_number(session: AsyncSession, wanted: list[tuple[int, str]]) -> dict[tuple[int, str], PayableBill]:
    """(account id, bill number) -> the bill, for the few bills a tenant's listing shows."""
    accounts = sorted({a for a, _ in wanted})
    if not accounts:
        return {}
    rows = await session.scalars(select(Bill).where(Bill.account_id.in_(accounts),
                                                    Bill.number.in_(sorted({n for _, n in wanted}))))
    return {(b.account_id, b.number): _view(b) for b in rows}


def _view(row: Bill) -> PayableBill:
    return PayableBill(row.id, row.account_id, row.number, f"{row.period_start} — {row.period_end}", row.status,
                       Money(row.total_fen), Money(row.paid_fen), Money(row.total_fen - row.paid_fen))


async def create_bill_payment(session: AsyncSession, bill_id: int, amount: Money | None, provider: PaymentProvider,
                              channel: str, idempotency_key: str, openid: str | None = None, *, notify_url: str,
                              return_url: str | None = None, actor: str | None = None) -> Order:
    """Commit a `created` bill order (amount: the outstanding amount when None), then open it at the provider.

    Takes a session with no transaction open; it commits. The same key returns the same order.
    """
    from services.payments import open_at_provider

    order = await _open_bill_order(session, bill_id, amount, provider.name, channel, idempotency_key, actor)
    number = (order.raw or {}).get("bill_number", "")
    await session.commit()
    return await open_at_provider(session, order, provider, channel, f"账单 {number}"[:100], notify_url, openid,
                                  return_url)


async def _open_bill_order(session: AsyncSession, bill_id: int, amount: Money | None, provider: str,
                           channel: str, key: str, actor: str | None) -> Order:
    existing = await session.scalar(select(Order).where(Order.idempotency_key == key))
    if existing is None:
        bill = await payable_bill(session, bill_id)
        if bill is None:
            raise NotFound(f"bill {bill_id} not found")
        if not bill.payable:
            raise Conflict(f"bill {bill.number} is {bill.status} with {bill.outstanding} outstanding: nothing to pay")
        amount = bill.outstanding if amount is None else wallets.require_money(amount)
        if amount > bill.outstanding:
            raise Conflict(f"{amount} is more than the {bill.outstanding} outstanding on bill {bill.number}")
        acc = await session.get(Account, bill.account_id)
        assert acc is not None
        existing = Order(site_id=acc.site_id, account_id=acc.id, meter_id=None, kind="bill", provider=provider,
                         channel=channel, amount_fen=amount.fen, state="created", idempotency_key=key,
                         out_trade_no=wallets.new_trade_no("B"), actor=actor,
                         raw={"bill_id": bill.id, "bill_number": bill.number})
        session.add(existing)
        try:
            await session.flush()
        except IntegrityError:  # the same key, created concurrently: use the winner's order
            await session.rollback()
            existing = await session.scalar(select(Order).where(Order.idempotency_key == key))
            if existing is None:
                raise
    if existing.kind != "bill" or (existing.raw or {}).get("bill_id") != bill_id or (
            amount is not None and existing.amount_fen != amount.fen):
        raise Conflict(f"idempotency key {key!r} was already used for a different order")
    return existing


def bill_of(order: Order) -> int:
    """The bill a `bill` order pays."""
    return int((order.raw or {})["bill_id"])


async def credit_bill_order(session: AsyncSession, order: Order) -> bool:
    """Settle the bill with a paid bill order, once (in the notice's transaction, order row locked).

    Returns True if this call applied it. The receipt goes out like a recharge's; change that
    reached the wallet may reconnect a prepaid account's meters (services.relay).
    """
    actor = f"{order.provider}:notify"
    paid = await postpaid.pay_bill(session, bill_of(order), Money(order.amount_fen), payment_key(order.out_trade_no),
                                   order.provider, actor=actor,
                                   raw={"out_trade_no": order.out_trade_no, "trade_no": order.provider_trade_no})
    order.state = "credited"
    if paid.duplicate:
        return False
    acc = await wallets.get_account(session, order.account_id)
    order.txn_id = await _txn_id(session, order)
    now, balance = utcnow(), await wallets.account_balance(session, acc)
    if paid.change.is_positive:
        await relay.apply_credit_rules(session, acc, balance)
    await alerting.payment_received(session, acc.id, f"billpay:{order.out_trade_no}", order.amount_fen, balance, now)
    await audit.record(session, actor, "payment.credited", "order", order.id,
                       after={"amount_fen": order.amount_fen, "trade_no": order.provider_trade_no,
                              "bill_id": paid.bill_id, "applied_fen": paid.applied.fen, "change_fen": paid.change.fen},
                       site_id=order.site_id)
    return True


async def _txn_id(session: AsyncSession, order: Order) -> int | None:
    return await session.scalar(select(BillPayment.txn_id).where(BillPayment.key == payment_key(order.out_trade_no)))
