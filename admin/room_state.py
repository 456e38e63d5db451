"""Per-room state for the monitor (page, per-state counts, live stream): one set-based query.

A room's balance state uses the alert levels that alerting itself uses (services.alerting.site_config:
the site's `alerts.levels` and each account's own `thresholds_fen`), and billing.alerts' trip rule
(a level is reached when the balance is at or below its threshold), so the monitor says "alert 2"
for exactly the rooms whose tenants were told about level 2. Balance = the sum of the account's
wallet ledger accounts, as services.wallets.account_balance computes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.alerts import AlertConfig
from services.alerting import site_config
from store.models import Account, Building, Floor, LedgerAccount, Meter, Room, Site, Tenant

STATES = ("normal", "alert1", "alert2", "alert3", "arrears", "cutoff", "vacant")
LINKS = ("online", "partial", "lost")
PART = 1000  # rows per part when reading a whole site


class RoomCell(NamedTuple):
    """One room as the monitor shows it (a tuple: 10,000 of them are built once a second)."""

    id: int
    number: str
    building: str
    floor_level: int
    link: str  # online | partial | lost | none (no meter)
    relay: str | None  # "on" | "off" | None (no meter)
    state: str  # one of STATES
    balance_fen: int | None
    account_code: str | None
    tenant: str | None
    building_id: int = 0
    phone: str | None = None  # for search only: never sent to the browser

    @property
    def search(self) -> str:
        """What the monitor's search box looks in: number, account, tenant and phone."""
        return "\x00".join(x for x in (self.number, self.account_code, self.tenant, self.phone) if x).casefold()

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "number": self.number, "building": self.building, "floor_level": self.floor_level,
                "link": self.link, "relay": self.relay, "state": self.state, "balance_fen": self.balance_fen,
                "account_code": self.account_code, "tenant": self.tenant}


def level_state(balance_fen: int, thresholds_fen: Sequence[int]) -> str:
    """"arrears" below zero, else "alertN" for the most severe level reached (billing.alerts trips a
    level at or below its threshold; levels are strictly descending), else "normal".

    Levels past the third show as alert3: the monitor has three alert colours.
    """
    if balance_fen < 0:
        return "arrears"
    reached = 0
    for i, threshold in enumerate(thresholds_fen, start=1):
        if balance_fen <= threshold:
            reached = i
    return f"alert{min(reached, 3)}" if reached else "normal"


def _thresholds(config: AlertConfig) -> tuple[int, ...]:
    return tuple(level.threshold.fen for level in config.levels)


class Levels:
    """Alert thresholds per account: the site's, or the account's own (parsed once per distinct setting)."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.default = _thresholds(site_config(site))
        self._own: dict[str, tuple[int, ...]] = {}

    def of(self, account_id: int, own: dict[str, Any] | None) -> tuple[int, ...]:
        if not own:
            return self.default
        key = repr(sorted(own.items()))
        if key not in self._own:
            self._own[key] = _thresholds(site_config(self.site, Account(id=account_id, alert_settings=own)))
        return self._own[key]


def _balance() -> Any:
    return (select(func.sum(LedgerAccount.balance_fen))
            .where(LedgerAccount.account_id == Account.id, LedgerAccount.code.like("wallet:%"))
            .correlate(Account).scalar_subquery())


def _facts(by_ids: bool) -> Select[Any]:
    """One row per (room, meter): the room's place, each meter's link and relay, its account and balance.

    Built once; `site_id` (and `ids`) are bound per call, so the statement compiles once too.
    Every join is by key (index), so a page of 200 rooms reads only those rooms' rows.
    """
    stmt = (select(Room.id, Room.number, Building.name, Floor.level, Meter.id, Meter.online, Meter.relay_closed,
                   Meter.account_id, Account.code, Account.state, Account.payment_mode, Account.alert_settings,
                   Tenant.name, Tenant.phone, _balance(), Room.building_id)
            .join(Building, Building.id == Room.building_id).join(Floor, Floor.id == Room.floor_id)
            .outerjoin(Meter, Meter.room_id == Room.id).outerjoin(Account, Account.id == Meter.account_id)
            .outerjoin(Tenant, Tenant.id == Account.tenant_id)
            .where(Room.site_id == bindparam("site_id"))
            .order_by(Building.name, Floor.level, Room.number, Room.id, Meter.id))
    if by_ids:
        stmt = stmt.where(Room.id.in_(bindparam("ids", expanding=True)))
    return stmt


_SITE, _IDS = _facts(False), _facts(True)


def _cell(rows: list[Any], levels: Levels) -> RoomCell:
    """Fold a room's rows (one per meter; one row with no meter) into its cell."""
    first = rows[0]
    if len(rows) == 1:  # the usual room: one meter (or none)
        n, n_online, n_off, acc = (0, 0, 0, None) if first[4] is None else (
            1, 1 if first[5] else 0, 0 if first[6] else 1, first if first[7] is not None else None)
    else:
        n, n_online, n_off = len(rows), sum(1 for r in rows if r[5]), sum(1 for r in rows if not r[6])
        acc = max((r for r in rows if r[7] is not None), key=lambda r: r[7], default=None)  # the room's account
    link = "none" if not n else "online" if n_online == n else "lost" if n_online == 0 else "partial"
    relay = None if not n else "off" if n_off else "on"
    number = first[1]
    if acc is None:
        return RoomCell(first[0], number, first[2], first[3], link, relay, "vacant", None, None, None, first[15])
    balance = int(acc[14] or 0)
    if n_off:
        state = "cutoff"
    elif acc[9] == "open" and acc[10] == "prepaid":
        state = level_state(balance, levels.of(acc[7], acc[11]))
    else:
        state = "arrears" if balance < 0 else "normal"  # no balance alerts for postpaid or closed accounts
    return RoomCell(first[0], number, first[2], first[3], link, relay, state, balance, acc[8], acc[12], first[15],
                    acc[13])


async def room_cells(session: AsyncSession, site: Site, room_ids: Sequence[int] | None = None) -> list[RoomCell]:
    """Cells of the given rooms of the site (all its rooms if None), in monitor order.

    The whole site is read in parts, so other requests get the event loop in between.
    """
    if room_ids is not None and not room_ids:
        return []
    conn = await session.connection()  # Core rows: no ORM loading for 10,000 plain tuples
    folder = _Folder(Levels(site))
    if room_ids is not None:
        folder.add((await conn.execute(_IDS, {"site_id": site.id, "ids": list(room_ids)})).all())
    else:
        async for part in (await conn.stream(_SITE, {"site_id": site.id})).partitions(PART):
            folder.add(part)
    return folder.done()


class _Folder:
    """Rows (one per room and meter, a room's rows adjacent) into cells."""

    def __init__(self, levels: Levels) -> None:
        self.levels, self.cells, self.group = levels, [], []  # type: ignore[var-annotated]

    def add(self, rows: Sequence[Any]) -> None:
        group, cells, levels = self.group, self.cells, self.levels
        for row in rows:
            if group and group[0][0] != row[0]:
                cells.append(_cell(group, levels))
                group = []
            group.append(row)
        self.group = group

    def done(self) -> list[RoomCell]:
        if self.group:
            self.cells.append(_cell(self.group, self.levels))
            self.group = []
        return self.cells
