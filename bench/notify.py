"""Payment notify -> credit confirmed on a simulated meter: latency p50/p99 and payments/s at 100/s offered.

Everything real on loopback: the Alipay sandbox signs and POSTs each notify to our notify route
(aiohttp, same process), which credits the wallet and queues the meter-side push in one
transaction; the meter runtime (DB command store + executor on the Modbus RTU-over-TCP
simulator) writes the credit with its purchase counter and confirms it by reading it back.
Latency = from the notify POST leaving the sandbox to `confirmed_at` of the meter's push_credit.
Orders are precreated before the clock starts.

    python bench/notify.py             # 30 s at 100 payments/s (3000 payments), SQLite
    python bench/notify.py --quick     # 5 s (500 payments), under a minute
    DATABASE_URL=postgresql+asyncpg://... python bench/notify.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from billing.money import Money  # noqa: E402
from devices.poller import PollPolicy  # noqa: E402
from devices.sim import GatewaySpec, SimConfig, run_simulator  # noqa: E402
from meterpay.web import SESSIONS  # noqa: E402
from payments.alipay import AlipayConfig, AlipayProvider  # noqa: E402
from payments.sandbox import generate_keyset, start_alipay_sandbox  # noqa: E402
from payments.sandbox.delivery import serve  # noqa: E402
from payments.views import setup_payment_routes  # noqa: E402
from services.accounts import OpenAccount, open_account  # noqa: E402
from services.meter_runtime import MeterRuntime, RuntimeOptions, db_endpoints, load_fleet, poll_targets  # noqa: E402
from services.payments import create_payment  # noqa: E402
from services.uow import in_transaction  # noqa: E402
from sqlalchemy import select  # noqa: E402
from store.db import create_all, make_engine, make_sessionmaker  # noqa: E402
from store.models import Building, Company, Floor, Gateway, Meter, MeterCommand, Order, Room, Site  # noqa: E402


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


async def run(seconds: float, rate: float, buses: int, meters_per_bus: int) -> dict[str, object]:
    url = os.environ.get("DATABASE_URL") or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
    engine = make_engine(url)
    await create_all(engine)
    sessions = make_sessionmaker(engine)
    keys = generate_keyset()
    sim = await run_simulator(SimConfig(gateways=tuple(GatewaySpec(f"gw{i}", meters_per_bus=meters_per_bus)
                                                       for i in range(1, buses + 1))))
    async with aiohttp.ClientSession() as http, await start_alipay_sandbox(keys.alipay) as ali:
        accounts = await build_site(sessions, [b.endpoint.tcp_port for b in sim.buses], meters_per_bus)
        async with sessions() as s:
            fleet = await load_fleet(s)
        runtime = MeterRuntime(sessions, poll_targets(fleet, db_endpoints(fleet)),
                               RuntimeOptions(policy=PollPolicy(interval_s=3600), command_interval_s=0.005))
        provider = AlipayProvider(AlipayConfig(keys.alipay.app_id, keys.alipay.app_private_pem,
                                               keys.alipay.alipay_public_pem, ali.url), http)
        app = web.Application()
        app[SESSIONS] = sessions
        setup_payment_routes(app, {"alipay": provider})
        runner, base = await serve(app, "127.0.0.1", 0)
        total = int(seconds * rate)
        orders = []
        for i in range(total):
            async with sessions() as s:
                orders.append(await create_payment(s, accounts[i % len(accounts)], Money(100 + i % 7), provider,
                                                   "qr", f"bench-{i}", notify_url=f"{base}/payments/alipay/notify"))
        await runtime.start()
        sent_at: dict[str, datetime] = {}
        acks: list[float] = []

        async def pay(no: str) -> None:
            sent_at[no] = datetime.now(timezone.utc)
            t0 = time.perf_counter()
            await ali.pay(no)
            acks.append((time.perf_counter() - t0) * 1000)

        started = time.perf_counter()
        tasks = []
        for i, order in enumerate(orders):
            await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(pay(order.out_trade_no)))
        await asyncio.gather(*tasks)
        confirmed = await wait_confirmed(sessions, total, timeout_s=60 + seconds)
        await runtime.stop()
        await runner.cleanup()
    await sim.stop()
    await engine.dispose()
    latencies = sorted((at - sent_at[key.removeprefix("credit:")]).total_seconds() * 1000
                       for key, at in confirmed.items())
    span = (max(confirmed.values()) - min(sent_at.values())).total_seconds() if confirmed else 1.0
    return {"payments": total, "confirmed": len(confirmed),
            "notify_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
            "notify_p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1)
            if latencies else None,
            "payments_per_s": round(len(confirmed) / span, 1), "offered_per_s": rate,
            "ack_p50_ms": round(statistics.median(acks), 1), "ack_p99_ms": round(sorted(acks)[int(len(acks) * 0.99)], 1),
            "db": url.split(":", 1)[0]}


async def wait_confirmed(sessions, total: int, timeout_s: float) -> dict[str, datetime]:
    deadline = time.perf_counter() + timeout_s
    while True:
        async with sessions() as s:
            rows = dict((await s.execute(select(MeterCommand.key, MeterCommand.confirmed_at).where(
                MeterCommand.kind == "push_credit", MeterCommand.state == "confirmed"))).all())
        if len(rows) >= total or time.perf_counter() > deadline:
            return rows
        await asyncio.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s instead of 30 s")
    parser.add_argument("--rate", type=float, default=100.0, help="payments offered per second")
    parser.add_argument("--buses", type=int, default=4)
    parser.add_argument("--meters-per-bus", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(run(5.0 if args.quick else 30.0, args.rate, args.buses, args.meters_per_bus))
    print(json.dumps({"bench": "notify", **result}))


if __name__ == "__main__":
    main()
