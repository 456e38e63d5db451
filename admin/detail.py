"""The room page's reads: meters with live values, today's use and cost, 30 days by day, orders, commands."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Account, Building, Floor, Meter, MeterCommand, Order, Reading, Room, Site, Tariff, Tenant
from store.types import utcnow

DAYS = 30


@dataclass
class MeterView:
    meter: Meter
    tariff: Tariff | None
    today_qty: int = 0
    today_fen: int = 0
    daily: list[tuple[date, int]] = field(default_factory=list)  # (local day, quantity)


@dataclass
class RoomView:
    room: Room
    building: Building
    floor: Floor
    site: Site
    meters: list[MeterView]
    account: Account | None
    tenant: Tenant | None
    balance_fen: int | None
    orders: list[Order]
    commands: list[MeterCommand]
    tariffs: list[Tariff]


async def _usage(session: AsyncSession, meter_id: int, tz: ZoneInfo, now: datetime) -> tuple[int, int, list[tuple[date, int]]]:
    local_today = now.astimezone(tz).date()
    since = datetime.combine(local_today - timedelta(days=DAYS - 1), datetime.min.time(), tz)
    rows = (await session.execute(select(Reading.taken_at, Reading.quantity, Reading.amount_fen).where(
        Reading.meter_id == meter_id, Reading.taken_at >= since))).all()
    by_day: dict[date, int] = {local_today - timedelta(days=i): 0 for i in range(DAYS)}
    today_qty = today_fen = 0
    for taken_at, qty, fen in rows:
        d = taken_at.astimezone(tz).date()
        if d in by_day:
            by_day[d] += int(qty)
        if d == local_today:
            today_qty, today_fen = today_qty + int(qty), today_fen + int(fen)
    return today_qty, today_fen, sorted(by_day.items())


async def room_view(session: AsyncSession, room: Room) -> RoomView:
    site = await session.get(Site, room.site_id)
    building = await session.get(Building, room.building_id)
    floor = await session.get(Floor, room.floor_id)
    assert site is not None and building is not None and floor is not None
    tz, now = ZoneInfo(site.timezone), utcnow()
    meters = list(await session.scalars(select(Meter).where(Meter.room_id == room.id).order_by(Meter.utility, Meter.id)))
    tariffs = list(await session.scalars(select(Tariff).where(Tariff.site_id == site.id).order_by(Tariff.id)))
    by_id = {t.id: t for t in tariffs}
    views = []
    for m in meters:
        q, fen, daily = await _usage(session, m.id, tz, now)
        views.append(MeterView(m, by_id.get(m.tariff_id or 0), q, fen, daily))
    account_id = next((m.account_id for m in meters if m.account_id is not None), None)
    account = await session.get(Account, account_id) if account_id else None
    tenant = await session.get(Tenant, account.tenant_id) if account else None
    balance = None
    if account is not None:
        from services.wallets import account_balance

        balance = await account_balance(session, account)
    orders = list(await session.scalars(select(Order).where(Order.account_id == account_id)
                                        .order_by(Order.id.desc()).limit(10))) if account_id else []
    commands = list(await session.scalars(select(MeterCommand).where(
        MeterCommand.meter_id.in_([m.id for m in meters])).order_by(MeterCommand.id.desc()).limit(10)))
    return RoomView(room, building, floor, site, views, account, tenant, balance, orders, commands, tariffs)


def spark(daily: list[tuple[date, int]], width: int = 600, height: int = 120) -> dict[str, Any]:
    """Bars for an inline SVG chart: x, y, w, h per day, plus the max for the axis label."""
    top = max((q for _, q in daily), default=0) or 1
    bw = width / max(1, len(daily))
    bars = [{"x": round(i * bw + 1, 1), "w": round(bw - 2, 1), "h": round(q / top * (height - 20), 1),
             "y": round(height - q / top * (height - 20), 1), "day": d.isoformat(), "q": q}
            for i, (d, q) in enumerate(daily)]
    return {"bars": bars, "max": top, "width": width, "height": height}


async def order_counts(session: AsyncSession, account_id: int) -> int:
    return int(await session.scalar(select(func.count()).select_from(Order).where(Order.account_id == account_id)) or 0)
