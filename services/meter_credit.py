"""Credit for meter-side billing: held pending in the ledger until the meter confirms it, then settled once.

Selling credit for a meter that keeps its own balance: the payment lands in the wallet (a normal
recharge), the amount moves wallet -> `credit_pending:meter:<id>` and a `push_credit` command is
queued carrying the next purchase counter, all in one transaction. The meter accepts purchase
N only once, so delivery retries cannot double it. When the executor reads the counter back
the pending amount is settled to revenue (`meter-credit:<command>`); if the command fails,
expires or is cancelled, the hold is voided back to the wallet. Each posting is keyed by the
command id, so it happens at most once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.ledger import Transaction, revenue_code, transfer
from billing.money import Money
from services import bulk, ledger, relay, wallets
from services.errors import Conflict, InsufficientBalance, NotFound, ServiceError
from store.models import Account, Meter, MeterCommand

LIVE_STATES = ("queued", "sent", "confirmed")  # purchases that hold (or will hold) their counter
CREDIT_EXPIRY = timedelta(days=30)
# built once: a payment notice runs both
_PROMISED = select(func.max(MeterCommand.params["purchase_count"].as_integer())).where(
    MeterCommand.meter_id == bindparam("meter_id"), MeterCommand.kind == "push_credit",
    MeterCommand.state.in_(LIVE_STATES))
_ACCOUNT_METERS = (select(Meter).where(Meter.account_id == bindparam("account_id")).order_by(Meter.id)
                   .with_for_update(key_share=True).execution_options(populate_existing=True))


def pending_code(meter_id: int) -> str:
    return f"credit_pending:meter:{meter_id}"


async def next_purchase_count(session: AsyncSession, meter: Meter) -> int:
    """One more than the highest counter the meter has or has been promised (the database takes
    the maximum: confirmed purchases stay live, and loading every one's params grew with each)."""
    promised = await session.scalar(_PROMISED, {"meter_id": meter.id})
    return max(meter.purchase_count or 0, int(promised or 0)) + 1


async def lock_meters(session: AsyncSession, account: Account) -> list[Meter]:
    """The account's meters, locked in id order (the caller has locked the account: the lock order)."""
    return list(await session.scalars(_ACCOUNT_METERS, {"account_id": account.id}))


async def queue_credit(session: AsyncSession, meter_id: int, amount: Money, key: str, actor: str | None = None,
                       now: datetime | None = None, expires_in: timedelta = CREDIT_EXPIRY,
                       held_by: tuple[Account, Meter] | None = None,
                       up_to_balance: bool = False, new_key: bool = False) -> MeterCommand | None:
    """Hold `amount` from the meter's wallet and queue its push into the meter (once per key).

    `held_by`: the account and this meter, locked by the caller in this transaction (a payment
    notice locks them first). `up_to_balance`: push what the wallet holds when that is less
    than `amount` (nothing, returning None, when it holds nothing); otherwise that is refused.
    `new_key`: the caller knows no command has `key` yet (the unique key still guards)."""
    amount = wallets.require_money(amount)
    existing = None if new_key else await session.scalar(select(MeterCommand).where(MeterCommand.key == key))
    if existing is not None:
        return existing
    if held_by is not None:
        acc, meter = held_by
        if meter.id != meter_id or meter.account_id != acc.id:
            raise ServiceError(f"meter {meter_id} is not the meter held for account {acc.id}")
    else:
        owner = await session.scalar(select(Meter.account_id).where(Meter.id == meter_id))
        if owner is not None:  # the account first, then the meter: the lock order of every writer
            await wallets.get_account(session, owner, lock=True)
        found = await session.get(Meter, meter_id, with_for_update=True, populate_existing=True)
        if found is None:
            raise NotFound(f"meter {meter_id} not found")
        if found.account_id is None:
            raise ServiceError(f"meter {meter_id} does not keep its own balance (or has no account)")
        meter, acc = found, await wallets.get_account(session, found.account_id, lock=found.account_id != owner)
    if meter.billing_side != "meter":
        raise ServiceError(f"meter {meter_id} does not keep its own balance (or has no account)")
    if acc.state != "open":
        raise Conflict(f"account {acc.code} is closed")
    wallet = await wallets.wallet_for(session, acc, meter.id)
    held = await ledger.balance_of(session, acc.site_id, wallet)
    if up_to_balance:
        if not held.is_positive:
            return None
        amount = amount if amount <= held else held
    if held < amount:
        raise InsufficientBalance(f"credit {amount} exceeds the wallet balance {held}")
    params = {"amount_fen": amount.fen, "purchase_count": await next_purchase_count(session, meter),
              "account_id": acc.id, "wallet": wallet}
    cmd = await relay.queue_command(session, meter.id, "push_credit", key, params=params, reason="meter-side credit",
                                    actor=actor, expires_in=expires_in, now=now, gateway_id=meter.gateway_id,
                                    key_is_new=True)
    hold = transfer(f"meter-credit-hold:{cmd.id}", "credit_hold", wallet, pending_code(meter.id), amount,
                    memo=f"credit {params['purchase_count']} on its way to meter {meter.address}")
    await ledger.post_id(session, acc.site_id, hold, actor=actor, account_id=acc.id)
    return cmd


async def sell_credit(session: AsyncSession, account_id: int, meter_id: int, amount: Money, idempotency_key: str,
                      provider: str = "cash", actor: str | None = None) -> MeterCommand:
    """A paid recharge for a meter-side meter and the push of that credit, in this transaction."""
    owner = await session.scalar(select(Meter.account_id).where(Meter.id == meter_id))
    if owner != account_id:
        raise NotFound(f"meter {meter_id} does not belong to account {account_id}")
    order = await wallets.recharge(session, account_id, amount, idempotency_key, provider, meter_id, actor)
    cmd = await queue_credit(session, meter_id, Money(order.amount_fen), f"credit:{order.out_trade_no}", actor)
    assert cmd is not None  # only up_to_balance queues nothing
    return cmd


@dataclass(frozen=True)
class Confirmed:
    """A push_credit the meter read back, with what settling it needs."""

    command_id: int
    params: dict[str, Any]
    meter_id: int
    site_id: int
    utility: str
    address: str


async def settle_many(session: AsyncSession, confirmed: Sequence[Confirmed]) -> None:
    """The meters confirmed these purchases: each held amount becomes revenue, once (key
    `meter-credit:<command>`), all of a site's in one bulk post — the command path's group commit
    settles what its round confirmed together instead of one ledger transaction after another.

    The caller holds the accounts' locks, then the command rows' and the meters' (meter_commands
    takes them in that order): settling and voiding run inside the command path's transaction."""
    by_site: dict[int, list[Transaction]] = {}
    for c in confirmed:
        if "wallet" not in (c.params or {}):
            continue  # pushed without a ledger hold (e.g. a staff correction): nothing to settle
        by_site.setdefault(c.site_id, []).append(transfer(
            f"meter-credit:{c.command_id}", "meter_credit", pending_code(c.meter_id), revenue_code(c.utility),
            Money(int(c.params["amount_fen"])),
            memo=f"purchase {c.params['purchase_count']} confirmed by meter {c.address}"))
    for site_id, txns in sorted(by_site.items()):
        if len(txns) <= 2:  # a quiet round: the plain post is fewer round trips than the bulk one
            for txn in txns:
                await ledger.post_id(session, site_id, txn, actor="system:commands")
        else:
            await bulk.post_many(session, site_id, txns, actor="system:commands")


async def void(session: AsyncSession, row: MeterCommand) -> None:
    """The credit will never land: give the held amount back to the wallet, once.

    The caller has locked the account named in the hold (`params.account_id`) before the command
    row, so the wallet's balance row is taken last, as every writer takes it."""
    if "wallet" not in (row.params or {}):
        return
    meter = await session.get(Meter, row.meter_id)
    if meter is None:
        return
    txn = transfer(f"meter-credit-void:{row.id}", "credit_void", pending_code(meter.id), row.params["wallet"],
                   Money(int(row.params["amount_fen"])), memo=f"credit {row.params['purchase_count']} {row.state}")
    await ledger.post_id(session, meter.site_id, txn, actor="system:commands",
                         account_id=int(row.params["account_id"]))
