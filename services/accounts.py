"""Opening and closing accounts: one call each, one transaction each."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.ledger import Transaction, Posting, cash_code
from billing.money import Money
from services import ledger
from services.errors import Conflict, NotFound, ServiceError
from services.ingest import ReadingIn, ingest
from services.wallets import get_account
from store.models import Account, LedgerAccount, Meter, Order, Room, Tenant
from store.types import utcnow

BALANCE_MODELS = ("merged", "per_meter", "package")
PAYMENT_MODES = ("prepaid", "postpaid")


@dataclass(frozen=True)
class OpenAccount:
    """Pre-filled opening data: who, which meters, how they pay."""

    site_id: int
    tenant_name: str
    tenant_phone: str
    meter_ids: tuple[int, ...]
    balance_model: str = "merged"
    payment_mode: str = "prepaid"
    overdraft: Money = Money(0)
    package_fee: Money = Money(0)
    package_units: int = 0
    opening_readings: tuple[ReadingIn, ...] = field(default_factory=tuple)
    code: str | None = None


async def open_account(session: AsyncSession, cmd: OpenAccount, actor: str | None = None) -> Account:
    """Create tenant (or reuse by phone) and account, and hand the meters to it."""
    if cmd.balance_model not in BALANCE_MODELS or cmd.payment_mode not in PAYMENT_MODES:
        raise ServiceError("unknown balance model or payment mode")
    if not cmd.meter_ids:
        raise ServiceError("an account needs at least one meter")
    if cmd.overdraft.is_negative or not cmd.tenant_phone.strip().lstrip("+").isdigit():
        raise ServiceError("overdraft must be >= 0 and the phone a number")
    meters = list(await session.scalars(select(Meter).where(Meter.id.in_(cmd.meter_ids)).with_for_update()))
    if len(meters) != len(set(cmd.meter_ids)) or any(m.site_id != cmd.site_id for m in meters):
        raise NotFound("unknown meter for this site")
    if any(m.account_id is not None for m in meters):
        raise Conflict("a meter already belongs to an open account")
    tenant = await session.scalar(select(Tenant).where(
        Tenant.site_id == cmd.site_id, Tenant.phone == cmd.tenant_phone))
    if tenant is None:
        tenant = Tenant(site_id=cmd.site_id, name=cmd.tenant_name, phone=cmd.tenant_phone)
        session.add(tenant)
        await session.flush()
    now = utcnow()
    acc = Account(site_id=cmd.site_id, tenant_id=tenant.id, code=cmd.code or f"A{now:%y%m%d%H%M%S%f}",
                  balance_model=cmd.balance_model, payment_mode=cmd.payment_mode,
                  overdraft_fen=cmd.overdraft.fen, package_fee_fen=cmd.package_fee.fen,
                  package_units=cmd.package_units, opened_at=now, state="open")
    session.add(acc)
    await session.flush()
    for m in meters:
        m.account_id = acc.id
        if m.room_id is not None:
            room = await session.get(Room, m.room_id)
            if room is not None:
                room.state = "occupied"
    await session.flush()
    if cmd.opening_readings:
        await ingest(session, list(cmd.opening_readings))
    return acc


async def close_account(session: AsyncSession, account_id: int, final_readings: list[ReadingIn],
                        actor: str | None = None, refund_provider: str = "cash") -> Account:
    """Settle and close: final readings first, then refund a credit or book the debt as due."""
    acc = await get_account(session, account_id, lock=True)
    if acc.state != "open":
        raise Conflict(f"account {acc.code} is already closed")
    if final_readings:
        results = await ingest(session, final_readings)
        bad = [r for r in results if r.error]
        if bad:
            raise ServiceError(f"final reading refused: {bad[0].error}")
    wallets = list(await session.scalars(select(LedgerAccount).where(
        LedgerAccount.account_id == acc.id, LedgerAccount.code.like("wallet:%"))))
    for w in wallets:
        await _settle_wallet(session, acc, w, actor, refund_provider)
    for m in await session.scalars(select(Meter).where(Meter.account_id == acc.id)):
        m.account_id = None
        if m.room_id is not None:
            room = await session.get(Room, m.room_id)
            if room is not None:
                room.state = "vacant"
    acc.state, acc.closed_at = "closed", utcnow()
    return acc


async def _settle_wallet(session: AsyncSession, acc: Account, w: LedgerAccount, actor: str | None,
                         provider: str) -> None:
    if w.balance_fen == 0:
        return
    amount = Money(abs(w.balance_fen))
    if w.balance_fen > 0:
        order = Order(site_id=acc.site_id, account_id=acc.id, meter_id=w.meter_id, kind="refund",
                      provider=provider, amount_fen=amount.fen, state="refunded",
                      idempotency_key=f"settle:{acc.id}:{w.code}", out_trade_no=f"S{acc.id}x{w.id}",
                      actor=actor, paid_at=utcnow(), note="closing settlement")
        session.add(order)
        await session.flush()
        dest = cash_code(provider)
    else:
        order, dest = None, f"receivable:{acc.id}"
    txn = Transaction(f"settle:{acc.id}:{w.code}", "settle",
                      (Posting(w.code, Money(-w.balance_fen)), Posting(dest, Money(w.balance_fen))),
                      memo="closing settlement")
    await ledger.post_id(session, acc.site_id, txn, actor=actor, order_id=order.id if order else None,
                         account_id=acc.id)
