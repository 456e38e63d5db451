"""A demo site with months of plausible readings, built through the real services."""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.money import Money
from meterpay.settings import Settings
from services.accounts import OpenAccount, open_account
from services.ingest import ReadingIn, ingest
from services.uow import in_transaction
from services.wallets import recharge
from store.db import make_engine, make_sessionmaker
from store.models import Building, Company, Floor, Gateway, Meter, Room, Site, Tariff, TariffVersion

log = logging.getLogger(__name__)
EPOCH = datetime(2020, 1, 1, tzinfo=timezone.utc)
TARIFFS = {
    "居民电价 flat": ("electricity", {"kind": "flat", "price": "0.85"}),
    "商业分时 TOU": ("electricity", {"kind": "tou", "prices": {"sharp": "1.35", "peak": "1.10", "flat": "0.75",
                                                             "valley": "0.38"},
                                   "windows": [{"start": "00:00", "end": "08:00", "rate": "valley"},
                                               {"start": "08:00", "end": "10:00", "rate": "flat"},
                                               {"start": "10:00", "end": "12:00", "rate": "sharp"},
                                               {"start": "12:00", "end": "18:00", "rate": "peak"},
                                               {"start": "18:00", "end": "21:00", "rate": "sharp"},
                                               {"start": "21:00", "end": "00:00", "rate": "flat"}]}),
    "阶梯水价 tiered": ("water", {"kind": "tiered", "tiers": [{"upto": "6", "price": "3.50"},
                                                          {"upto": "12", "price": "5.20"}, {"price": "8.00"}]}),
}


async def seed_if_empty(settings: Settings, rooms_per_floor: int = 20, days: int = 60, seed: int = 7) -> bool:
    """Create the demo site unless one exists; returns whether it created it."""
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    try:
        async with sessions() as s:
            if await s.scalar(select(func.count()).select_from(Site)):
                log.info("database already has sites; demo data not added")
                return False
        rng = random.Random(seed)
        start = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(days=days)
        meters = await in_transaction(sessions, lambda s: _layout(s, rooms_per_floor, start, rng))
        await _history(sessions, meters, start, days, rng)
        log.info("demo site created: %d meters, %d days of readings", len(meters), days)
        from admin.bootstrap import ensure_demo_owner

        await ensure_demo_owner(sessions)
        return True
    finally:
        await engine.dispose()


async def _layout(s: AsyncSession, rooms_per_floor: int, start: datetime, rng: random.Random) -> list[tuple[int, str, int]]:
    company = Company(name="示范物业 Demo Property Co.")
    s.add(company)
    await s.flush()
    site = Site(company_id=company.id, code="DEMO", name="阳光公寓 Sunshine Apartments", timezone="Asia/Shanghai",
                settings={})
    s.add(site)
    await s.flush()
    tariffs = {}
    for name, (utility, spec) in TARIFFS.items():
        t = Tariff(site_id=site.id, name=name, utility=utility, kind=spec["kind"])
        s.add(t)
        await s.flush()
        s.add(TariffVersion(tariff_id=t.id, effective_from=EPOCH, spec=spec))
        tariffs[spec["kind"]] = t
    meters: list[tuple[int, str, int]] = []
    for bname in ("A栋", "B栋"):
        b = Building(site_id=site.id, name=bname)
        s.add(b)
        await s.flush()
        for level in range(1, 7):
            f = Floor(building_id=b.id, level=level, name=f"{level}F")
            gw = Gateway(site_id=site.id, code=f"DEMO-{'A' if bname == 'A栋' else 'B'}{level}",
                         protocol="modbus_rtu_tcp", host="127.0.0.1", port=0)
            s.add_all([f, gw])
            await s.flush()
            for n in range(1, rooms_per_floor + 1):
                meters += await _room(s, site, b, f, gw, level, n, tariffs, start, rng)
    return meters


async def _room(s, site, b, f, gw, level, n, tariffs, start, rng) -> list[tuple[int, str, int]]:  # type: ignore[no-untyped-def]
    room = Room(site_id=site.id, building_id=b.id, floor_id=f.id, number=f"{level}{n:02d}",
                area_m2=Decimal(rng.choice(["25.50", "32.00", "45.80", "60.00"])))
    s.add(room)
    await s.flush()
    shop = n % 5 == 0
    e = Meter(site_id=site.id, room_id=room.id, gateway_id=gw.id, port=1, address=str(n),
              utility="electricity", model="acrel-ddsy1352", protocol="modbus_rtu_tcp",
              tariff_id=(tariffs["tou"] if shop else tariffs["flat"]).id, online=True, relay_closed=True)
    w = Meter(site_id=site.id, room_id=room.id, gateway_id=gw.id, port=2, address=str(n),
              utility="water", model="water-valve", protocol="modbus_rtu_tcp", tariff_id=tariffs["tiered"].id,
              max_rate_per_h=5_000, online=True, relay_closed=True)
    s.add_all([e, w])
    await s.flush()
    out = [(e.id, "electricity", 3000 if shop else 250), (w.id, "water", 120)]
    if rng.random() < 0.85:
        acc = await open_account(s, OpenAccount(site.id, f"租户{level}{n:02d}", f"139{level:02d}{n:06d}",
                                                (e.id, w.id), code=f"DEMO-{b.name}-{room.number}"))
        acc.opened_at = start - timedelta(hours=1)
        await recharge(s, acc.id, Money(rng.choice([20000, 30000, 50000, 80000])), f"demo-open-{acc.code}")
    return out


async def _history(sessions, meters: list[tuple[int, str, int]], start: datetime, days: int,  # type: ignore[no-untyped-def]
                   rng: random.Random) -> None:
    totals = {mid: rng.randint(1_000_000, 5_000_000) for mid, _, _ in meters}
    for day in range(days + 1):  # readings every 6 hours, ingested a day per batch
        batch = []
        for step in range(4 if day < days else 1):
            at = start + timedelta(hours=24 * day + 6 * step)
            for mid, utility, mean in meters:
                if day or step:
                    totals[mid] += int(rng.expovariate(1 / mean) * (1.6 if step in (2, 3) else 0.6))
                batch.append(ReadingIn(mid, at, totals[mid]))
        await in_transaction(sessions, lambda s, b=batch, t=at: ingest(s, b, now=t))
