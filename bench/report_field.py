"""The batch half of bench/report.py: 16 simulated gateways at 9600 baud, a relay batch over all meters."""

from __future__ import annotations

import asyncio
import collections
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
from devices.sample import MeterRef
from devices.sim import GatewaySpec, SimConfig, run_simulator
from devices.sim import bus as simbus
from services import batches
from services.batch_select import Selector
from services.meter_commands import DbCommandStore
from services.uow import in_transaction
from store.models import Company, Gateway, Meter, MeterCommand, Site
from store.types import utcnow

BAUD, PROTOCOL, PROFILE = 9600, "dlt645_tcp", "dlt645_single_phase"
WINDOW = 4  # commands of distinct meters in flight per gateway
ROOT = Path(__file__).resolve().parent.parent


async def relay_command_wire_s() -> float:
    """Wire time of one relay_open (read state, trip, read back) in the simulator's serial model."""
    wires: list[int] = []
    original = simbus.Dlt645Side.respond

    def counting(self: Any, raw: bytes) -> Any:
        meter, reply, wire = original(self, raw)
        wires.append(wire)
        return meter, reply, wire

    simbus.Dlt645Side.respond = counting  # type: ignore[method-assign]
    sim = await run_simulator(SimConfig((GatewaySpec("cal", PROTOCOL, 1, 1, PROFILE),)))
    try:
        ep, address, _ = sim.meter_list()[0]
        hub = BusHub(ep, make_driver(ep, {}, timeout_s=1.0))
        store = InMemoryCommandStore()
        await store.add(Command("1", "relay_open", MeterRef("cal", 1, address), utcnow() + timedelta(minutes=1)))
        [done] = await CommandExecutor(store, lambda ref: hub).run_due()
        assert done.state == "confirmed", done
        await hub.stop()
    finally:
        simbus.Dlt645Side.respond = original  # type: ignore[method-assign]
        await sim.stop()
    return sum(simbus.exchange_time_s(w, BAUD) for w in wires)


async def start_sim(gateways: int, per_bus: int) -> tuple[asyncio.subprocess.Process, list[dict[str, Any]]]:
    args = ["-m", "devices.sim", "--gateways", str(gateways), "--buses", "1", "--meters", str(per_bus),
            "--protocol", PROTOCOL, "--baud", str(BAUD), "--speed", "1"]
    proc = await asyncio.create_subprocess_exec(sys.executable, *args, stdout=asyncio.subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None
    return proc, [json.loads(await asyncio.wait_for(proc.stdout.readline(), 60)) for _ in range(gateways)]


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


async def drive(gateway: str, sessions: async_sessionmaker[AsyncSession], hub: BusHub, stop: asyncio.Event) -> None:
    """One executor for the gateway, a few commands (distinct meters) in flight, a small claimed backlog."""
    store = DbCommandStore(sessions, gateways={gateway}, claim_s=600)
    executor = CommandExecutor(store, lambda ref: hub, backoff_s=1.0, backoff_max_s=5.0)
    backlog: collections.deque[Command] = collections.deque()
    inflight: set[asyncio.Task[Command]] = set()
    while not stop.is_set():
        if not backlog and len(inflight) < WINDOW:
            backlog.extend(await store.due(utcnow(), limit=50))
        while backlog and len(inflight) < WINDOW:
            task = asyncio.create_task(executor.execute(backlog.popleft()))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
        if inflight:
            await asyncio.wait(inflight, timeout=0.2, return_when=asyncio.FIRST_COMPLETED)
        elif not backlog:
            await asyncio.sleep(0.05)
    await asyncio.gather(*inflight, return_exceptions=True)


async def batch_ratio(sessions: async_sessionmaker[AsyncSession], gateways: int, per_bus: int) -> dict[str, Any]:
    wire_s = await relay_command_wire_s()
    proc, buses = await start_sim(gateways, per_bus)
    stop = asyncio.Event()
    hubs: list[BusHub] = []
    try:
        site = await add_fleet(sessions, buses)
        for b in buses:
            ep = BusEndpoint(b["gateway"], 1, "127.0.0.1", b["tcp_port"], PROTOCOL)
            hubs.append(BusHub(ep, make_driver(ep, {}, timeout_s=2.0), request_timeout_s=3.0))
        drivers = [asyncio.create_task(drive(b["gateway"], sessions, hub, stop)) for b, hub in zip(buses, hubs)]
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
        stop.set()
        await asyncio.gather(*drivers)
        async with sessions() as s:
            confirmed = await s.scalar(select(func.count()).select_from(MeterCommand).where(MeterCommand.state == "confirmed"))
    finally:
        stop.set()
        for hub in hubs:
            await hub.stop()
        proc.terminate()
        await proc.wait()
    limit = per_bus * wire_s
    return {"batch_commands": gateways * per_bus, "batch_done": progress["counts"]["done"], "batch_confirmed": confirmed,
            "batch_s": round(elapsed, 2), "batch_wire_limit_s": round(limit, 2), "batch_wire_ratio": round(elapsed / limit, 3),
            "relay_command_wire_ms": round(wire_s * 1000, 1)}
