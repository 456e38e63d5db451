"""Payment notify -> credit confirmed on a simulated meter: latency p50/p99 and payments/s at 100/s offered.

Measured in the deployed shape, everything real on loopback:
- this process is the outside world: the Alipay sandbox (signs and POSTs each notify) and the
  meter simulator (Modbus RTU over TCP, one bus per gateway);
- `--web` processes (default 2) serve /payments/alipay/notify on one port (SO_REUSEPORT, as
  `python app.py run` scales): verify, credit the wallet and queue the meter-side push in one
  transaction;
- one runtime process (the poller's command lanes on the DB command store) writes each credit
  with its purchase counter and confirms it by reading it back. It learns of a queued command
  by the database's wake-up (services.command_wake: PostgreSQL LISTEN/NOTIFY) and otherwise
  looks every `--interval` seconds.
Latency = from the notify POST leaving the sandbox to `confirmed_at` of the meter's push_credit.
Orders are precreated before the clock starts, and `--warmup` seconds of payments at the same
rate go first, unmeasured (connection pools open, statements prepared, lanes running: the steady
state a deployed site is in). The database is a fresh PostgreSQL database on
127.0.0.1:5432 (created and dropped here) unless DATABASE_URL names one. CPU per payment is
reported per role (web, runtime, this process, PostgreSQL), and the load average with it.

    python bench/notify.py             # 30 s at 100 payments/s (3000 payments)
    python bench/notify.py --quick     # 5 s (500 payments), under a minute
    python bench/notify.py --web 1 --rate 50
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from billing.money import Money  # noqa: E402
from devices.poller import PollPolicy  # noqa: E402
from devices.sim import GatewaySpec, SimConfig, run_simulator  # noqa: E402
from meterpay.web import SESSIONS  # noqa: E402
from payments.alipay import AlipayConfig, AlipayProvider  # noqa: E402
from payments.sandbox import generate_keyset, start_alipay_sandbox  # noqa: E402
from payments.views import setup_payment_routes  # noqa: E402
from services.accounts import OpenAccount, open_account  # noqa: E402
from services.meter_runtime import MeterRuntime, RuntimeOptions, db_endpoints, load_fleet, poll_targets  # noqa: E402
from services.payments import create_payment  # noqa: E402
from services.uow import in_transaction  # noqa: E402
from meterpay.cluster import free_port  # noqa: E402
from meterpay.heap import settle_startup_heap  # noqa: E402
from sqlalchemy import select, text  # noqa: E402
from store.db import admin_sql, create_all, make_engine, make_sessionmaker  # noqa: E402
from procstat import cpu_s  # noqa: E402
from store.models import Building, Company, Floor, Gateway, Meter, MeterCommand, Room, Site  # noqa: E402

PG_ADMIN = os.environ.get("BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")


async def build_site(sessions, bus_ports: list[int], meters_per_bus: int) -> list[int]:
    """One site, one gateway per simulated bus, one meter-side meter and account per simulated meter."""
    async def build(s):
        company = Company(name="Bench")
        s.add(company)
        await s.flush()
        site = Site(company_id=company.id, code="B1", name="Bench", timezone="Asia/Shanghai", settings={})
        s.add(site)
        await s.flush()
        b = Building(site_id=site.id, name="A")
        s.add(b)
        await s.flush()
        f = Floor(building_id=b.id, level=1, name="1F")
        s.add(f)
        await s.flush()
        accounts = []
        for g, port in enumerate(bus_ports, start=1):
            gw = Gateway(site_id=site.id, code=f"gw{g}", protocol="modbus_rtu_tcp", host="127.0.0.1", port=port)
            s.add(gw)
            await s.flush()
            for n in range(1, meters_per_bus + 1):
                room = Room(site_id=site.id, building_id=b.id, floor_id=f.id, number=f"{g}{n:02d}")
                s.add(room)
                await s.flush()
                m = Meter(site_id=site.id, room_id=room.id, gateway_id=gw.id, port=1, address=str(n),
                          utility="electricity", model="acrel-ddsy1352", protocol="modbus_rtu_tcp",
                          billing_side="meter")
                s.add(m)
                await s.flush()
                acc = await open_account(s, OpenAccount(site.id, f"T{g}-{n}", f"1380000{g:02d}{n:02d}", (m.id,)))
                accounts.append(acc.id)
        return accounts
    return await in_transaction(sessions, build)


def web_main(args: dict[str, Any], conn: Connection) -> None:
    asyncio.run(_web(args, conn))


async def _web(args: dict[str, Any], conn: Connection) -> None:
    """One web process: the payment notify routes on the shared port."""
    engine = make_engine(args["db_url"])
    async with aiohttp.ClientSession() as http:
        provider = AlipayProvider(AlipayConfig(args["app_id"], args["app_private_pem"], args["alipay_public_pem"],
                                               args["gateway_url"]), http)
        app = web.Application()
        app[SESSIONS] = make_sessionmaker(engine)
        setup_payment_routes(app, {"alipay": provider})
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args["http_port"], backlog=4096, reuse_port=True).start()
        settle_startup_heap()  # as `python app.py run` does once serving
        conn.send("ready")
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        await runner.cleanup()
    await engine.dispose()


def runtime_main(args: dict[str, Any], conn: Connection) -> None:
    asyncio.run(_runtime(args, conn))


async def _runtime(args: dict[str, Any], conn: Connection) -> None:
    """The poller process: command lanes on every gateway (polling itself is off: one hour)."""
    engine = make_engine(args["db_url"])
    sessions = make_sessionmaker(engine)
    async with sessions() as s:
        fleet = await load_fleet(s)
    runtime = MeterRuntime(sessions, poll_targets(fleet, db_endpoints(fleet)),
                           RuntimeOptions(policy=PollPolicy(interval_s=3600), command_interval_s=args["interval"]))
    await runtime.start()
    settle_startup_heap()  # as `python app.py poller` does
    conn.send("ready")
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    await runtime.stop()
    await engine.dispose()


def _start(target: Callable[[dict[str, Any], Connection], None], args: dict[str, Any]) -> tuple[Any, Connection]:
    parent, child = mp.get_context("spawn").Pipe()
    proc = mp.get_context("spawn").Process(target=target, args=(args, child), daemon=True)
    proc.start()
    return proc, parent


async def run(url: str, seconds: float, rate: float, buses: int, meters_per_bus: int, webs: int,
              interval: float, warmup_s: float) -> dict[str, object]:
    engine = make_engine(url)
    await create_all(engine)
    sessions = make_sessionmaker(engine)
    keys = generate_keyset()
    sim = await run_simulator(SimConfig(gateways=tuple(GatewaySpec(f"gw{i}", meters_per_bus=meters_per_bus)
                                                       for i in range(1, buses + 1))))
    http_port = free_port()
    base = f"http://127.0.0.1:{http_port}"
    procs: list[tuple[str, Any, Connection]] = []
    async with aiohttp.ClientSession() as http, await start_alipay_sandbox(keys.alipay) as ali:
        accounts = await build_site(sessions, [b.endpoint.tcp_port for b in sim.buses], meters_per_bus)
        provider = AlipayProvider(AlipayConfig(keys.alipay.app_id, keys.alipay.app_private_pem,
                                               keys.alipay.alipay_public_pem, ali.url), http)
        total, warm = int(seconds * rate), int(warmup_s * rate)
        orders = []
        for i in range(warm + total):
            async with sessions() as s:
                orders.append(await create_payment(s, accounts[i % len(accounts)], Money(100 + i % 7), provider,
                                                   "qr", f"bench-{i}", notify_url=f"{base}/payments/alipay/notify"))
        warmup, orders = orders[:warm], orders[warm:]
        web_args = {"db_url": url, "http_port": http_port, "app_id": keys.alipay.app_id,
                    "app_private_pem": keys.alipay.app_private_pem,
                    "alipay_public_pem": keys.alipay.alipay_public_pem, "gateway_url": ali.url}
        procs = [("web", *_start(web_main, web_args)) for _ in range(webs)]
        procs.append(("runtime", *_start(runtime_main, {"db_url": url, "interval": interval})))
        try:
            for _, _, pipe in procs:
                if not await asyncio.to_thread(pipe.poll, 60):
                    raise SystemExit("a bench process did not start")
                pipe.recv()
            sent_at: dict[str, datetime] = {}
            acks: list[float] = []

            async def pay(no: str) -> None:
                sent_at[no] = datetime.now(timezone.utc)
                t0 = time.perf_counter()
                await ali.pay(no)
                acks.append((time.perf_counter() - t0) * 1000)

            async def offer(batch: list[Any]) -> None:
                start, tasks = time.perf_counter(), []
                for i, order in enumerate(batch):
                    await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
                    tasks.append(asyncio.create_task(pay(order.out_trade_no)))
                await asyncio.gather(*tasks)

            if warmup:  # pools opened, statements prepared, lanes running: then the clock starts
                await offer(warmup)
                await wait_confirmed(sessions, {f"credit:{o.out_trade_no}" for o in warmup}, timeout_s=60)
                sent_at.clear()
                acks.clear()
            pg_pids = await pg_backends(url)
            cpu0 = {pid: cpu_s(pid) for pid in [p.pid for _, p, _ in procs] + pg_pids}
            own0 = time.process_time()
            await offer(orders)
            confirmed = await wait_confirmed(sessions, {f"credit:{o.out_trade_no}" for o in orders},
                                             timeout_s=60 + seconds)
            split = await stages(sessions, sent_at)
            pg_pids = sorted(set(pg_pids) | set(await pg_backends(url)))  # the pools opened more meanwhile
            used = {pid: cpu_s(pid) - cpu0.get(pid, 0.0) for pid in {*cpu0, *pg_pids}}
            own = time.process_time() - own0
            load = os.getloadavg()
        finally:
            for _, _, pipe in procs:
                pipe.send("stop")
            for _, proc, _ in procs:
                await asyncio.to_thread(proc.join, 15)
                if proc.is_alive():
                    proc.terminate()
    await sim.stop()
    await engine.dispose()
    latencies = sorted((at - sent_at[key.removeprefix("credit:")]).total_seconds() * 1000
                       for key, at in confirmed.items())
    span = (max(confirmed.values()) - min(sent_at.values())).total_seconds() if confirmed else 1.0
    n = max(len(confirmed), 1)

    def per_payment(role: str) -> float:
        return round(1000 * sum(used[p.pid] for r, p, _ in procs if r == role) / n, 2)

    return {"payments": total, "confirmed": len(confirmed),
            "notify_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "notify_p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1)
            if latencies else None,
            "payments_per_s": round(len(confirmed) / span, 1), "offered_per_s": rate,
            "ack_p50_ms": round(statistics.median(acks), 1), "ack_p99_ms": round(sorted(acks)[int(len(acks) * 0.99)], 1),
            "warmup_payments": warm, "web_processes": webs, **split, "cpu_ms_per_payment": {
                "web": per_payment("web"), "runtime": per_payment("runtime"),
                "outside_world": round(1000 * own / n, 2),
                "postgres": round(1000 * sum(used[p] for p in pg_pids) / n, 2)},
            "load_avg": [round(x, 2) for x in load], "db": url.split(":", 1)[0]}


async def pg_backends(url: str) -> list[int]:
    """PostgreSQL server processes of the bench database (a backend that has gone is not counted)."""
    if not url.startswith("postgresql"):
        return []
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                                           " AND pid <> pg_backend_pid()"))
            return [int(r[0]) for r in rows]
    finally:
        await engine.dispose()




async def wait_confirmed(sessions, keys: set[str], timeout_s: float) -> dict[str, datetime]:
    """confirmed_at of the push_credit commands `keys`, once all are confirmed (or the time is up)."""
    deadline = time.perf_counter() + timeout_s
    while True:
        async with sessions() as s:
            rows = {k: at for k, at in (await s.execute(select(MeterCommand.key, MeterCommand.confirmed_at).where(
                MeterCommand.kind == "push_credit", MeterCommand.state == "confirmed"))).all() if k in keys}
        if len(rows) >= len(keys) or time.perf_counter() > deadline:
            return rows
        await asyncio.sleep(0.2)


async def stages(sessions, sent_at: dict[str, datetime]) -> dict[str, float | None]:
    """Where the time went, p50 of each stage (ms): notify -> command queued (the web transaction),
    queued -> first write on the wire (`sent_at`: the lane), on the wire -> confirmed by read-back."""
    async with sessions() as s:
        rows = (await s.execute(select(MeterCommand.key, MeterCommand.created_at, MeterCommand.sent_at,
                                       MeterCommand.confirmed_at, MeterCommand.attempts, MeterCommand.last_error)
                                .where(MeterCommand.kind == "push_credit"))).all()
    timed = [r for r in rows if r[0].removeprefix("credit:") in sent_at]
    errors = collections.Counter((r[5] or "")[:60] for r in timed if r[4] > 1)
    parts: dict[str, list[float]] = {"to_queued": [], "queued_to_sent": [], "sent_to_confirmed": []}
    for key, created, sent, confirmed, _, _ in rows:
        start = sent_at.get(key.removeprefix("credit:"))
        if start is None or created is None or sent is None or confirmed is None:
            continue
        parts["to_queued"].append((created - start).total_seconds() * 1000)
        parts["queued_to_sent"].append((sent - created).total_seconds() * 1000)
        parts["sent_to_confirmed"].append((confirmed - sent).total_seconds() * 1000)
    return {**{f"{name}_p50_ms": round(statistics.median(v), 1) if v else None for name, v in parts.items()},
            "retried_credits": sum(1 for r in timed if r[4] > 1), "retry_reasons": dict(errors.most_common(3))}


async def _admin(sql: str) -> None:
    await admin_sql(PG_ADMIN, sql)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s instead of 30 s")
    parser.add_argument("--rate", type=float, default=100.0, help="payments offered per second")
    parser.add_argument("--buses", type=int, default=4)
    parser.add_argument("--meters-per-bus", type=int, default=8)
    parser.add_argument("--web", type=int, default=2, help="web processes serving the notify route")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds of payments at the same rate before the clock starts (not measured)")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="how often the runtime looks for due commands without a wake-up")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    url, name = os.environ.get("DATABASE_URL"), None
    if not url:
        name = f"meterpay_bench_notify_{os.getpid()}"
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    try:
        result = asyncio.run(run(url, 5.0 if args.quick else 30.0, args.rate, args.buses, args.meters_per_bus,
                                 args.web, args.interval, args.warmup))
    finally:
        if name:
            asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(json.dumps({"bench": "notify", **result}))


if __name__ == "__main__":
    main()
