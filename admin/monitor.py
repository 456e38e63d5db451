"""The room monitor's reads: every room of a site with link, relay and balance state, in one query."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

from sqlalchemy import Select, and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Account, Building, Floor, LedgerAccount, Meter, Room, Site, Tenant

PAGE_SIZE = 200
STATES = ("normal", "alert1", "alert2", "alert3", "arrears", "cutoff", "vacant")
LINKS = ("online", "partial", "lost")
DEFAULT_THRESHOLDS_FEN = (5000, 2000, 0)  # the alert levels of billing.alerts.DEFAULT_LEVELS


@dataclass(frozen=True)
class RoomFilter:
    building_id: int | None = None
    floor_level: int | None = None
    state: str | None = None
    link: str | None = None
    q: str = ""
    page: int = 1


@dataclass(frozen=True)
class RoomCell:
    id: int
    number: str
    building: str
    floor_level: int
    link: str
    relay: str | None  # "on" | "off" | None (no meter)
    state: str
    balance_fen: int | None
    account_code: str | None
    tenant: str | None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def thresholds_of(site: Site) -> tuple[int, int, int]:
    """The site's three alert levels in fen (site.settings['alert_levels_fen']), or the defaults."""
    raw = (site.settings or {}).get("alert_levels_fen")
    if isinstance(raw, list) and len(raw) == 3 and all(isinstance(x, int) for x in raw):
        return (raw[0], raw[1], raw[2])
    return DEFAULT_THRESHOLDS_FEN


def _rooms(site_id: int, thresholds: tuple[int, int, int], room_ids: Sequence[int] | None = None,  # type: ignore[no-untyped-def]
           with_tenant: bool = True):
    """A subquery: one row per room of the site, with its computed link and balance state.

    Meters and wallets are each aggregated once (grouped subqueries joined by key), not per row.
    """
    meter_where = [Meter.site_id == site_id, Meter.room_id.is_not(None)]
    if room_ids is not None:
        meter_where.append(Meter.room_id.in_(list(room_ids)))
    per_room = (select(Meter.room_id.label("room_id"), func.count(Meter.id).label("n"),
                       func.sum(case((Meter.online, 1), else_=0)).label("n_online"),
                       func.sum(case((Meter.relay_closed, 0), else_=1)).label("n_off"),
                       func.max(Meter.account_id).label("account_id"))
                .where(*meter_where).group_by(Meter.room_id).subquery("per_room"))
    wallet_where = [LedgerAccount.site_id == site_id, LedgerAccount.code.like("wallet:%")]
    if room_ids is not None:
        wallet_where.append(LedgerAccount.account_id.in_(
            select(Meter.account_id).where(Meter.room_id.in_(list(room_ids)))))
    bal = (select(LedgerAccount.account_id.label("account_id"), func.sum(LedgerAccount.balance_fen).label("fen"))
           .where(*wallet_where).group_by(LedgerAccount.account_id).subquery("bal"))
    room_where = [Room.site_id == site_id] + ([Room.id.in_(list(room_ids))] if room_ids is not None else [])
    cols = [Room.id, Room.number, Room.building_id, Building.name.label("building"),
            Floor.level.label("floor_level"), func.coalesce(per_room.c.n, 0).label("n"),
            func.coalesce(per_room.c.n_online, 0).label("n_online"),
            func.coalesce(per_room.c.n_off, 0).label("n_off"), per_room.c.account_id,
            case((per_room.c.account_id.is_(None), literal(None)), else_=func.coalesce(bal.c.fen, 0)).label("balance")]
    if with_tenant:
        cols += [Account.code.label("account_code"), Tenant.name.label("tenant"), Tenant.phone.label("phone")]
    stmt = (select(*cols).join(Building, Building.id == Room.building_id).join(Floor, Floor.id == Room.floor_id)
            .outerjoin(per_room, per_room.c.room_id == Room.id)
            .outerjoin(bal, bal.c.account_id == per_room.c.account_id))
    if with_tenant:
        stmt = stmt.outerjoin(Account, Account.id == per_room.c.account_id).outerjoin(Tenant, Tenant.id == Account.tenant_id)
    inner = stmt.where(*room_where).subquery("r")
    t1, t2, t3 = thresholds
    state = case((inner.c.account_id.is_(None), "vacant"), (inner.c.n_off > 0, "cutoff"),
                 (inner.c.balance < 0, "arrears"), (inner.c.balance <= t3, "alert3"),
                 (inner.c.balance <= t2, "alert2"), (inner.c.balance <= t1, "alert1"), else_="normal")
    link = case((inner.c.n == 0, "none"), (inner.c.n_online == inner.c.n, "online"),
                (inner.c.n_online == 0, "lost"), else_="partial")
    return inner, state.label("state"), link.label("link")


def _filtered(inner, state, link, f: RoomFilter, with_state: bool = True) -> list[Any]:  # type: ignore[no-untyped-def]
    conds: list[Any] = []
    if f.building_id is not None:
        conds.append(inner.c.building_id == f.building_id)
    if f.floor_level is not None:
        conds.append(inner.c.floor_level == f.floor_level)
    if f.link in LINKS:
        conds.append(link == f.link)
    if with_state and f.state in STATES:
        conds.append(state == f.state)
    if f.q.strip():
        like = f"%{f.q.strip()}%"
        conds.append(or_(inner.c.number.like(like), inner.c.account_code.like(like),
                         inner.c.tenant.like(like), inner.c.phone.like(like)))
    return conds


def _cells_stmt(inner, state, link, conds: Sequence[Any]) -> Select[Any]:  # type: ignore[no-untyped-def]
    return (select(inner.c.id, inner.c.number, inner.c.building, inner.c.floor_level, link,
                   inner.c.n, inner.c.n_off, state, inner.c.balance, inner.c.account_code, inner.c.tenant)
            .where(and_(True, *conds)).order_by(inner.c.building, inner.c.floor_level, inner.c.number))


def _cell(row: Any) -> RoomCell:
    relay = None if not row.n else ("off" if row.n_off else "on")
    bal = None if row.balance is None else int(row.balance)
    return RoomCell(row.id, row.number, row.building, row.floor_level, row.link, relay, row.state, bal,
                    row.account_code, row.tenant)


@dataclass(frozen=True)
class MonitorPage:
    cells: list[RoomCell]
    counts: dict[str, int]  # by state, other filters applied
    total: int
    page: int
    pages: int


async def state_counts(session: AsyncSession, site: Site, f: RoomFilter) -> dict[str, int]:
    """Rooms per balance state (building, floor, link and search filters applied): one site-wide aggregate."""
    inner, state, link = _rooms(site.id, thresholds_of(site), with_tenant=bool(f.q.strip()))
    base = _filtered(inner, state, link, f, with_state=False)
    return {s: int(n) for s, n in (await session.execute(
        select(state, func.count()).where(and_(True, *base)).group_by(state))).all()}


async def monitor_page(session: AsyncSession, site: Site, f: RoomFilter) -> MonitorPage:
    """One page of rooms, aggregating only that page's rooms unless a filter needs the whole site.

    Without a state, link or search filter the page comes straight from the rooms table and the
    per-state counts are left to the live stream (`counts` is then empty): a page view costs the
    same with 100 rooms as with 10,000.
    """
    thresholds, needs_tenant = thresholds_of(site), bool(f.q.strip())
    plain = f.state not in STATES and f.link not in LINKS and not needs_tenant
    if plain:
        counts: dict[str, int] = {}
        total = int(await session.scalar(_plain_page(site.id, f, None).with_only_columns(func.count())) or 0)
    else:
        counts = await state_counts(session, site, f)
        total = counts.get(f.state, 0) if f.state in STATES else sum(counts.values())
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, f.page), pages)
    if plain:
        ids_stmt = _plain_page(site.id, f, page)
    else:
        inner, state, link = _rooms(site.id, thresholds, with_tenant=needs_tenant)
        ids_stmt = (select(inner.c.id).where(and_(True, *_filtered(inner, state, link, f)))
                    .order_by(inner.c.building, inner.c.floor_level, inner.c.number)
                    .limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE))
    ids = list(await session.scalars(ids_stmt))
    return MonitorPage(await cells_by_id(session, site, ids), counts, total, page, pages)


def _plain_page(site_id: int, f: RoomFilter, page: int | None) -> Select[Any]:
    """Room ids of one page straight from the rooms table (no filter that needs meters or money)."""
    stmt = (select(Room.id).join(Building, Building.id == Room.building_id).join(Floor, Floor.id == Room.floor_id)
            .where(Room.site_id == site_id))
    if f.building_id is not None:
        stmt = stmt.where(Room.building_id == f.building_id)
    if f.floor_level is not None:
        stmt = stmt.where(Floor.level == f.floor_level)
    if page is None:
        return stmt
    return stmt.order_by(Building.name, Floor.level, Room.number).limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)


async def cells_by_id(session: AsyncSession, site: Site, room_ids: Sequence[int]) -> list[RoomCell]:
    """The current state of the given rooms (those on a viewer's page), for the live stream."""
    if not room_ids:
        return []
    inner, state, link = _rooms(site.id, thresholds_of(site), room_ids)
    stmt = _cells_stmt(inner, state, link, [])
    return [_cell(r) for r in (await session.execute(stmt)).all()]


async def site_layout(session: AsyncSession, site_id: int) -> tuple[list[Building], list[int]]:
    """Buildings and floor levels of a site, for the filter menus."""
    buildings = list(await session.scalars(select(Building).where(Building.site_id == site_id).order_by(Building.name)))
    levels = list(await session.scalars(select(Floor.level).join(Building, Building.id == Floor.building_id)
                                        .where(Building.site_id == site_id).distinct().order_by(Floor.level)))
    return buildings, levels
