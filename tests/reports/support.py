"""A site with history for report tests: TOU electricity across a tariff change, water, a replaced meter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.money import Money
from services.accounts import OpenAccount, open_account
from services.ingest import ReadingIn, ingest
from services.meters import replace_meter
from services.rollups import roll_up
from services.uow import in_transaction
from services.wallets import recharge
from store.models import Reading, TariffVersion
from tests.factories import EPOCH, add_meter, add_tariff, make_site

TZ = ZoneInfo("Asia/Shanghai")
H = timedelta(hours=1)
WINDOWS = [{"start": "23:00", "end": "07:00", "rate": "valley"}, {"start": "07:00", "end": "10:00", "rate": "flat"},
           {"start": "10:00", "end": "18:00", "rate": "peak"}, {"start": "18:00", "end": "21:00", "rate": "sharp"},
           {"start": "21:00", "end": "23:00", "rate": "flat"}]
TOU_V1 = {"kind": "tou", "prices": {"sharp": "1.20", "peak": "1.00", "flat": "0.70", "valley": "0.30"}, "windows": WINDOWS}
TOU_V2 = {"kind": "tou", "prices": {"sharp": "1.50", "peak": "1.10", "flat": "0.80", "valley": "0.35"}, "windows": WINDOWS}
WATER = {"kind": "flat", "price": "3.00"}
FLAT = {"kind": "flat", "price": "1.00"}
TARIFF_CHANGE = datetime(2026, 3, 15, tzinfo=TZ)
GAP = (datetime(2026, 3, 20, 10, tzinfo=TZ), datetime(2026, 3, 22, 13, tzinfo=TZ))  # no reading inside
REPLACED_AT = datetime(2025, 7, 1, tzinfo=TZ)
NEW_BASE = 5_000


def local(y: int, m: int, d: int, h: int = 0) -> datetime:
    return datetime(y, m, d, h, tzinfo=TZ)


@dataclass
class History:
    site: int
    tou_meter: int
    water_meter: int
    replaced_meter: int
    rooms: tuple[int, int]


def hourly_use(i: int) -> int:
    return 100 + (i * 37) % 400


async def build(sessions: async_sessionmaker[AsyncSession]) -> History:
    async def setup(s: AsyncSession) -> History:
        kit = await make_site(s, "R1")
        tou = await add_tariff(s, kit, "tou", TOU_V1)
        s.add(TariffVersion(tariff_id=tou.id, effective_from=TARIFF_CHANGE, spec=TOU_V2))
        water = await add_tariff(s, kit, "water", WATER, utility="water")
        flat = await add_tariff(s, kit, "flat", FLAT)
        e = await add_meter(s, kit, "101", tou)
        w = await add_meter(s, kit, "101w", water, utility="water")
        w.room_id = e.room_id
        r = await add_meter(s, kit, "102", flat)
        for meters, phone in (((e.id, w.id), "13900000001"), ((r.id,), "13900000002")):
            acc = await open_account(s, OpenAccount(kit.site.id, f"Tenant {phone[-1]}", phone, meters), actor="test")
            acc.opened_at = EPOCH
            await recharge(s, acc.id, Money(1_000_000_00), f"open-{phone}")
        return History(kit.site.id, e.id, w.id, r.id, (e.room_id or 0, r.room_id or 0))
    h = await in_transaction(sessions, setup)
    await _feed(sessions, _tou_readings(h.tou_meter) + _water_readings(h.water_meter))
    await _feed(sessions, _replaced_readings(h.replaced_meter, until=REPLACED_AT))
    final = ReadingIn(h.replaced_meter, REPLACED_AT, _daily_total(_days(local(2025, 1, 1), REPLACED_AT)))
    await in_transaction(sessions, lambda s: replace_meter(s, h.replaced_meter, REPLACED_AT, NEW_BASE, final_old=final))
    await _feed(sessions, _replaced_readings(h.replaced_meter, since=REPLACED_AT))
    return h


def _days(a: datetime, b: datetime) -> int:
    return (b - a).days


def _daily_total(n: int) -> int:
    return 1_000 + sum(3_000 + (d * 211) % 2_000 for d in range(n))


def _tou_readings(meter: int) -> list[ReadingIn]:
    out, total, at, i = [], 2_000_000, local(2026, 3, 1), 0
    out.append(ReadingIn(meter, at, total))
    while at < local(2026, 4, 1):
        at += H
        total += hourly_use(i)
        i += 1
        if not GAP[0] < at < GAP[1]:
            out.append(ReadingIn(meter, at, total))
    return out


def _water_readings(meter: int) -> list[ReadingIn]:
    return [ReadingIn(meter, local(2026, 3, 1) + timedelta(days=d), 10_000 + sum(200 + k * 7 for k in range(d)))
            for d in range(32)]


def _replaced_readings(meter: int, until: datetime | None = None, since: datetime | None = None) -> list[ReadingIn]:
    """Daily readings at local midnight: the old meter through 2025-06-30, the new one from its base."""
    out = []
    if until is not None:
        start = local(2025, 1, 1)
        for d in range(_days(start, until)):
            out.append(ReadingIn(meter, start + timedelta(days=d), _daily_total(d)))
        return out
    assert since is not None
    total = NEW_BASE
    for d in range(1, _days(since, local(2026, 2, 1)) + 1):
        total += 2_500 + (d * 97) % 1_500
        out.append(ReadingIn(meter, since + timedelta(days=d), total))
    return out


async def _feed(sessions: async_sessionmaker[AsyncSession], readings: list[ReadingIn], size: int = 400) -> None:
    for i in range(0, len(readings), size):
        chunk = readings[i:i + size]
        results = await in_transaction(sessions, lambda s: ingest(s, chunk))
        assert not [r for r in results if r.error], [r for r in results if r.error][:3]
        await in_transaction(sessions, lambda s: roll_up(s, limit=300))  # incremental, and in small steps


async def raw_billing(sessions: async_sessionmaker[AsyncSession], meter: int) -> list[Reading]:
    async with sessions() as s:
        return list(await s.scalars(select(Reading).where(Reading.meter_id == meter,
                                                          Reading.verdict.in_(("billed", "rollover")))
                                    .order_by(Reading.taken_at)))


def within(r: Reading, a: datetime, b: datetime) -> bool:
    """The reading's interval lies inside [a, b]."""
    assert r.from_at is not None
    return a <= r.from_at and r.taken_at <= b


def month_range(y: int, m: int) -> tuple[datetime, datetime]:
    start = local(y, m, 1)
    end = local(y + (m == 12), m % 12 + 1, 1)
    return start, end


def first(y: int, m: int) -> date:
    return date(y, m, 1)
