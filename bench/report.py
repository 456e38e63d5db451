"""Report and batch benchmark.

1. report_ms: the monthly report (every room's electricity and water, TOU split, cost, MoM, YoY)
   over 10,000 meters whose roll-ups hold one year of 15-minute readings; report_page_ms adds
   the page's daily chart and twelve-month (YoY) chart queries. Median of three. The roll-ups are generated in bulk (the point is the report query).
2. batch_wire_ratio: a relay batch of 10,000 commands across 16 simulated gateways (one RS485
   bus each, DL/T 645 meters, 9600 baud serial timing in a simulator subprocess) driven through
   services.batches -> meter_commands rows -> services.command_lanes (one lane per gateway, a
   few commands of distinct meters in flight per bus, claims and outcomes written in group
   transactions), wall time from creating the task to every item done, divided by the wire-time
   limit: the serial wire time of the frames the busiest bus actually carried, summed by the
   simulator (batch_ideal_wire_s = commands per bus x one relay command's exchanges, for comparison).

`--quick` (under a minute): one month of daily roll-ups, 800 commands. PostgreSQL is used when
reachable (TEST_DATABASE_URL or the local default), else SQLite; `--sqlite` forces SQLite.
Last stdout line: {"bench": "report", "report_ms": .., "batch_wire_ratio": ..}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine  # noqa: E402

from bench.report_field import batch_ratio  # noqa: E402
from services.reports import add_months, monthly_report, site_days, site_year  # noqa: E402
from store.db import admin_sql, create_all, make_engine, make_sessionmaker  # noqa: E402
from store.models import Building, Company, Floor, Meter, Room, Site, UsageDaily, UsageMonthly  # noqa: E402

PG_ADMIN = os.environ.get("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
METERS = 10_000
COLS = ("meter_id", "site_id", "utility", "quantity", "sharp", "peak", "flat", "valley", "cost_fen", "readings")


async def pg_admin(sql: str) -> None:
    await admin_sql(PG_ADMIN, sql)


async def open_db(force_sqlite: bool) -> tuple[AsyncEngine, str, Any]:
    """A fresh database: PostgreSQL if reachable, else a temporary SQLite file; returns a cleanup."""
    if not force_sqlite:
        name = f"meterpay_bench_{uuid.uuid4().hex[:8]}"
        try:
            await pg_admin(f'CREATE DATABASE "{name}"')
        except Exception:  # noqa: BLE001 - no PostgreSQL here: fall back to SQLite
            pass
        else:
            engine = create_async_engine(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", pool_size=60, max_overflow=10)
            await create_all(engine)
            return engine, "postgresql", lambda: pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    tmp = tempfile.mkdtemp(prefix="meterpay-bench-")
    engine = make_engine(f"sqlite+aiosqlite:///{tmp}/bench.db")
    await create_all(engine)

    async def nothing() -> None:
        return None
    return engine, "sqlite", nothing


async def add_site(sessions: async_sessionmaker[AsyncSession], code: str) -> int:
    async with sessions() as s, s.begin():
        company = Company(name=f"bench {code}")
        s.add(company)
        await s.flush()
        site = Site(company_id=company.id, code=code, name=f"Bench {code}", timezone="Asia/Shanghai", settings={})
        s.add(site)
        await s.flush()
        return site.id


async def add_rooms_and_meters(sessions: async_sessionmaker[AsyncSession], site_id: int, n: int) -> list[tuple[int, str]]:
    """n rooms over 20 buildings x 10 floors, one meter each (every 10th a water meter)."""
    async with sessions() as s, s.begin():
        floors = []
        for b in range(20):
            bld = Building(site_id=site_id, name=f"B{b + 1:02d}")
            s.add(bld)
            await s.flush()
            for lv in range(1, 11):
                fl = Floor(building_id=bld.id, level=lv, name=f"{lv}F")
                s.add(fl)
                await s.flush()
                floors.append((bld.id, fl.id))
        await s.execute(insert(Room), [dict(site_id=site_id, building_id=floors[i % 200][0], floor_id=floors[i % 200][1],
                                            number=f"R{i:05d}") for i in range(n)])
        rooms = list((await s.execute(text("SELECT id FROM rooms WHERE site_id = :s ORDER BY id"), {"s": site_id})).scalars())
        kinds = ["water" if i % 10 == 9 else "electricity" for i in range(n)]
        await s.execute(insert(Meter), [dict(site_id=site_id, room_id=r, port=1, address=f"M{i:05d}", utility=kinds[i],
                                             model="acrel-ddsy1352", protocol="modbus_rtu_tcp") for i, r in enumerate(rooms)])
        rows = (await s.execute(text("SELECT id, utility FROM meters WHERE site_id = :s ORDER BY id"), {"s": site_id})).all()
        return [(int(i), str(u)) for i, u in rows]


def day_values(meter: int, utility: str, d: date) -> tuple[int, ...]:
    """A deterministic day of 96 quarter-hour readings folded: quantity, TOU split, cost, readings."""
    q = 4_000 + (meter * 7919 + d.toordinal() * 104_729) % 9_000 if utility == "electricity" else 150 + (meter + d.day) % 300
    split = (q // 10, q * 3 // 10, q * 3 // 10, q - q // 10 - 2 * (q * 3 // 10))
    return (q, *split, q * 65 // 100, 96)


async def bulk_rollups(engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], site_id: int,
                       meters: list[tuple[int, str]], first: date, days: int, months: int, report_month: date) -> int:
    """Daily rows for `days` days ending with the report month, monthly rows for `months` months."""
    start = add_months(report_month, 1) - timedelta(days=days)
    daily, monthly = [], {}
    for mid, utility in meters:
        for k in range(days):
            d = start + timedelta(days=k)
            vals = day_values(mid, utility, d)
            daily.append((mid, site_id, utility, d, *vals))
    for mid, utility in meters:
        for k in range(months):
            m = add_months(first, k)
            q = sum(day_values(mid, utility, m + timedelta(days=i))[0] for i in range(0, 28, 7)) * 7
            monthly[(mid, m)] = (mid, site_id, utility, m, q, q // 10, q * 3 // 10, q * 3 // 10,
                                 q - q // 10 - 2 * (q * 3 // 10), q * 65 // 100, 2_900)
    await copy_rows(engine, sessions, UsageDaily, "day", daily)
    await copy_rows(engine, sessions, UsageMonthly, "month", list(monthly.values()))
    return len(daily) + len(monthly)


async def copy_rows(engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], model: Any, period: str,
                    rows: list[tuple[Any, ...]]) -> None:
    cols = ["meter_id", "site_id", "utility", period, *COLS[3:]]
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            await raw.driver_connection.copy_records_to_table(model.__tablename__, records=rows, columns=cols)  # type: ignore[union-attr]
        return
    for i in range(0, len(rows), 100_000):
        async with sessions() as s, s.begin():
            await s.execute(insert(model), [dict(zip(cols, r)) for r in rows[i:i + 100_000]])


async def report_bench(engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], quick: bool) -> dict[str, Any]:
    site_id = await add_site(sessions, "RPT")
    meters = await add_rooms_and_meters(sessions, site_id, METERS)
    month = date(2026, 10, 1)
    t0 = time.monotonic()
    rows = await bulk_rollups(engine, sessions, site_id, meters, add_months(month, -12), 31 if quick else 365, 13, month)
    built = time.monotonic() - t0
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            for table in ("usage_daily", "usage_monthly", "meters", "rooms"):
                await conn.execute(text(f"ANALYZE {table}"))
    times, page = [], []
    for _ in range(3):
        t = time.monotonic()
        async with sessions() as s:
            report = await monthly_report(s, site_id, month)
            mid = time.monotonic()
            await site_days(s, site_id, month)
            await site_year(s, site_id, month.year)
        times.append(mid - t)
        page.append(time.monotonic() - t)
    assert len(report.rows) == METERS and report.total.usage["electricity"].quantity > 0
    return {"report_ms": round(sorted(times)[1] * 1000, 1), "report_page_ms": round(sorted(page)[1] * 1000, 1),
            "report_rollup_rows": rows, "report_build_s": round(built, 1)}


async def main(quick: bool, force_sqlite: bool) -> dict[str, Any]:
    engine, dialect, cleanup = await open_db(force_sqlite)
    sessions = make_sessionmaker(engine)
    out: dict[str, Any] = {"bench": "report", "database": dialect, "meters": METERS}
    try:
        rep = await report_bench(engine, sessions, quick)
        print(f"monthly report over {METERS} meters: {rep['report_ms']} ms, with charts {rep['report_page_ms']} ms "
              f"({rep['report_rollup_rows']} roll-up rows)", flush=True)
        per_bus = 50 if quick else 625
        batch = await batch_ratio(sessions, gateways=16, per_bus=per_bus)
        print(f"batch of {batch['batch_commands']} commands on 16 buses: {batch['batch_s']} s, wire limit "
              f"{batch['batch_wire_limit_s']} s, ratio {batch['batch_wire_ratio']}", flush=True)
        out |= rep | batch
    finally:
        await engine.dispose()
        await cleanup()
    report_ms, ratio = out.pop("report_ms"), out.pop("batch_wire_ratio")
    return {"bench": out.pop("bench"), "report_ms": report_ms, "batch_wire_ratio": ratio, **out}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller roll-ups and batch: under a minute")
    parser.add_argument("--sqlite", action="store_true", help="use SQLite even when PostgreSQL is reachable")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.quick, args.sqlite))))
