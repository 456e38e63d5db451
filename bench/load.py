"""Load run of the scale-out shape: meters reporting every minute, payments, bot chats, staff on the monitor.

The shape of bench/faults.py (PostgreSQL, own Redis and Mosquitto, 2 web + 2 workers + 2 pollers,
the simulated field with Modbus RTU / DL/T 645 / Modbus TCP and MQTT gateways) without the faults.
Measured over the window, after a warm-up of one poll interval:
- readings_per_s: readings stored per second; ingest_lag_p99_ms: received_at - taken_at;
- notify_meter_p50/p99_ms: notify POSTed by the Alipay sandbox -> push_credit confirmed by the meter;
- bot_p50/p99_ms: WeChat message -> reply; monitor_events: SSE updates the staff monitors received;
- cpu_pct / pss_mb per process (from /proc; PSS splits shared pages; postgres = all its backends).

    python bench/load.py                      # 20,000 meters on 200 gateways, 10 minutes (the issue's size)
    python bench/load.py --meters 4000 --gateways 40 --minutes 3
    python bench/load.py --quick              # 600 meters, a 30 s window, polls every 10 s
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bench.trial import Trial, TrialOptions  # noqa: E402
from billing.money import Money  # noqa: E402
from meterpay.cluster_fleet import FleetSpec  # noqa: E402
from services.staff import add_user  # noqa: E402
from services.uow import in_transaction  # noqa: E402
from store.models import MeterCommand, Reading, TenantLink  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p))], 1)


def proc_sample(pid: int) -> tuple[float, float]:
    """(cpu seconds, proportional set size MB: shared pages split among their users) of one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        pss = next(int(line.split()[1]) for line in rollup if line.startswith("Pss:")) / 1024
        return (int(stat[11]) + int(stat[12])) / TICK, pss
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0


def children_of(ppid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == ppid:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


def process_table(t: Trial) -> dict[str, list[int]]:
    table = {name: [p.pid] for name, p in t.cluster.procs.items() if p.pid}
    for name, proc in (("redis", t.servers.redis), ("mosquitto", t.servers.mosquitto)):
        if proc is not None and proc.pid:
            table[name] = [proc.pid]
    if t.servers.postgres is not None:
        pidfile = t.servers.postgres.data / "postmaster.pid"
        master = int(pidfile.read_text().split()[0])
        table["postgres"] = [master, *children_of(master)]
    table["bench-driver"] = [os.getpid()]
    return table


def usage(table: dict[str, list[int]]) -> dict[str, tuple[float, float]]:
    return {name: tuple(map(sum, zip(*(proc_sample(p) for p in pids)))) for name, pids in table.items()}  # type: ignore[misc]


class Load:
    def __init__(self, t: Trial, rate: float, tenants: int, staff: int) -> None:
        self.t, self.rate, self.tenants, self.staff = t, rate, tenants, staff
        self.stop = asyncio.Event()
        self.sent: dict[str, datetime] = {}
        self.bot_ms: list[float] = []
        self.bot_failed = self.bot_deferred = 0
        self.saturated = False
        self.acked = 0
        self.monitor_events = 0
        self.rng = random.Random(11)

    async def seed_people(self) -> None:
        accounts = [a.account_id for a in self.t.fleet.accounts if a.protocol != "mqtt"]

        async def build(s):  # type: ignore[no-untyped-def]
            s.add_all(TenantLink(openid=f"o-load-{n}", account_id=accounts[n % len(accounts)], via="phone")
                      for n in range(self.tenants))
            for n in range(self.staff):
                await add_user(s, f"staff{n}", "load-password", "viewer", [self.t.fleet.site_id], fast=True)
        await in_transaction(self.t.sessions, build)

    async def payments(self) -> None:
        meter_side = [a.account_id for a in self.t.fleet.meter_side]
        platform = [a.account_id for a in self.t.fleet.accounts if a.billing_side == "platform"]
        tasks: set[asyncio.Task[Any]] = set()
        for i in itertools.count():
            if self.stop.is_set():
                break
            acc = self.rng.choice(meter_side if i % 2 else platform)
            task = asyncio.create_task(self._pay(acc))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            await asyncio.sleep(1 / self.rate)
        await asyncio.gather(*tasks)

    async def _pay(self, account_id: int) -> None:
        no = await self.t.open_order(account_id, Money(500 + self.rng.randrange(500)))
        if no is not None:
            self.sent[no] = datetime.now(timezone.utc)
            acked = await self.t.deliver(no, attempts=8)  # not `self.acked += await ...`: the read of
            self.acked += acked  # self.acked would happen before the await, losing other tasks' counts

    async def tenant(self, n: int) -> None:
        ids = itertools.count(n * 1_000_000)
        await asyncio.sleep(self.rng.uniform(0, 10))
        while not self.stop.is_set():
            status, ms = await self.t.bot_message(f"o-load-{n}", "余额", next(ids))
            if status == 200:
                self.bot_ms.append(ms)
                self.bot_deferred += ms > 3_900  # past the reply budget: answered later as a custom message
            else:
                self.bot_failed += 1
            await asyncio.sleep(self.rng.uniform(5, 15))  # 200 tenants ~ 20 messages/s

    async def monitor(self, n: int) -> None:
        jar = aiohttp.CookieJar(unsafe=True)  # the panel's session cookie on 127.0.0.1
        async with aiohttp.ClientSession(base_url=self.t.cluster.base_url, cookie_jar=jar) as http:
            async with http.get("/admin/login") as resp:
                csrf = (await resp.text()).split('name="_csrf" value="', 1)[1].split('"', 1)[0]
            await http.post("/admin/login", data={"username": f"staff{n}", "password": "load-password", "_csrf": csrf})
            path = f"/admin/sites/{self.t.fleet.site_id}/rooms/stream"
            while not self.stop.is_set():
                try:
                    async with http.get(path, headers={"Accept": "text/event-stream"}) as resp:
                        async for line in resp.content:
                            self.monitor_events += line.startswith(b"data:")
                            if self.stop.is_set():
                                return
                except aiohttp.ClientError:
                    await asyncio.sleep(1)


async def window_figures(t: Trial, load: Load, since: datetime, until: datetime) -> dict[str, Any]:
    async with t.sessions() as s:
        lags = [(r - tk).total_seconds() * 1000 for r, tk in (await s.execute(
            select(Reading.received_at, Reading.taken_at).where(Reading.received_at.between(since, until)))).all()]
        confirmed = dict((await s.execute(select(MeterCommand.key, MeterCommand.confirmed_at).where(
            MeterCommand.kind == "push_credit", MeterCommand.confirmed_at.is_not(None)))).all())
        total = await s.scalar(select(func.count()).select_from(Reading))
    credit = [(at - load.sent[k[7:]]).total_seconds() * 1000 for k, at in confirmed.items() if k[7:] in load.sent]
    seconds = (until - since).total_seconds()
    return {"readings_per_s": round(len(lags) / seconds, 1), "readings_total": int(total or 0),
            "ingest_lag_p50_ms": pct(lags, 0.5), "ingest_lag_p99_ms": pct(lags, 0.99),
            "notify_meter_p50_ms": pct(credit, 0.5), "notify_meter_p99_ms": pct(credit, 0.99),
            "credits_confirmed": len(credit), "payments_sent": len(load.sent),
            "payments_per_s": round(sum(since <= at <= until for at in load.sent.values()) / seconds, 1)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    per_gw = max(1, args.meters // args.gateways)
    mqtt_gw = max(1, args.gateways // 10)
    spec = FleetSpec(gateways=args.gateways - mqtt_gw, meters_per_gateway=per_gw, mqtt_gateways=mqtt_gw,
                     mqtt_meters=per_gw, low_every=10**9, site_code="LOAD")
    options = TrialOptions(fleet=spec, speed=1.0, poll_interval_s=args.interval, mqtt_interval_s=args.interval,
                           env={"POLL_TIMEOUT_S": "2"}, keep=args.keep)
    t0 = time.monotonic()
    async with Trial(options) as t:
        setup_s = time.monotonic() - t0
        load = Load(t, args.rate, args.tenants, args.staff)
        await load.seed_people()
        tasks = [asyncio.create_task(load.payments())]
        tasks += [asyncio.create_task(load.tenant(n)) for n in range(args.tenants)]
        tasks += [asyncio.create_task(load.monitor(n)) for n in range(args.staff)]
        await asyncio.sleep(args.interval + 5)  # warm-up: every meter read once
        table = process_table(t)
        before, since = usage(table), datetime.now(timezone.utc)
        await asyncio.sleep(args.minutes * 60)
        after, until = usage(table), datetime.now(timezone.utc)
        load.stop.set()
        for task in tasks[1:]:
            task.cancel()
        await asyncio.gather(*tasks[1:], return_exceptions=True)
        try:  # payments in flight may finish; past that the run is saturated, and says so
            await asyncio.wait_for(tasks[0], 30)
        except asyncio.TimeoutError:
            load.saturated = True
        await asyncio.sleep(2)
        seconds = (until - since).total_seconds()
        procs = {name: {"cpu_pct": round((after[name][0] - before[name][0]) / seconds * 100, 1),
                        "pss_mb": round(after[name][1], 1)} for name in table if name in after}
        figures = await window_figures(t, load, since, until)
    return {"bench": "load", "meters": len(t.fleet.accounts), "gateways": args.gateways, "poll_interval_s": args.interval,
            "window_s": round(seconds), "setup_s": round(setup_s), **figures,
            "bot_p50_ms": pct(load.bot_ms, 0.5), "bot_p99_ms": pct(load.bot_ms, 0.99), "bot_replies": len(load.bot_ms),
            "bot_failed": load.bot_failed, "bot_deferred": load.bot_deferred, "payments_acked": load.acked,
            "saturated": load.saturated, "monitor_events": load.monitor_events, "cpus": os.cpu_count(),
            "processes": procs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="600 meters, a 30 s window (about a minute in all)")
    parser.add_argument("--meters", type=int, default=20_000)
    parser.add_argument("--gateways", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between two reads of a meter")
    parser.add_argument("--rate", type=float, default=20.0, help="payments per second")
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--staff", type=int, default=10)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.meters, args.gateways, args.minutes, args.interval, args.rate, args.tenants = 600, 12, 0.5, 10.0, 5.0, 50
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
