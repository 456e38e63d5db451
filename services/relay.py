"""Queueing meter commands, and the automatic cut-off / restore rules for platform-billed accounts.

A command row is the promise; devices/ delivers it (read back first, confirm by reading back).
Cut-off: a prepaid, platform-billed account whose balance is below -overdraft gets a relay/valve
open command for each meter that is on. Restore: once the balance is back above -overdraft, any
pending cut-off is cancelled and meters that are off get a close command. The command key makes
each decision exactly-once even when ingest or recharge runs twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services import command_wake
from store.models import Account, Meter, MeterCommand
from store.types import utcnow

PENDING = ("queued", "sent")
DEFAULT_EXPIRY = timedelta(days=7)
OFF_KIND = {"electricity": "relay_open", "water": "valve_close"}
ON_KIND = {"electricity": "relay_close", "water": "valve_open"}


async def queue_command(session: AsyncSession, meter_id: int, kind: str, key: str,
                        params: dict[str, Any] | None = None, reason: str | None = None,
                        actor: str | None = None, expires_in: timedelta = DEFAULT_EXPIRY,
                        now: datetime | None = None, gateway_id: int | None = None,
                        key_is_new: bool = False) -> MeterCommand:
    """Persist a command (once per key): the meter runtime claims it from meter_commands, and the
    lanes of `gateway_id` (the meter's gateway: pass it when at hand) are woken when this commits.
    `key_is_new`: the caller has just looked the key up itself (the unique key still guards)."""
    if not key_is_new:
        existing = await session.scalar(select(MeterCommand).where(MeterCommand.key == key))
        if existing is not None:
            return existing
    command_wake.announce(session, [gateway_id])
    now = now or utcnow()
    cmd = MeterCommand(key=key, meter_id=meter_id, kind=kind, params=params or {}, state="queued",
                       reason=reason, created_by=actor, created_at=now, next_attempt_at=now,
                       expires_at=now + expires_in)
    session.add(cmd)
    await session.flush()
    return cmd


async def _pending(session: AsyncSession, meter_id: int, kinds: tuple[str, ...]) -> list[MeterCommand]:
    rows = await session.scalars(select(MeterCommand).where(
        MeterCommand.meter_id == meter_id, MeterCommand.kind.in_(kinds), MeterCommand.state.in_(PENDING)))
    return list(rows)


async def apply_credit_rules(session: AsyncSession, account: Account, balance_fen: int,
                             now: datetime | None = None, meters: Sequence[Meter] | None = None) -> list[MeterCommand]:
    """Cut off or restore the meters of `account` given its balance; returns commands queued.

    `meters`: the account's meters when the caller has them loaded (a payment does)."""
    if account.payment_mode != "prepaid" or account.state != "open":
        return []
    if meters is None:
        meters = list(await session.scalars(select(Meter).where(
            Meter.account_id == account.id, Meter.billing_side == "platform")))
    else:
        meters = [m for m in meters if m.account_id == account.id and m.billing_side == "platform"]
    out: list[MeterCommand] = []
    in_credit = balance_fen > -account.overdraft_fen
    stamp = (now or utcnow()).isoformat()
    for m in meters:
        off, on = OFF_KIND[m.utility], ON_KIND[m.utility]
        pending_off = await _pending(session, m.id, (off,))
        if not in_credit:
            if m.relay_closed and not pending_off:
                out.append(await queue_command(session, m.id, off, f"auto-off:{m.id}:{stamp}",
                                               reason="balance exhausted", actor="system", now=now,
                                               gateway_id=m.gateway_id))
            continue
        for c in pending_off:
            if c.state == "queued":
                c.state, c.last_error = "cancelled", "paid before the cut-off was delivered"
        sent_off = any(c.state == "sent" for c in pending_off)
        if (not m.relay_closed or sent_off) and not await _pending(session, m.id, (on,)):
            out.append(await queue_command(session, m.id, on, f"auto-on:{m.id}:{stamp}",
                                           reason="paid again", actor="system", now=now, gateway_id=m.gateway_id))
    return out


async def mark_relay(session: AsyncSession, meter_id: int, closed: bool) -> None:
    await session.execute(update(Meter).where(Meter.id == meter_id)
                          .values(relay_closed=closed, relay_changed_at=utcnow()))
