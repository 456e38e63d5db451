"""The fault suite: the scale-out shape under load and failure, then a checker proves nothing was lost or doubled.

Shape: PostgreSQL (a private cluster when possible, else a database of its own on the shared
server), its own redis-server and mosquitto on free ports, 2 web + 2 workers + 2 pollers and the
simulated field (Modbus RTU, DL/T 645, Modbus TCP and MQTT gateways). Load: readings from every
meter, payments through the Alipay notify endpoint (signed by the sandbox), bot messages.
Injected: kill -9 of a web process, a worker and a poller (each restarted), Redis and Mosquitto
restarts, a PostgreSQL restart (private cluster only), 5 % of gateway replies dropped, a 4G
gateway offline (store-and-forward) and a full replay of another's history, duplicate /
concurrent / forged / tampered / out-of-order notifies. Then consumption is frozen, the field
read once more, and bench/faults_check.py counts what was lost or doubled.

    python bench/faults.py --quick     # CI form, ~2 minutes on 2 cores: 56 meters, one round of faults
    python bench/faults.py             # full form, ~8 minutes: 320 meters, three rounds of faults

Last stdout line: one JSON object with injected_<fault> counts and lost_<thing> / double_<thing>.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import case, func, select  # noqa: E402

from bench.faults_check import check  # noqa: E402
from bench.trial import Trial, TrialOptions  # noqa: E402
from billing.money import Money  # noqa: E402
from meterpay.cluster_fleet import FleetSpec  # noqa: E402
from store.models import Gateway, LedgerAccount, Meter, MeterCommand, Order, Reading  # noqa: E402
from store.types import utcnow  # noqa: E402

log = logging.getLogger("faults")
OPEN = ("queued", "sent")


class Suite:
    def __init__(self, t: Trial, quick: bool) -> None:
        self.t, self.quick = t, quick
        self.injected: Counter[str] = Counter()
        self.figures: dict[str, Any] = {}
        self.forged: set[str] = set()
        self.stop = asyncio.Event()
        self.rng = random.Random(7)
        self.bot_status: Counter[int] = Counter()
        self.pauses = asyncio.Lock()  # held while we kill on purpose: the supervisor must not interfere
        self.supervised = 0

    # -- background load ---------------------------------------------------------------------
    async def payments(self, rate: float) -> None:
        low = [a for a in self.t.fleet.accounts if a.low]
        others = [a for a in self.t.fleet.accounts if a.protocol != "mqtt" and not a.low]
        tasks = set()
        started = time.monotonic()
        for i in itertools.count():
            if self.stop.is_set():
                break
            # the low accounts run dry first (cut-off), then payments bring them back (restore)
            late = time.monotonic() - started > 40
            acc = low[(i // 10) % len(low)] if low and late and i % 10 == 0 else self.rng.choice(others)
            task = asyncio.create_task(self.t.pay(acc.account_id, Money(100 + self.rng.randrange(0, 900))))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks)

    async def bot(self, rate: float) -> None:
        ids = itertools.count(8_000_000_000)
        while not self.stop.is_set():
            status, _ = await self.t.bot_message(f"o-trial-{self.rng.randrange(50)}", "余额", next(ids),
                                                 redeliver=self.rng.random() < 0.2)
            self.bot_status[status] += 1
            await asyncio.sleep(1 / rate)

    async def supervise(self) -> None:
        """Production runs processes under a supervisor (systemd Restart=always); so does the suite."""
        while not self.stop.is_set():
            await asyncio.sleep(1)
            async with self.pauses:
                for name, proc in self.t.cluster.procs.items():
                    if not proc.alive() and not self.t.cluster.stopping and not self.stop.is_set():
                        log.warning("%s exited on its own; restarting it", name)
                        self.supervised += 1
                        await asyncio.to_thread(proc.start)

    # -- faults ----------------------------------------------------------------------------------
    async def kill(self, name: str) -> None:
        async with self.pauses:
            await asyncio.to_thread(self.t.cluster.kill_and_restart, name, 0.5)
        self.injected[f"kill9_{name.split('-')[0]}"] += 1

    async def kill_poller(self) -> None:
        """kill -9 a poller; time until every wired gateway is held again by a live poller."""
        name = self.rng.choice([p.name for p in self.t.cluster.of("poller")])
        async with self.pauses:
            self.t.cluster.procs[name].kill()
            self.injected["kill9_poller"] += 1
            t0 = time.monotonic()
            while time.monotonic() - t0 < 60:
                await asyncio.sleep(0.5)
                async with self.t.sessions() as s:
                    owners = list(await s.scalars(select(Gateway.lease_owner).where(Gateway.protocol != "mqtt")))
                if all(o and not o.startswith(f"{name}@") for o in owners):
                    break
            self.figures.setdefault("takeover_s", []).append(round(time.monotonic() - t0, 1))
            await asyncio.to_thread(self.t.cluster.procs[name].start().wait_ready)

    async def restart(self, server: str) -> None:
        async with self.pauses:
            down = await asyncio.to_thread(self.t.servers.restart, server)
        self.injected[f"restart_{server}"] += 1
        self.figures.setdefault(f"{server}_down_s", []).append(round(down, 1))

    async def drop_replies(self) -> None:
        await self.t.field("POST", "/faults", {"drop_rate": 0.05})
        self.injected["drop_5pct_replies"] += 1

    async def mqtt_store_and_forward(self, seconds: float) -> None:
        codes = sorted({a.gateway for a in self.t.fleet.accounts if a.protocol == "mqtt"})
        await self.t.field("POST", f"/mqtt/{codes[0]}/offline")
        await asyncio.sleep(seconds)
        await self.t.field("POST", f"/mqtt/{codes[0]}/online")
        self.injected["mqtt_offline_replay"] += 1
        replayed = await self.t.field("POST", f"/mqtt/{codes[-1]}/replay")
        self.injected["mqtt_history_replay"] += 1
        self.figures["mqtt_replayed_readings"] = self.figures.get("mqtt_replayed_readings", 0) + replayed["replayed"]

    async def notifies(self, n: int) -> None:
        """Duplicate, concurrent, forged, tampered and out-of-order notifies on fresh orders."""
        accounts = [a for a in self.t.fleet.accounts if a.protocol != "mqtt"]
        jobs = []
        for k in range(n):
            acc = self.rng.choice(accounts).account_id
            jobs.append(self.t.pay(acc, Money(200 + k), times=3))
            jobs.append(self.t.pay(acc, Money(300 + k), times=6, concurrently=True))
        await asyncio.gather(*jobs)
        self.injected["notify_duplicate"] += n
        self.injected["notify_concurrent"] += n
        for k in range(n):
            no = await self.t.open_order(self.rng.choice(accounts).account_id, Money(999))
            if no is None:
                continue
            self.forged.add(no)
            paid = {"trade_status": "TRADE_SUCCESS", "gmt_payment": "2026-01-01 00:00:00"}
            await self.t.ali.notify(no, forge=True, overrides=paid)
            await self.t.ali.notify(no, overrides=paid, tamper={"total_amount": "0.01"})
            self.injected["notify_forged"] += 1
            self.injected["notify_tampered"] += 1
        for k in range(n):  # a stale "waiting" and a late "closed" arriving after the payment
            no = await self.t.pay(self.rng.choice(accounts).account_id, Money(400 + k))
            if no is None:
                continue
            await self.t.ali.notify(no, overrides={"trade_status": "WAIT_BUYER_PAY"})
            await self.t.ali.notify(no, overrides={"trade_status": "TRADE_CLOSED"})
            self.injected["notify_out_of_order"] += 1

    # -- the run -----------------------------------------------------------------------------
    async def storm(self) -> None:
        gap = 3.0 if self.quick else 10.0
        rounds = 1 if self.quick else 3
        await self.drop_replies()
        for r in range(rounds):
            steps = [lambda: self.kill(f"web-{1 + r % 2}"), lambda: self.notifies(3 if self.quick else 10),
                     lambda: self.kill(f"worker-{1 + r % 2}"), self.kill_poller, lambda: self.restart("redis"),
                     lambda: self.restart("mosquitto"), lambda: self.mqtt_store_and_forward(8 if self.quick else 20)]
            if self.t.servers.postgres is not None:
                steps.append(lambda: self.restart("postgres"))
            for step in steps:
                await step()
                await asyncio.sleep(gap)

    async def settle(self, timeout_s: float) -> None:
        """Faults off; wait for credits and commands to land; freeze consumption; one more full poll."""
        await self.t.field("POST", "/faults", {"drop_rate": 0.0})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            async with self.t.sessions() as s:
                open_cmds = await s.scalar(select(func.count()).select_from(MeterCommand).join(
                    Meter, Meter.id == MeterCommand.meter_id).where(MeterCommand.state.in_(OPEN), Meter.protocol != "mqtt"))
                uncredited = await s.scalar(select(func.count()).select_from(Order).where(
                    Order.out_trade_no.in_(list(self.t.paid)), Order.state != "credited"))
            if not open_cmds and not uncredited:
                break
            for no in [n for n in self.t.unacked]:  # the provider keeps notifying until it hears success
                if await self.t.deliver(no, attempts=1):
                    self.t.unacked.discard(no)
            await asyncio.sleep(1)
        before = utcnow()  # 4G gateways stamp with the (now frozen) meter clock, wired ones at read time
        await self.t.field("POST", "/freeze")
        after = utcnow()
        while time.monotonic() < deadline + 30:
            await asyncio.sleep(1)
            async with self.t.sessions() as s:
                stale = await s.scalar(select(func.count()).select_from(Meter).where(
                    Meter.last_reading_at.is_(None) | (Meter.last_reading_at < case(
                        (Meter.protocol == "mqtt", before), else_=after))))
            if not stale:
                break
        self.figures["meters_unread_after_freeze"] = int(stale or 0)


async def opening_balances(t: Trial) -> tuple[dict[int, int], int]:
    """Each account's wallet before any usage: its balance now plus what it has been billed so far.

    The pollers are already billing when this runs, so a balance alone would count the readings
    billed before the snapshot twice (once in it, once in the checker's usage sum). One statement,
    so the balance and the usage sum come from the same snapshot.
    """
    billed = (select(func.coalesce(func.sum(Reading.amount_fen), 0))
              .where(Reading.account_id == LedgerAccount.account_id, Reading.txn_id.is_not(None))
              .correlate(LedgerAccount).scalar_subquery())
    async with t.sessions() as s:
        rows = (await s.execute(select(LedgerAccount.account_id, func.sum(LedgerAccount.balance_fen), billed)
                                .where(LedgerAccount.code.like("wallet:%"))
                                .group_by(LedgerAccount.account_id))).all()
    return {int(a): int(b) + int(u) for a, b, u in rows}, sum(int(u) for _, _, u in rows)


async def run(quick: bool, keep: bool) -> dict[str, Any]:
    spec = FleetSpec(gateways=6, meters_per_gateway=8) if quick else FleetSpec(gateways=24, meters_per_gateway=12,
                                                                               mqtt_gateways=4, mqtt_meters=8)
    started = time.monotonic()
    async with Trial(TrialOptions(fleet=spec, keep=keep, poll_interval_s=2.0 if quick else 5.0)) as t:
        opening, billed_before = await opening_balances(t)
        suite = Suite(t, quick)
        load = [asyncio.create_task(suite.payments(4.0)), asyncio.create_task(suite.bot(2.0)),
                asyncio.create_task(suite.supervise())]
        try:
            phases = {"setup_s": round(time.monotonic() - started, 1)}
            await asyncio.sleep(8 if quick else 20)
            t0 = time.monotonic()
            await suite.storm()
            phases["storm_s"] = round(time.monotonic() - t0, 1)
            await asyncio.sleep(5 if quick else 20)
        finally:
            suite.stop.set()  # load and supervisor end before anything is torn down
            await asyncio.gather(*load, return_exceptions=True)
        t0 = time.monotonic()
        await suite.settle(240)  # an upper bound: settles as soon as every credit and command has landed (a killed
        # poller's claimed commands, up to 32 per gateway, come back after the 30 s claim)
        phases["settle_s"] = round(time.monotonic() - t0, 1)
        field_meters = await t.field("GET", "/meters")
        stats = await t.field("GET", "/stats")
        result = await check(t.sessions, t.fleet, t.paid, suite.forged, field_meters, opening)
        injected = {f"injected_{k}": v for k, v in sorted(suite.injected.items())}
        skipped = [] if t.servers.postgres is not None else ["restart_postgres (shared server: not ours to restart)"]
        info = {**phases, "meters": len(t.fleet.accounts), "seconds": round(time.monotonic() - started, 1),
                "bot_replies_ok": suite.bot_status.get(200, 0), "bot_replies_failed": sum(
                    v for k, v in suite.bot_status.items() if k != 200), "supervisor_restarts": suite.supervised,
                "billed_before_opening_fen": billed_before,
                "unacked_notifies": len(t.unacked), "sim_exchanges": stats["exchanges"],
                "private_postgres": t.servers.postgres is not None, "skipped": skipped, "run_dir": str(t.root)}
        if any(v for k, v in result.items() if k.startswith(("lost_", "double_"))):
            t.o.keep = True  # the process logs and the database stay for a post-mortem
        return {"bench": "faults", "quick": quick, **injected, **result, **suite.figures, **info}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the CI form (a few minutes)")
    parser.add_argument("--keep", action="store_true", help="keep the run directory (kept anyway on a failure)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = asyncio.run(run(args.quick, args.keep))
    bad = {k: v for k, v in result.items() if k.startswith(("lost_", "double_")) and v}
    print("injected:", {k: v for k, v in result.items() if k.startswith("injected_")}, file=sys.stderr)
    print("lost/doubled (must be empty):", bad, file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
