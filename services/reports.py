"""Usage reports read from the roll-ups: the monthly report per room, per-meter series, trends.

Everything here reads usage_daily / usage_monthly (services.rollups keeps them), never the raw
readings, so a report over years of data costs a few grouped queries. Finance reports live in
services.finance_reports.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import BigInteger, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.errors import NotFound, ServiceError
from store.models import Account, Building, Floor, Meter, Room, Site, Tenant, UsageDaily, UsageMonthly

UTILITIES = ("electricity", "water")
GRANULARITIES = ("day", "month", "year")
NUMS = ("quantity", "sharp", "peak", "flat", "valley", "cost_fen", "readings")


@dataclass
class Usage:
    """Quantity (Wh or litres), its sharp/peak/flat/valley split, cost in fen, readings counted."""

    quantity: int = 0
    sharp: int = 0
    peak: int = 0
    flat: int = 0
    valley: int = 0
    cost_fen: int = 0
    readings: int = 0

    def add(self, other: "Usage | tuple[int, ...]") -> None:
        vals = other if isinstance(other, tuple) else tuple(getattr(other, n) for n in NUMS)
        for n, v in zip(NUMS, vals):
            setattr(self, n, getattr(self, n) + int(v or 0))


def change_pct(now: int, before: int) -> str | None:
    """Percent change as text with one decimal ("+12.5"), None when there is nothing to compare."""
    if not before:
        return None
    tenths = (now - before) * 1000 // before if now >= before else -((before - now) * 1000 // before)
    return f"{'+' if tenths >= 0 else '-'}{abs(tenths) // 10}.{abs(tenths) % 10}"


def month_start(d: date) -> date:
    return d.replace(day=1)


def add_months(d: date, n: int) -> date:
    y, m = divmod(d.year * 12 + d.month - 1 + n, 12)
    return date(y, m + 1, 1)


@dataclass
class RoomRow:
    room_id: int | None
    building: str
    floor: str
    number: str
    tenant: str
    usage: dict[str, Usage] = field(default_factory=lambda: {u: Usage() for u in UTILITIES})
    prev: dict[str, int] = field(default_factory=lambda: {u: 0 for u in UTILITIES})  # month before
    last_year: dict[str, int] = field(default_factory=lambda: {u: 0 for u in UTILITIES})  # same month a year ago

    def mom(self, utility: str) -> str | None:
        return change_pct(self.usage[utility].quantity, self.prev[utility])

    def yoy(self, utility: str) -> str | None:
        return change_pct(self.usage[utility].quantity, self.last_year[utility])


@dataclass
class MonthlyReport:
    site: Site
    month: date
    rows: list[RoomRow]
    total: RoomRow

    @property
    def label(self) -> str:
        return f"{self.month:%Y-%m}"


async def _site(session: AsyncSession, site_id: int) -> Site:
    site = await session.get(Site, site_id)
    if site is None:
        raise NotFound(f"site {site_id} not found")
    return site


def _sum(col: Any) -> Any:
    """SUM as a plain integer (PostgreSQL would hand back NUMERIC, i.e. slow Decimals)."""
    return cast(func.coalesce(func.sum(col), 0), BigInteger)


async def monthly_report(session: AsyncSession, site_id: int, month: date) -> MonthlyReport:
    """Every room's electricity and water for one month, with month-on-month and year-on-year."""
    site = await _site(session, site_id)
    month = month_start(month)
    prev, ly = add_months(month, -1), add_months(month, -12)
    def in_month(col: Any, when: date) -> Any:
        return cast(func.sum(case((UsageMonthly.month == when, col), else_=0)), BigInteger)

    stmt = (select(Meter.room_id, UsageMonthly.utility, in_month(UsageMonthly.quantity, prev),
                   in_month(UsageMonthly.quantity, ly), *[in_month(getattr(UsageMonthly, n), month) for n in NUMS])
            .join(Meter, Meter.id == UsageMonthly.meter_id)
            .where(UsageMonthly.site_id == site_id, UsageMonthly.month.in_([month, prev, ly]))
            .group_by(Meter.room_id, UsageMonthly.utility))
    rows: dict[int | None, RoomRow] = {}
    labels = await _room_labels(session, site_id)
    total = RoomRow(None, "", "", "", "")
    sums = {u: [0] * len(NUMS) for u in UTILITIES}
    for room_id, utility, before, year_ago, *vals in await session.execute(stmt):
        row = rows.get(room_id)
        if row is None:
            row = rows[room_id] = RoomRow(room_id, *labels.get(room_id, ("", "", "—", "")))
        row.usage[utility] = Usage(*vals)
        sums[utility] = [a + b for a, b in zip(sums[utility], vals)]
        row.prev[utility], row.last_year[utility] = before, year_ago
        total.prev[utility] += before
        total.last_year[utility] += year_ago
    total.usage = {u: Usage(*sums[u]) for u in UTILITIES}
    ordered = sorted(rows.values(), key=lambda r: (r.building, r.floor, r.number))
    return MonthlyReport(site, month, ordered, total)


async def _room_labels(session: AsyncSession, site_id: int) -> dict[int | None, tuple[str, str, str, str]]:
    """room id -> (building, floor, number, tenant of an open account there)."""
    stmt = (select(Room.id, Building.name, Floor.name, Room.number).join(Building, Building.id == Room.building_id)
            .join(Floor, Floor.id == Room.floor_id).where(Room.site_id == site_id))
    out = {rid: (b, f, n, "") for rid, b, f, n in await session.execute(stmt)}
    tenants = (select(Meter.room_id, Tenant.name).join(Account, Account.id == Meter.account_id)
               .join(Tenant, Tenant.id == Account.tenant_id)
               .where(Meter.site_id == site_id, Account.state == "open", Meter.room_id.is_not(None)))
    for rid, name in await session.execute(tenants):
        b, f, n, _ = out.get(rid, ("", "", "", ""))
        out[rid] = (b, f, n, name)
    return out


@dataclass(frozen=True)
class Point:
    label: str
    usage: Usage


async def meter_series(session: AsyncSession, meter_id: int, granularity: str, start: date, end: date) -> list[Point]:
    """One meter's usage by day, month or year over [start, end) (site-local dates)."""
    if granularity not in GRANULARITIES:
        raise ServiceError(f"granularity must be one of {GRANULARITIES}")
    if end <= start:
        raise ServiceError("the span must end after it starts")
    if granularity == "day":
        stmt = (select(UsageDaily.day, *[getattr(UsageDaily, n) for n in NUMS])
                .where(UsageDaily.meter_id == meter_id, UsageDaily.day >= start, UsageDaily.day < end)
                .order_by(UsageDaily.day))
        return [Point(d.isoformat(), Usage(*map(int, vals))) for d, *vals in await session.execute(stmt)]
    stmt = (select(UsageMonthly.month, *[getattr(UsageMonthly, n) for n in NUMS])
            .where(UsageMonthly.meter_id == meter_id, UsageMonthly.month >= month_start(start),
                   UsageMonthly.month < end).order_by(UsageMonthly.month))
    buckets: dict[str, Usage] = {}
    for m, *vals in await session.execute(stmt):
        key = f"{m:%Y-%m}" if granularity == "month" else f"{m:%Y}"
        buckets.setdefault(key, Usage()).add(tuple(vals))
    return [Point(k, u) for k, u in buckets.items()]


async def site_year(session: AsyncSession, site_id: int, year: int) -> dict[str, dict[str, list[int]]]:
    """Per utility, 12 monthly quantities for `year` and for the year before (the YoY chart)."""
    stmt = (select(UsageMonthly.utility, UsageMonthly.month, _sum(UsageMonthly.quantity))
            .where(UsageMonthly.site_id == site_id, UsageMonthly.month >= date(year - 1, 1, 1),
                   UsageMonthly.month < date(year + 1, 1, 1))
            .group_by(UsageMonthly.utility, UsageMonthly.month))
    out: dict[str, dict[str, list[int]]] = defaultdict(lambda: {"this": [0] * 12, "last": [0] * 12})
    for utility, m, qty in await session.execute(stmt):
        out[utility]["this" if m.year == year else "last"][m.month - 1] += int(qty or 0)
    return {u: out[u] for u in UTILITIES if u in out}


async def site_days(session: AsyncSession, site_id: int, month: date) -> dict[str, list[tuple[str, int, int]]]:
    """Per utility, (day, quantity, cost fen) for each day of a month: the report's daily chart."""
    start, end = month_start(month), add_months(month, 1)
    stmt = (select(UsageDaily.utility, UsageDaily.day, _sum(UsageDaily.quantity), _sum(UsageDaily.cost_fen))
            .where(UsageDaily.site_id == site_id, UsageDaily.day >= start, UsageDaily.day < end)
            .group_by(UsageDaily.utility, UsageDaily.day).order_by(UsageDaily.day))
    out: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for utility, d, qty, fen in await session.execute(stmt):
        out[utility].append((d.isoformat(), int(qty or 0), int(fen or 0)))
    return dict(out)
