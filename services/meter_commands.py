"""The database behind devices.commands.CommandStore: meter_commands rows, claimed safely, confirmed once.

`due` claims commands by pushing their `next_attempt_at` forward by a claim lease inside the
claiming transaction (PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED; SQLite has one writer at a
time anyway), so two executor processes never pick the same row at once, and a crashed one's
claims come back when the lease runs out. A confirmation writes what the meter now is
(relay/valve state, purchase counter), settles a pending meter credit in the ledger and leaves
an audit entry, all in the transaction that marks the row confirmed.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices.commands import OPEN_STATES, WANT_CLOSED, Command
from devices.sample import MeterRef
from services import meter_credit
from services.uow import in_transaction
from store.models import AuditEntry, Gateway, Meter, MeterCommand
from store.types import utcnow

log = logging.getLogger(__name__)
ACTOR = "system:commands"
AUDITED = frozenset(WANT_CLOSED) | {"push_credit"}


def to_command(row: MeterCommand, gateway: str, port: int, address: str) -> Command:
    return Command(id=str(row.id), kind=row.kind, target=MeterRef(gateway, port, address),  # type: ignore[arg-type]
                   expires_at=row.expires_at, params=dict(row.params or {}), state=row.state,  # type: ignore[arg-type]
                   attempts=row.attempts, next_attempt_at=row.next_attempt_at, last_error=row.last_error)


class DbCommandStore:
    """CommandStore on meter_commands; `gateways` limits it to the gateways this process drives."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], gateways: Collection[str] | None = None,
                 claim_s: float = 300.0) -> None:
        self.sessions, self.claim_s = sessions, claim_s
        self.gateways = None if gateways is None else frozenset(gateways)

    async def due(self, now: datetime, limit: int = 100) -> list[Command]:
        """Claim up to `limit` queued/sent commands that are due, oldest first."""
        return await in_transaction(self.sessions, lambda s: self._claim(s, now, limit))

    async def _claim(self, session: AsyncSession, now: datetime, limit: int) -> list[Command]:
        stmt = (select(MeterCommand, Gateway.code, Meter.port, Meter.address)
                .join(Meter, Meter.id == MeterCommand.meter_id).join(Gateway, Gateway.id == Meter.gateway_id)
                .where(MeterCommand.state.in_(OPEN_STATES), MeterCommand.next_attempt_at <= now)
                .order_by(MeterCommand.next_attempt_at, MeterCommand.id).limit(limit))
        if self.gateways is not None:
            stmt = stmt.where(Gateway.code.in_(self.gateways))
        if session.bind.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True, of=MeterCommand)
        lease = now + timedelta(seconds=self.claim_s)
        out = []
        for row, gateway, port, address in (await session.execute(stmt)).all():
            row.next_attempt_at = lease  # the claim: invisible to other executors until the lease ends
            out.append(to_command(row, gateway, port, address))
        return out

    async def save(self, command: Command) -> None:
        await in_transaction(self.sessions, lambda s: self._save(s, command))

    async def _save(self, session: AsyncSession, command: Command) -> None:
        row = await session.get(MeterCommand, int(command.id), with_for_update=True)
        if row is None:
            log.warning("command %s vanished before its outcome was saved", command.id)
            return
        if row.state not in OPEN_STATES:
            return  # cancelled (or settled) meanwhile: a later outcome does not overwrite it
        now = utcnow()
        before = row.state
        row.state, row.attempts, row.last_error = command.state, command.attempts, (command.last_error or None)
        if row.last_error:
            row.last_error = row.last_error[:500]
        row.next_attempt_at = command.next_attempt_at or now
        if command.state == "sent" and row.sent_at is None:
            row.sent_at = now
        if command.state == "confirmed":
            row.confirmed_at = now
            await _confirmed(session, row)
        elif command.state in ("failed", "expired") and row.kind == "push_credit":
            await meter_credit.void(session, row)
        if command.state != before and command.state not in OPEN_STATES and row.kind in AUDITED:
            await _audit(session, row, before, ACTOR)


async def _confirmed(session: AsyncSession, row: MeterCommand) -> None:
    """What the meter read back is now true in the database."""
    meter = await session.get(Meter, row.meter_id, with_for_update=True)
    if meter is None:
        return
    if row.kind in WANT_CLOSED:
        meter.relay_closed, meter.relay_changed_at = WANT_CLOSED[row.kind], utcnow()
    elif row.kind == "push_credit":
        meter.purchase_count = max(meter.purchase_count, int(row.params["purchase_count"]))
        await meter_credit.settle(session, row, meter)


async def _audit(session: AsyncSession, row: MeterCommand, before: str, actor: str) -> None:
    site_id = await session.scalar(select(Meter.site_id).where(Meter.id == row.meter_id))
    after: dict[str, Any] = {"state": row.state, "kind": row.kind, "attempts": row.attempts}
    if row.last_error:
        after["error"] = row.last_error
    session.add(AuditEntry(at=utcnow(), actor=actor, site_id=site_id, action=f"meter_command.{row.state}",
                           object_type="meter_command", object_id=str(row.id), before={"state": before},
                           after=after, reason=row.reason))


async def cancel(session: AsyncSession, command_id: int, actor: str, reason: str | None = None) -> bool:
    """Cancel a command that has not been sent; a sent one must be confirmed or expire."""
    row = await session.get(MeterCommand, command_id, with_for_update=True)
    if row is None or row.state != "queued":
        return False
    row.state, row.last_error = "cancelled", (reason or f"cancelled by {actor}")[:500]
    if row.kind == "push_credit":
        await meter_credit.void(session, row)
    if row.kind in AUDITED:
        await _audit(session, row, "queued", actor)
    return True
