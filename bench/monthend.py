"""Month-end benchmark: fees + common-area apportionment + postpaid bills for N accounts on PostgreSQL.

Setup (not timed) bulk-loads one site in a database of its own on 127.0.0.1:5432 (user postgres,
or BENCH_PG_ADMIN_URL): N rooms of varying area with one metered tenant each, half prepaid
(with credit) and half postpaid, a month of usage per meter as one billed reading, a master
meter per 50 rooms split by ratio / area / usage (alternately deducted and billed), a monthly
rent (deducted; billed to postpaid accounts) and a per-m² property fee (billed). Timed: one
`run_month_end` for March 2026, then a second run that must change nothing.
Last stdout line: {"bench": "monthend", "accounts": N, "seconds": S, ...}; `client_cpu_seconds` is
this process's share and `load_avg_1m` says how busy the machine was (the figure is wall time);
`steps_s` splits it by month-end step. `--profile` also prints a cProfile of the timed run and the
slowest statements and COPYs (wall seconds) to stderr; the profiler slows the run down.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select  # noqa: E402

from billing.ledger import cash_code, transfer, wallet_code  # noqa: E402
from billing.money import Money  # noqa: E402
from billing.periods import month  # noqa: E402
from services import ledger  # noqa: E402
from services.bulk import chunks, post_many  # noqa: E402
from services.monthend import run_month_end  # noqa: E402
from store.db import admin_sql, create_all, make_engine, make_sessionmaker  # noqa: E402
from store.models import (Account, ApportionGroup, ApportionMember, Bill, BillLine, Building, Company,  # noqa: E402
                          FeeItem, Floor, LedgerTransaction, Meter, Reading, Room, Site, Tariff, TariffVersion,
                          Tenant)

ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
MARCH = month(2026, 3)
OPENED = datetime(2026, 1, 20, tzinfo=timezone.utc)
BASE_AT = datetime(2026, 2, 28, 12, tzinfo=timezone.utc)
END_AT = datetime(2026, 3, 31, 12, tzinfo=timezone.utc)
GROUP_SIZE = 50
AREAS = (Decimal("18.50"), Decimal("25.00"), Decimal("32.75"), Decimal("45.00"), Decimal("60.20"))


async def admin(sql: str) -> None:
    await admin_sql(ADMIN_URL, sql)


async def bulk(session, model, rows: list[dict], *returning) -> list:  # type: ignore[no-untyped-def]
    """Insert rows in chunks; returns the requested columns in input order."""
    out: list = []
    for part in chunks(rows):
        stmt = insert(model)
        if returning:
            stmt = stmt.returning(*returning, sort_by_parameter_order=True)
            out += (await session.execute(stmt, list(part))).all()
        else:
            await session.execute(stmt, list(part))
    return out


async def seed(sessions, n: int) -> int:  # type: ignore[no-untyped-def]
    async with sessions() as s, s.begin():
        company = Company(name="Bench")
        s.add(company)
        await s.flush()
        site = Site(company_id=company.id, code="BENCH", name="Bench", timezone="Asia/Shanghai", settings={})
        s.add(site)
        await s.flush()
        b = Building(site_id=site.id, name="A")
        s.add(b)
        await s.flush()
        fl = Floor(building_id=b.id, level=1, name="1F")
        tariff = Tariff(site_id=site.id, name="flat", utility="electricity", kind="flat")
        s.add_all([fl, tariff])
        await s.flush()
        s.add(TariffVersion(tariff_id=tariff.id, effective_from=datetime(2020, 1, 1, tzinfo=timezone.utc),
                            spec={"kind": "flat", "price": "0.85"}))
        groups = (n + GROUP_SIZE - 1) // GROUP_SIZE
        rooms = [r for (r,) in await bulk(s, Room, [dict(site_id=site.id, building_id=b.id, floor_id=fl.id, number=f"R{i}",
                                                          area_m2=AREAS[i % len(AREAS)], state="occupied")
                                                     for i in range(n + groups)], Room.id)]
        tenants = [t for (t,) in await bulk(s, Tenant, [dict(site_id=site.id, name=f"T{i}", phone=f"139{i:08d}",
                                                             locale="zh-CN") for i in range(n)], Tenant.id)]
        accounts = [a for (a,) in await bulk(s, Account, [dict(
            site_id=site.id, tenant_id=tenants[i], code=f"B{i}", state="open",
            payment_mode="postpaid" if i % 2 else "prepaid", balance_model="merged", overdraft_fen=0,
            package_fee_fen=0, package_units=0, opened_at=OPENED, version=1) for i in range(n)], Account.id)]
        meter_rows = [dict(site_id=site.id, room_id=rooms[i], account_id=accounts[i] if i < n else None, port=1,
                           address=f"M{i}", utility="electricity", model="acrel-ddsy1352", protocol="modbus_rtu_tcp",
                           billing_side="platform", tariff_id=tariff.id, is_master=i >= n, relay_closed=True,
                           online=True, epoch=1, month_used=0, register_modulus=10**9, max_rate_per_h=66_000,
                           purchase_count=0, flags=0) for i in range(n + groups)]
        meters = [m for (m,) in await bulk(s, Meter, meter_rows, Meter.id)]
        readings = []
        for i, m in enumerate(meters):
            used = 500_000 if i >= n else 20_000 + (i * 7919) % 180_000
            readings.append(dict(meter_id=m, account_id=accounts[i] if i < n else None, epoch=1, taken_at=END_AT,
                                 received_at=END_AT, total=1_000_000 + used, verdict="billed", quantity=used,
                                 amount_fen=(used * 85 + 500) // 1000, from_at=BASE_AT, lines=None, rate_split=None))
        await bulk(s, Reading, readings)
        s.add_all([
            FeeItem(site_id=site.id, code="rent", name="Rent", basis="fixed", amount_fen=120000, recurrence="monthly",
                    starts_on=datetime(2026, 1, 1).date(), collection="deduct", scope="site"),
            FeeItem(site_id=site.id, code="property", name="Property fee", basis="per_m2", rate_per_m2=Decimal("2.35"),
                    recurrence="monthly", starts_on=datetime(2026, 1, 1).date(), collection="bill", scope="site")])
        gids = [g for (g,) in await bulk(s, ApportionGroup, [dict(
            site_id=site.id, code=f"G{g}", name=f"Common {g}", master_meter_id=meters[n + g],
            method=("ratio", "area", "usage")[g % 3], collection="bill" if g % 2 else "deduct", active=True)
            for g in range(groups)], ApportionGroup.id)]
        await bulk(s, ApportionMember, [dict(group_id=gids[i // GROUP_SIZE], room_id=rooms[i], meter_id=None,
                                             ratio=Decimal(1 + i % 4)) for i in range(n)])
        credit = [transfer(f"recharge:bench:{a}", "recharge", cash_code("cash"), wallet_code(a), Money(2000_00))
                  for a in accounts[0::2]]
        await post_many(s, site.id, credit, {wallet_code(a): a for a in accounts[0::2]})
        return site.id


def sql_timer(engine) -> dict[str, list]:  # type: ignore[no-untyped-def]
    """Wall time per statement text (first 400 chars), from the engine's cursor events."""
    from sqlalchemy import event

    found: dict[str, list] = {}

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _before(conn, cursor, statement, params, context, many):  # type: ignore[no-untyped-def]
        conn.info["t0"] = time.perf_counter()

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def _after(conn, cursor, statement, params, context, many):  # type: ignore[no-untyped-def]
        cell = found.setdefault(" ".join(statement.split())[:400], [0.0, 0])
        cell[0] += time.perf_counter() - conn.info.pop("t0", time.perf_counter())
        cell[1] += 1

    import services.apportionment
    import services.bulk
    import services.postpaid
    from sqlalchemy.ext.asyncio import AsyncSession

    plain_write, plain_commit = services.bulk.write_rows, AsyncSession.commit

    async def timed_write(session, model, rows, with_ids=False):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        try:
            return await plain_write(session, model, rows, with_ids)
        finally:
            cell = found.setdefault(f"write_rows {model.__tablename__} (COPY on PostgreSQL)", [0.0, 0])
            cell[0], cell[1] = cell[0] + time.perf_counter() - t0, cell[1] + len(rows)

    async def timed_commit(self):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        try:
            return await plain_commit(self)
        finally:
            cell = found.setdefault("COMMIT", [0.0, 0])
            cell[0], cell[1] = cell[0] + time.perf_counter() - t0, cell[1] + 1

    for module in (services.bulk, services.postpaid, services.apportionment):
        module.write_rows = timed_write  # type: ignore[attr-defined]
    AsyncSession.commit = timed_commit  # type: ignore[method-assign]
    return found


async def counts(sessions) -> dict[str, int]:  # type: ignore[no-untyped-def]
    async with sessions() as s:
        return {name: int(await s.scalar(select(func.count()).select_from(model)) or 0)
                for name, model in (("bills", Bill), ("bill_lines", BillLine), ("ledger_txns", LedgerTransaction))}


async def main(n: int, profile: bool = False) -> dict:
    steps: dict[str, float] = {}
    name = f"meterpay_bench_monthend_{os.getpid()}"
    await admin(f'CREATE DATABASE "{name}"')
    engine = make_engine(ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    try:
        await create_all(engine)
        sessions = make_sessionmaker(engine)
        t0 = time.perf_counter()
        site_id = await seed(sessions, n)
        print(f"seeded {n} accounts in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        before = await counts(sessions)
        profiler = cProfile.Profile() if profile else None
        statements = sql_timer(engine) if profile else None
        t0, c0 = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        result = await run_month_end(sessions, site_id, MARCH, timings=steps)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        if profiler:
            profiler.disable()
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(45)
        if statements is not None:
            print("slowest SQL (total s, calls, statement):", file=sys.stderr)
            for sql, (total, calls) in sorted(statements.items(), key=lambda kv: -kv[1][0])[:15]:
                print(f"{total:8.2f} {calls:6d}  {sql[:230]}", file=sys.stderr)
        made = await counts(sessions)
        t0 = time.perf_counter()
        again = await run_month_end(sessions, site_id, MARCH)
        rerun = time.perf_counter() - t0
        assert (again.fees["deducted"], again.apportionment["groups"], again.bills["created"]) == (0, 0, 0)
        assert await counts(sessions) == made
        async with sessions() as s:
            check = await ledger.verify(s)
        assert check.ok, check
        print(json.dumps(dict(fees=result.fees, apportionment={k: v for k, v in result.apportionment.items()
                                                                 if k != "errors"}, bills=result.bills)),
              file=sys.stderr)
        return {"bench": "monthend", "accounts": n, "seconds": round(seconds, 2),
                "client_cpu_seconds": round(cpu, 2), "load_avg_1m": os.getloadavg()[0], "rerun_seconds": round(rerun, 2),
                "steps_s": {k: round(v, 2) for k, v in steps.items()},
                "bills": made["bills"] - before["bills"], "bill_lines": made["bill_lines"] - before["bill_lines"],
                "ledger_txns": made["ledger_txns"] - before["ledger_txns"], "books_ok": check.ok}
    finally:
        await engine.dispose()
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 accounts (under a minute)")
    parser.add_argument("--accounts", type=int, default=None)
    parser.add_argument("--profile", action="store_true", help="cProfile the timed run (stderr); slows it down")
    args = parser.parse_args()
    accounts = args.accounts or (10_000 if args.quick else 100_000)
    print(json.dumps(asyncio.run(main(accounts, args.profile))))
