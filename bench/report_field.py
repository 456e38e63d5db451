"""The batch half of bench/report.py: 16 simulated gateways at 9600 baud, a relay batch over all meters.

The commands run through the product path: services.batches queues them, and
services.command_lanes delivers them (one lane per gateway, a few commands of distinct meters in
flight per bus, claims and outcomes written in groups) over BusHubs configured like the poller's.

The wire-time limit is what the buses actually carried: the simulator sums the serial time
(9600 baud, 11 bits a byte, 3.5-character gaps) of every frame exchanged on each bus, and the
limit is the busiest bus's sum; no bus can finish before that. `batch_ideal_wire_s` (commands
per bus x one relay command's three exchanges) is printed beside it: the two agree when no
frame was repeated.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices.commands import Command, CommandExecutor, InMemoryCommandStore
from devices.driver import BusEndpoint, make_driver
from devices.hub import BusHub
from devices.poller import PollPolicy
from devices.sample import MeterRef
from devices.sim import GatewaySpec, SimConfig, run_simulator
from services import batches
from services.batch_select import Selector
from services.command_lanes import CommandLanes, LaneOptions
from services.meter_commands import DbCommandStore
from services.uow import in_transaction
from store.models import Company, Gateway, Meter, MeterCommand, Site
from store.types import utcnow

BAUD, PROTOCOL, PROFILE = 9600, "dlt645_tcp", "dlt645_single_phase"
LANES = LaneOptions(interval_s=0.25, backoff_s=1.0, backoff_max_s=5.0)
ROOT = Path(__file__).resolve().parent.parent


async def relay_command_wire_s() -> tuple[float, int]:
    """Wire time and exchanges of one relay_open (read state, trip, read back) in the simulator."""
    sim = await run_simulator(SimConfig((GatewaySpec("cal", PROTOCOL, 1, 1, PROFILE),), baud=BAUD))
    try:
        ep, address, _ = sim.meter_list()[0]
        hub = BusHub(ep, make_driver(ep, {}, timeout_s=2.0))
        store = InMemoryCommandStore()
        await store.add(Command("1", "relay_open", MeterRef("cal", 1, address), utcnow() + timedelta(minutes=1)))
        [done] = await CommandExecutor(store, lambda ref: hub).run_due()
        assert done.state == "confirmed", done
        await hub.stop()
        return sim.buses[0].wire_s, sim.buses[0].exchanges
    finally:
        await sim.stop()


class SimProcess:
    """bench/report_sim.py in a subprocess (so its serial timing does not share our event loop)."""

    def __init__(self, proc: asyncio.subprocess.Process, buses: list[dict[str, Any]]) -> None:
        self.proc, self.buses = proc, buses

    @classmethod
    async def start(cls, gateways: int, per_bus: int) -> SimProcess:
        args = ["bench/report_sim.py", "--gateways", str(gateways), "--buses", "1", "--meters", str(per_bus),
                "--protocol", PROTOCOL, "--baud", str(BAUD), "--speed", "1"]
        proc = await asyncio.create_subprocess_exec(sys.executable, *args, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, cwd=ROOT)
        assert proc.stdout is not None
        return cls(proc, [json.loads(await asyncio.wait_for(proc.stdout.readline(), 60)) for _ in range(gateways)])

    async def wire(self) -> dict[str, dict[str, float]]:
        """Per bus: exchanges and wire seconds so far."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"stats\n")
        await self.proc.stdin.drain()
        return json.loads(await asyncio.wait_for(self.proc.stdout.readline(), 30))  # type: ignore[no-any-return]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
        await self.proc.wait()


async def add_fleet(sessions: async_sessionmaker[AsyncSession], buses: list[dict[str, Any]]) -> int:
    async with sessions() as s, s.begin():
        company = Company(name="bench batch")
        s.add(company)
        await s.flush()
        site = Site(company_id=company.id, code="BAT", name="Bench batch", timezone="Asia/Shanghai", settings={})
        s.add(site)
        await s.flush()
        for b in buses:
            gw = Gateway(site_id=site.id, code=b["gateway"], protocol=PROTOCOL, host="127.0.0.1", port=b["tcp_port"])
            s.add(gw)
            await s.flush()
            await s.execute(insert(Meter), [dict(site_id=site.id, gateway_id=gw.id, port=1, address=a, utility="electricity",
                                                 model=PROFILE, protocol=PROTOCOL, billing_side="meter", relay_closed=True)
                                            for a in b["meters"]])
        return site.id


def bus_hub(ep: BusEndpoint, policy: PollPolicy = PollPolicy()) -> BusHub:
    """A hub as the poller builds one (frame gap included); timeouts doubled for a shared, loaded machine."""
    timeout = 2 * policy.request_timeout_s
    return BusHub(ep, make_driver(ep, {}, timeout_s=timeout), timeout * 1.5, policy.frame_gap_s)


async def batch_ratio(sessions: async_sessionmaker[AsyncSession], gateways: int, per_bus: int) -> dict[str, Any]:
    one_wire_s, one_exchanges = await relay_command_wire_s()
    sim = await SimProcess.start(gateways, per_bus)
    hubs: dict[str, BusHub] = {}
    lanes: CommandLanes | None = None
    try:
        site = await add_fleet(sessions, sim.buses)
        hubs = {b["gateway"]: bus_hub(BusEndpoint(b["gateway"], 1, "127.0.0.1", b["tcp_port"], PROTOCOL)) for b in sim.buses}
        lanes = CommandLanes(DbCommandStore(sessions, gateways=hubs, claim_s=600), hubs, lambda ref: hubs[ref.gateway], LANES)
        lanes.start()
        t0 = time.monotonic()
        task = await in_transaction(sessions, lambda s: batches.create_task(
            s, Selector(site), "relay_off", {}, "bench", max_attempts=5))
        await batches.run_task(sessions, task.id)  # queues every command, chunk by chunk
        while True:
            await batches.run_due_batches(sessions)
            async with sessions() as s:
                progress = await batches.progress(s, task.id)
            if progress["state"] == "done":
                break
            await asyncio.sleep(0.5)
        elapsed = time.monotonic() - t0
        await lanes.stop()
        wire = await sim.wire()
        async with sessions() as s:
            confirmed = await s.scalar(select(func.count()).select_from(MeterCommand).where(MeterCommand.state == "confirmed"))
    finally:
        if lanes is not None:
            await lanes.stop()
        for hub in hubs.values():
            await hub.stop()
        await sim.stop()
    limit = max(bus["wire_s"] for bus in wire.values())
    exchanges = sum(int(bus["exchanges"]) for bus in wire.values())
    return {"batch_commands": gateways * per_bus, "batch_done": progress["counts"]["done"], "batch_confirmed": confirmed,
            "batch_s": round(elapsed, 2), "batch_wire_limit_s": round(limit, 2), "batch_wire_ratio": round(elapsed / limit, 3),
            "batch_ideal_wire_s": round(per_bus * one_wire_s, 2), "batch_exchanges": exchanges,
            "batch_ideal_exchanges": gateways * per_bus * one_exchanges, "relay_command_wire_ms": round(one_wire_s * 1000, 1)}
