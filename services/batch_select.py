"""What a batch task covers and does: a meter selector (site, building, floor, tariff, state, a list)
and the checked parameters of its action."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services import wallets
from services.errors import ServiceError
from store.models import Meter, Room, Tariff

ACTIONS = ("set_tariff", "relay_off", "relay_on", "alert_amounts", "time_sync", "recharge")
STATES = ("online", "offline", "power_on", "power_off", "with_account", "without_account")
STATE_FILTERS: dict[str, Any] = {
    "online": lambda: Meter.online.is_(True),
    "offline": lambda: Meter.online.is_(False),
    "power_on": lambda: Meter.relay_closed.is_(True),
    "power_off": lambda: Meter.relay_closed.is_(False),
    "with_account": lambda: Meter.account_id.is_not(None),
    "without_account": lambda: Meter.account_id.is_(None),
}


@dataclass(frozen=True)
class Selector:
    """All given filters apply together; `meter_ids` narrows to an explicit list (of this site)."""

    site_id: int
    building_id: int | None = None
    floor_id: int | None = None
    tariff_id: int | None = None
    state: str | None = None
    utility: str | None = None
    meter_ids: tuple[int, ...] = field(default_factory=tuple)

    def as_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if v not in (None, ())}


async def select_meters(session: AsyncSession, sel: Selector) -> list[tuple[int, int | None]]:
    """(meter id, account id) of every matching meter, dealt round the buses (see `spread`)."""
    stmt = (select(Meter.id, Meter.account_id, Meter.gateway_id, Meter.port)
            .where(Meter.site_id == sel.site_id).order_by(Meter.id))
    if sel.building_id is not None or sel.floor_id is not None:
        stmt = stmt.join(Room, Room.id == Meter.room_id)
        if sel.building_id is not None:
            stmt = stmt.where(Room.building_id == sel.building_id)
        if sel.floor_id is not None:
            stmt = stmt.where(Room.floor_id == sel.floor_id)
    if sel.tariff_id is not None:
        stmt = stmt.where(Meter.tariff_id == sel.tariff_id)
    if sel.utility is not None:
        stmt = stmt.where(Meter.utility == sel.utility)
    if sel.state is not None:
        if sel.state not in STATE_FILTERS:
            raise ServiceError(f"state must be one of {STATES}")
        stmt = stmt.where(STATE_FILTERS[sel.state]())
    if sel.meter_ids:
        stmt = stmt.where(Meter.id.in_(sel.meter_ids))
    return spread([(int(m), a, g, p) for m, a, g, p in await session.execute(stmt)])


def spread(meters: list[tuple[int, int | None, int | None, int]]) -> list[tuple[int, int | None]]:
    """The first meter of every bus, then the second of every bus, ...: a batch is run (and its
    commands queued) chunk by chunk in this order, so every gateway's bus starts in the first
    chunk instead of the last gateway waiting for all the others' commands to be queued."""
    rank: dict[tuple[int | None, int], int] = {}
    keyed = []
    for meter_id, account_id, gateway_id, port in meters:  # in id order
        n = rank[(gateway_id, port)] = rank.get((gateway_id, port), -1) + 1
        keyed.append((n, gateway_id or 0, port, meter_id, account_id))
    return [(meter_id, account_id) for *_, meter_id, account_id in sorted(keyed)]


async def check_params(session: AsyncSession, site_id: int, action: str, params: dict[str, Any]) -> dict[str, Any]:
    """The action's parameters, checked and reduced to plain JSON (amounts in fen)."""
    if action not in ACTIONS:
        raise ServiceError(f"action must be one of {ACTIONS}")
    if action == "set_tariff":
        tariff = await session.get(Tariff, int(params.get("tariff_id") or 0))
        if tariff is None or tariff.site_id != site_id:
            raise ServiceError("choose a tariff of this site")
        return {"tariff_id": tariff.id}
    if action == "recharge":
        amount = wallets.require_money(params.get("amount"))
        return {"amount_fen": amount.fen}
    if action == "alert_amounts":
        levels = params.get("thresholds_fen") or {}
        if not levels or any(not str(k).isalnum() or int(v) < 0 for k, v in levels.items()):
            raise ServiceError("alert amounts: give levels with non-negative amounts in fen")
        return {"thresholds_fen": {str(k): int(v) for k, v in levels.items()}}
    return {}
