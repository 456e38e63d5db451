"""Recharge, refund and balance: every movement a ledger transaction keyed by the order."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.ledger import cash_code, transfer, wallet_code
from billing.money import Money
from services import alerting, ledger, relay
from services.errors import Conflict, InsufficientBalance, NotFound, ServiceError
from store.models import Account, LedgerAccount, Meter, Order, Site
from store.types import utcnow

PROVIDERS = ("cash", "alipay", "wechatpay")
_WALLET_BALANCES = select(LedgerAccount.balance_fen).where(  # built once: every payment reads it
    LedgerAccount.account_id == bindparam("account_id"), LedgerAccount.code.like("wallet:%"))


def require_money(amount: object) -> Money:
    """Only a positive Money is an amount; floats and other numbers are refused."""
    if not isinstance(amount, Money):
        raise ServiceError(f"amount must be Money (integer fen), got {type(amount).__name__}")
    if not amount.is_positive:
        raise ServiceError(f"amount must be positive, got {amount}")
    return amount


async def get_account(session: AsyncSession, account_id: int, lock: bool = False) -> Account:
    # an unlocked read is served from the session when the account is already loaded (a payment
    # reads it several times); a locked read always goes to the database and refreshes the row
    acc = await (session.get(Account, account_id, with_for_update=True, populate_existing=True) if lock
                 else session.get(Account, account_id))
    if acc is None:
        raise NotFound(f"account {account_id} not found")
    return acc


async def wallet_for(session: AsyncSession, acc: Account, meter_id: int | None) -> str:
    """The wallet code money goes to: the account's, or one meter's under the per-meter model."""
    if acc.balance_model != "per_meter":
        return wallet_code(acc.id)
    if meter_id is None:
        ids = list(await session.scalars(select(Meter.id).where(Meter.account_id == acc.id)))
        if len(ids) != 1:
            raise ServiceError("this account keeps a balance per meter: say which meter")
        meter_id = ids[0]
    owner = await session.scalar(select(Meter.account_id).where(Meter.id == meter_id))
    if owner != acc.id:
        raise NotFound(f"meter {meter_id} does not belong to account {acc.id}")
    return wallet_code(acc.id, meter_id)


async def _existing_order(session: AsyncSession, key: str, account_id: int, amount: Money, kind: str) -> Order | None:
    order = await session.scalar(select(Order).where(Order.idempotency_key == key))
    if order is not None and (order.account_id, order.amount_fen, order.kind) != (account_id, amount.fen, kind):
        raise Conflict(f"idempotency key {key!r} was already used for a different {order.kind}")
    return order


async def credit_order(session: AsyncSession, order: Order, actor: str | None = None,
                       now: datetime | None = None, account: Account | None = None,
                       meters: Sequence[Meter] | None = None) -> bool:
    """Credit a paid recharge order to its wallet, once. Returns True if this call credited it.

    `account` (locked by the caller) and its `meters`: a payment notice has them in hand already."""
    acc = account if account is not None else await get_account(session, order.account_id, lock=True)
    # The session's identity map holds objects weakly: `site` is kept referenced to the end so that
    # the alerts below find it there instead of loading it again (twice).
    site = await session.get(Site, acc.site_id)
    wallet = await wallet_for(session, acc, order.meter_id)
    txn = transfer(f"recharge:{order.out_trade_no}", "recharge", cash_code(order.provider), wallet,
                   Money(order.amount_fen), memo=f"{order.provider} recharge {order.out_trade_no}")
    txn_id, created = await ledger.post_id(session, acc.site_id, txn, actor=actor, order_id=order.id,
                                           account_id=acc.id)
    order.txn_id, order.state = txn_id, "credited"
    if created:
        new, now = await account_balance(session, acc), now or utcnow()
        await relay.apply_credit_rules(session, acc, new, meters=meters)
        await alerting.after_balance_change(session, acc.id, new - order.amount_fen, new, now)
        await alerting.payment_received(session, acc.id, f"recharge:{order.out_trade_no}", order.amount_fen,
                                        new, now)
    del site
    return created


async def recharge(session: AsyncSession, account_id: int, amount: Money, idempotency_key: str,
                   provider: str = "cash", meter_id: int | None = None, actor: str | None = None,
                   now: datetime | None = None) -> Order:
    """A cash-desk (or already paid) recharge: order + ledger credit in this transaction, once per key."""
    amount = require_money(amount)
    if provider not in PROVIDERS:
        raise ServiceError(f"unknown provider {provider!r}")
    existing = await _existing_order(session, idempotency_key, account_id, amount, "recharge")
    if existing is not None:
        return existing
    acc = await get_account(session, account_id, lock=True)
    if acc.state != "open":
        raise Conflict(f"account {acc.code} is closed")
    await wallet_for(session, acc, meter_id)
    order = Order(site_id=acc.site_id, account_id=acc.id, meter_id=meter_id, kind="recharge", provider=provider,
                  amount_fen=amount.fen, state="paid", idempotency_key=idempotency_key,
                  out_trade_no=new_trade_no("R"), actor=actor, paid_at=utcnow())
    session.add(order)
    await session.flush()
    await credit_order(session, order, actor, now)
    return order


async def refund(session: AsyncSession, account_id: int, amount: Money, idempotency_key: str,
                 provider: str = "cash", meter_id: int | None = None, actor: str | None = None,
                 use_overdraft: bool = False, note: str | None = None, now: datetime | None = None) -> Order:
    """Pay money back out of a wallet: never more than the balance, unless the overdraft is invoked."""
    amount = require_money(amount)
    existing = await _existing_order(session, idempotency_key, account_id, amount, "refund")
    if existing is not None:
        return existing
    acc = await get_account(session, account_id, lock=True)
    wallet = await wallet_for(session, acc, meter_id)
    balance = await _locked_balance(session, acc.site_id, wallet)
    floor = -acc.overdraft_fen if use_overdraft else 0
    if balance - amount.fen < floor:
        raise InsufficientBalance(f"refund {amount} exceeds the balance {Money(balance)}")
    order = Order(site_id=acc.site_id, account_id=acc.id, meter_id=meter_id, kind="refund", provider=provider,
                  amount_fen=amount.fen, state="refunded", idempotency_key=idempotency_key,
                  out_trade_no=new_trade_no("F"), actor=actor, paid_at=utcnow(), note=note)
    session.add(order)
    await session.flush()
    txn = transfer(f"refund:{order.out_trade_no}", "refund", wallet, cash_code(provider), amount,
                   memo=note or "refund")
    order.txn_id, _ = await ledger.post_id(session, acc.site_id, txn, actor=actor, order_id=order.id,
                                           account_id=acc.id)
    new = await account_balance(session, acc)
    await alerting.after_balance_change(session, acc.id, new + amount.fen, new, now or utcnow())
    return order


async def _locked_balance(session: AsyncSession, site_id: int, code: str) -> int:
    fen = await session.scalar(select(LedgerAccount.balance_fen).where(
        LedgerAccount.site_id == site_id, LedgerAccount.code == code).with_for_update())
    return int(fen or 0)


@dataclass(frozen=True)
class Balance:
    account_id: int
    total: Money
    wallets: dict[str, Money]


async def account_balance(session: AsyncSession, acc: Account) -> int:
    return int(sum(await session.scalars(_WALLET_BALANCES, {"account_id": acc.id})))


async def balance(session: AsyncSession, account_id: int) -> Balance:
    """The account's balance: the sum of its wallets (one, or one per meter)."""
    acc = await get_account(session, account_id)
    rows = (await session.execute(select(LedgerAccount.code, LedgerAccount.balance_fen).where(
        LedgerAccount.account_id == acc.id, LedgerAccount.code.like("wallet:%")))).all()
    wallets = {code: Money(int(fen)) for code, fen in rows}
    return Balance(acc.id, Money(sum(m.fen for m in wallets.values())), wallets)


def new_trade_no(prefix: str) -> str:
    """A merchant order number providers accept: letters and digits, 32 chars or fewer."""
    return f"{prefix}{utcnow():%Y%m%d%H%M%S}{uuid.uuid4().hex[:16]}"
