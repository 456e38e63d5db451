"""Ingest benchmark: readings/s through the full ingest service beside the raw insert rate, SQLite and PostgreSQL.

For N meters (one prepaid account each, half flat, half time-of-use): a base reading per meter
(not timed), then ROUNDS readings per meter through `services.ingest.ingest` (delta, price,
ledger posting, balance, cut-off check, low-balance alerts) in batches of BATCH, one transaction per batch. Then
the same number of rows, same batch size, is inserted straight into the same `readings`
table of the same database (one INSERT ... executemany per batch, one transaction each). Both
are run three times, interleaved, and the median run of each counts (the machine may be shared).
ratio = ingest rate / raw insert rate. PostgreSQL: a database of its own on 127.0.0.1:5432
(user postgres, or BENCH_PG_URL), created and dropped here. Last stdout line: one JSON object.
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
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker  # noqa: E402

from billing.ledger import cash_code, wallet_code  # noqa: E402
import services.ingest as ingest_module  # noqa: E402
from services.ingest import ReadingIn, ingest  # noqa: E402
from services.uow import in_transaction  # noqa: E402
from store.db import admin_sql, create_all, make_engine, make_sessionmaker  # noqa: E402
from store.models import (Account, Company, Gateway, LedgerAccount, LedgerTransaction, Meter, Posting,  # noqa: E402
                          Reading, Site, Tariff, TariffVersion, Tenant)

PG_ADMIN = os.environ.get("BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
STEP = timedelta(minutes=15)
OPENING_FEN = 1_000_00
FLAT = {"kind": "flat", "price": "0.85"}
TOU = {"kind": "tou", "prices": {"sharp": "1.35", "peak": "1.10", "flat": "0.75", "valley": "0.38"},
       "windows": [{"start": "00:00", "end": "08:00", "rate": "valley"}, {"start": "08:00", "end": "10:00", "rate": "flat"},
                   {"start": "10:00", "end": "12:00", "rate": "sharp"}, {"start": "12:00", "end": "18:00", "rate": "peak"},
                   {"start": "18:00", "end": "21:00", "rate": "sharp"}, {"start": "21:00", "end": "00:00", "rate": "flat"}]}


async def seed(sessions: async_sessionmaker[AsyncSession], meters: int) -> list[int]:
    """N meters with an account each and an opening balance, in bulk (setup, not measured)."""
    async with sessions() as s, s.begin():
        company = Company(name="bench")
        s.add(company)
        await s.flush()
        site = Site(company_id=company.id, code="BENCH", name="bench", timezone="Asia/Shanghai", settings={})
        s.add(site)
        await s.flush()
        tariffs = []
        for spec in (FLAT, TOU):
            t = Tariff(site_id=site.id, name=spec["kind"], utility="electricity", kind=spec["kind"])
            s.add(t)
            await s.flush()
            s.add(TariffVersion(tariff_id=t.id, effective_from=T0 - timedelta(days=365), spec=spec))
            tariffs.append(t.id)
        gw = Gateway(site_id=site.id, code="BENCH-GW", protocol="modbus_rtu_tcp")
        s.add(gw)
        await s.flush()
        await s.execute(insert(Tenant), [dict(site_id=site.id, name=f"t{i}", phone=f"1{i:010d}") for i in range(meters)])
        tenant_ids = list((await s.execute(text("SELECT id FROM tenants ORDER BY id"))).scalars())
        await s.execute(insert(Account), [dict(site_id=site.id, tenant_id=tid, code=f"B{i}", opened_at=T0 - STEP)
                                          for i, tid in enumerate(tenant_ids)])
        acc_ids = list((await s.execute(text("SELECT id FROM accounts ORDER BY id"))).scalars())
        await s.execute(insert(Meter), [dict(site_id=site.id, account_id=a, gateway_id=gw.id, port=1 + i // 200,
                                             address=str(1 + i % 200), utility="electricity", model="acrel_ddsy1352",
                                             protocol="modbus_rtu_tcp", tariff_id=tariffs[i % 2])
                                        for i, a in enumerate(acc_ids)])
        meter_ids = list((await s.execute(text("SELECT id FROM meters ORDER BY id"))).scalars())
        txn = LedgerTransaction(site_id=site.id, key="bench-opening", kind="recharge", created_at=T0)
        cash = LedgerAccount(site_id=site.id, code=cash_code("cash"), balance_fen=0)  # site-level: no cache
        s.add_all([txn, cash])
        await s.flush()
        await s.execute(insert(LedgerAccount), [dict(site_id=site.id, code=wallet_code(a), account_id=a,
                                                     balance_fen=OPENING_FEN) for a in acc_ids])
        wallets = list((await s.execute(text("SELECT id FROM ledger_accounts WHERE code LIKE 'wallet:%'"))).scalars())
        await s.execute(insert(Posting), [dict(txn_id=txn.id, ledger_account_id=w, amount_fen=OPENING_FEN) for w in wallets]
                        + [dict(txn_id=txn.id, ledger_account_id=cash.id, amount_fen=-OPENING_FEN * meters)])
    return meter_ids


def readings(meter_ids: list[int], round_no: int) -> list[ReadingIn]:
    """Round k: every meter 15 minutes on, 100..400 Wh more (totals stay plausible)."""
    at = T0 + STEP * round_no
    return [ReadingIn(m, at, 1_000_000 + round_no * (100 + (m * 37) % 300), rates=None) for m in meter_ids]


async def timed_ingest(sessions: async_sessionmaker[AsyncSession], meter_ids: list[int], rounds: int, batch: int,
                       first: int = 1) -> tuple[int, float]:
    """Rounds first .. first + rounds - 1 of readings through ingest, timed."""
    todo = [part for r in range(first, first + rounds) for part in _chunks(readings(meter_ids, r), batch)]
    t0 = time.perf_counter()
    for part in todo:
        results = await in_transaction(sessions, lambda s, p=part: ingest(s, p))
        if any(r.error or r.verdict != "billed" for r in results):
            raise SystemExit(f"ingest did not bill the bench readings: {results[0]}")
    return sum(len(p) for p in todo), time.perf_counter() - t0


async def timed_pairs(sessions: async_sessionmaker[AsyncSession], meter_ids: list[int], rounds: int, batch: int,
                      repeats: int = 3) -> tuple[tuple[int, float], tuple[int, float]]:
    """Ingest and raw insert, `repeats` times each, interleaved (so both meet the same machine, which
    may be shared); the median run of each counts. Raw rows go in with epochs 2, 3, ... (no clash)."""
    for part in _chunks(readings(meter_ids, 0), batch):  # base readings: no delta yet, not timed
        await in_transaction(sessions, lambda s, p=part: ingest(s, p))
    ingested, raw = [], []
    for k in range(repeats):
        ingested.append(await timed_ingest(sessions, meter_ids, rounds, batch, first=1 + k * rounds))
        raw.append(await _raw_once(sessions, meter_ids, rounds, batch, epoch=2 + k))
    return sorted(ingested, key=lambda r: r[1])[repeats // 2], sorted(raw, key=lambda r: r[1])[repeats // 2]


async def _raw_once(sessions: async_sessionmaker[AsyncSession], meter_ids: list[int], rounds: int, batch: int,
                    epoch: int) -> tuple[int, float]:
    rows = [dict(meter_id=r.meter_id, account_id=None, epoch=epoch, taken_at=r.taken_at, received_at=T0, total=r.total,
                 rates=None, verdict="billed", quantity=100, amount_fen=9, rate_split=[0, 0, 100, 0],
                 from_at=r.taken_at - STEP, lines=[{"label": "flat", "quantity": 100, "unit_price": "0.85", "fen": 9,
                                                     "version_id": 1}], txn_id=1)
            for k in range(1, rounds + 1) for r in readings(meter_ids, k)]
    t0 = time.perf_counter()
    for part in _chunks(rows, batch):
        async with sessions() as s, s.begin():
            await s.execute(insert(Reading), part)
    return len(rows), time.perf_counter() - t0


def _chunks(items: list, size: int) -> list[list]:  # type: ignore[type-arg]
    return [items[i:i + size] for i in range(0, len(items), size)]


async def run_one(url: str, meters: int, rounds: int, batch: int) -> dict[str, float]:
    engine = make_engine(url)
    try:
        await create_all(engine)
        sessions = make_sessionmaker(engine)
        meter_ids = await seed(sessions, meters)
        (n, ingest_s), (raw_n, raw_s) = await timed_pairs(sessions, meter_ids, rounds, batch)
    finally:
        await engine.dispose()
    ingest_rate, raw_rate = n / ingest_s, raw_n / raw_s
    return {"readings_per_s": round(ingest_rate, 1), "raw_per_s": round(raw_rate, 1),
            "ratio": round(ingest_rate / raw_rate, 3)}


async def _pg_admin(sql: str) -> None:
    await admin_sql(PG_ADMIN, sql)


async def run_postgres(meters: int, rounds: int, batch: int) -> dict[str, float]:
    name = f"meterpay_bench_{uuid.uuid4().hex[:8]}"
    await _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        return await run_one(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", meters, rounds, batch)
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main(argv: list[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer meters: finishes in under a minute")
    parser.add_argument("--meters", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None, help="timed readings per meter")
    parser.add_argument("--batch", type=int, default=500, help="readings per ingest transaction")
    parser.add_argument("--no-alerts", action="store_true",
                        help="skip alert evaluation, to measure what it costs (issue 7: at most 10 %)")
    args = parser.parse_args(argv)
    if args.no_alerts:
        async def _skip(*_a: object, **_k: object) -> None:
            return None
        ingest_module.alerting.after_balance_changes = _skip  # type: ignore[attr-defined]
    meters = args.meters or (2_000 if args.quick else 10_000)
    rounds = args.rounds or (2 if args.quick else 3)
    out: dict[str, object] = {"bench": "ingest", "meters": meters, "readings": meters * rounds, "batch": args.batch}
    with tempfile.TemporaryDirectory() as tmp:
        lite = await run_one(f"sqlite+aiosqlite:///{tmp}/bench.db", meters, rounds, args.batch)
    print(f"sqlite:   {lite}", flush=True)
    pg = await run_postgres(meters, rounds, args.batch)
    print(f"postgres: {pg}", flush=True)
    for db, figures in (("sqlite", lite), ("postgres", pg)):
        out[f"{db}_ratio"] = figures["ratio"]
        out[f"{db}_readings_per_s"] = figures["readings_per_s"]
        out[f"{db}_raw_per_s"] = figures["raw_per_s"]
    out["alerts"] = not args.no_alerts  # low-balance alert evaluation runs inside ingest
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1:]))))
