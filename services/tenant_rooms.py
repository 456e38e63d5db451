"""The accounts a WeChat user is bound to, with their site, room and meters (ORM objects).

Used where a view needs more than a balance (usage, orders, bills, the pay page); the balance
itself is read in one statement by services.tenant_balance.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.port import RoomView
from services.tenant_rules import room_label
from store.models import Account, Building, Meter, Room, Site, TenantLink


@dataclass(frozen=True)
class Mine:
    """One bound account with what the views need."""

    account: Account
    site: Site
    room: RoomView
    meters: tuple[Meter, ...]


async def bound_accounts(session: AsyncSession, openid: str) -> list[Mine]:
    """The open accounts bound to `openid`, in binding order."""
    rows = (await session.execute(
        select(Account, Site).join(TenantLink, TenantLink.account_id == Account.id)
        .join(Site, Site.id == Account.site_id)
        .where(TenantLink.openid == openid, Account.state == "open").order_by(TenantLink.id))).all()
    return await with_rooms(session, [(a, s) for a, s in rows])


async def with_rooms(session: AsyncSession, pairs: list[tuple[Account, Site]]) -> list[Mine]:
    """Attach meters and the room label (the first meter placed in a room names it)."""
    ids = [a.id for a, _ in pairs]
    meters: dict[int, list[Meter]] = defaultdict(list)
    for m in await session.scalars(select(Meter).where(Meter.account_id.in_(ids)).order_by(Meter.id)):
        meters[m.account_id or 0].append(m)
    room_ids = {m.room_id for ms in meters.values() for m in ms if m.room_id}
    rooms = {r.id: (r, b) for r, b in (await session.execute(
        select(Room, Building).join(Building, Building.id == Room.building_id)
        .where(Room.id.in_(room_ids)))).all()}
    out = []
    for acc, site in pairs:
        placed = [rooms[m.room_id] for m in meters[acc.id] if m.room_id in rooms]
        label = room_label(placed[0][1].name, placed[0][0].number, acc.code) if placed else acc.code
        out.append(Mine(acc, site, RoomView(str(acc.id), site.code, site.name, label), tuple(meters[acc.id])))
    return out


async def rooms_of(session: AsyncSession, openid: str) -> list[RoomView]:
    return [m.room for m in await bound_accounts(session, openid)]
