"""Safety net for automatic restore: a meter the platform cut off is switched back on once its account is paid.

Restore normally happens when a recharge runs `relay.apply_credit_rules`, which trusts the
mirrored `Meter.relay_closed`. A reading taken just before a cut-off landed but ingested just
after it can leave that mirror saying "on" for a moment; a payment in that moment would then
queue no restore and the tenant would stay dark. This sweep looks at what the platform itself
did instead: a meter whose latest relay/valve command is a confirmed automatic cut-off, whose
account is back in credit gets a restore (so does one whose restore failed or expired). Staff
cut-offs are left alone.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services import relay
from services.wallets import account_balance
from store.models import Account, Meter, MeterCommand

RELAY_KINDS = tuple(relay.OFF_KIND.values()) + tuple(relay.ON_KIND.values())
AUTO_OFF, AUTO_ON = "auto-off:", "auto-on:"


async def restore_paid_meters(session: AsyncSession, now: datetime) -> list[MeterCommand]:
    """Queue the restores that a payment should have queued; returns them."""
    latest = (select(MeterCommand.meter_id, func.max(MeterCommand.id).label("last_id"))
              .where(MeterCommand.kind.in_(RELAY_KINDS)).group_by(MeterCommand.meter_id).subquery())
    rows = (await session.execute(
        select(Meter, Account)
        .join(latest, latest.c.meter_id == Meter.id)
        .join(MeterCommand, MeterCommand.id == latest.c.last_id)
        .join(Account, Account.id == Meter.account_id)
        .where(or_(and_(MeterCommand.state == "confirmed", MeterCommand.key.startswith(AUTO_OFF)),
                   and_(MeterCommand.state.in_(("failed", "expired")), MeterCommand.key.startswith(AUTO_ON))),
               Meter.billing_side == "platform", Account.state == "open", Account.payment_mode == "prepaid"))).all()
    queued: list[MeterCommand] = []
    balances: dict[int, int] = {}
    for meter, acc in rows:
        if acc.id not in balances:
            balances[acc.id] = await account_balance(session, acc)
        if balances[acc.id] <= -acc.overdraft_fen:
            continue
        on = relay.ON_KIND[meter.utility]
        queued.append(await relay.queue_command(session, meter.id, on, f"{AUTO_ON}{meter.id}:{now.isoformat()}",
                                                reason="paid again (restore sweep)", actor="system", now=now,
                                                gateway_id=meter.gateway_id))
    return queued
