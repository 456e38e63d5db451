"""Per-gateway command lanes: gateways run concurrently, each bus stays serial, nothing is sent twice."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from devices.commands import CommandExecutor
from devices.driver import MeterDriver, make_driver
from devices.hub import BusHub
from devices.sample import MeterRef
from devices.sim import SimulatorHandle
from devices.sim.bus import Faults
from services import meter_commands, relay
from services.command_lanes import CommandLanes, LaneOptions
from services.meter_commands import DbCommandStore
from services.meter_runtime import load_fleet
from services.meter_sim import fleet_simulator, sim_endpoints
from services.uow import in_transaction
from store.models import Gateway, Meter, MeterCommand
from store.types import utcnow
from tests.reports.field import add_fleet

WIRE_S = 0.1  # simulated time per exchange: a relay command is three (read, write, read back)


@dataclass
class BusWatch:
    """How many driver calls were ever running at once on each bus (1 = serial)."""

    active: Counter[str] = field(default_factory=Counter)
    most: Counter[str] = field(default_factory=Counter)


class WatchedDriver:
    """The real driver, with every call counted while it runs."""

    def __init__(self, inner: MeterDriver, bus: str, watch: BusWatch) -> None:
        self.inner, self.bus, self.watch = inner, bus, watch

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def call(*args: Any) -> Any:
            self.watch.active[self.bus] += 1
            self.watch.most[self.bus] = max(self.watch.most[self.bus], self.watch.active[self.bus])
            try:
                return await method(*args)
            finally:
                self.watch.active[self.bus] -= 1
        return call


@dataclass
class Rig:
    sim: SimulatorHandle
    hubs: dict[str, BusHub]
    watch: BusWatch
    meters: dict[int, tuple[str, str]]  # meter id -> (gateway, address)

    def router(self, ref: MeterRef) -> BusHub:
        return self.hubs[ref.gateway]

    def writes(self) -> dict[int, int]:
        return {m: self.sim.meter(g, 1, a).relay_writes for m, (g, a) in self.meters.items()}


@asynccontextmanager
async def rig(sessions, site: int, faults: Faults) -> AsyncIterator[Rig]:  # type: ignore[no-untyped-def]
    async with sessions() as s:
        meters = {m: (g, a) for m, g, a in (await s.execute(
            select(Meter.id, Gateway.code, Meter.address).join(Gateway, Gateway.id == Meter.gateway_id)
            .where(Meter.site_id == site))).all()}
        fleet = [f for f in await load_fleet(s) if f.meter_id in meters]
    sim = await fleet_simulator(fleet, faults={g: faults for g, _ in meters.values()})
    watch = BusWatch()
    hubs = {}
    for (gateway, _), ep in sim_endpoints(sim).items():
        profiles = {f.address: f.profile for f in fleet if f.gateway == gateway}
        driver = WatchedDriver(make_driver(ep, profiles, timeout_s=WIRE_S * 5), gateway, watch)
        hubs[gateway] = BusHub(ep, driver, request_timeout_s=WIRE_S * 8, frame_gap_s=0.0)  # type: ignore[arg-type]
    try:
        yield Rig(sim, hubs, watch, meters)
    finally:
        for hub in hubs.values():
            await hub.stop()
        await sim.stop()


async def queue_relay_off(sessions, meter_ids) -> None:  # type: ignore[no-untyped-def]
    async def go(s):  # type: ignore[no-untyped-def]
        for m in sorted(meter_ids):
            await relay.queue_command(s, m, "relay_open", f"off:{m}")
    await in_transaction(sessions, go)


async def states(sessions) -> dict[str, int]:  # type: ignore[no-untyped-def]
    async with sessions() as s:
        return dict((await s.execute(select(MeterCommand.state, func.count()).group_by(MeterCommand.state))).all())


def lanes_for(sessions, field: Rig, claim_s: float = 30.0) -> CommandLanes:  # type: ignore[no-untyped-def]
    gateways = {g for g, _ in field.meters.values()}
    return CommandLanes(DbCommandStore(sessions, gateways=gateways, claim_s=claim_s), gateways, field.router,
                        LaneOptions(window_per_bus=4, claim_batch=8, interval_s=0.05, backoff_s=0.05, backoff_max_s=0.2))


async def test_gateways_run_their_queues_concurrently_while_each_bus_stays_serial(sessions):
    gateways, per_gateway = 3, 4
    site = await add_fleet(sessions, gateways, per_gateway, code="L")
    async with rig(sessions, site, Faults(latency_s=WIRE_S)) as field:
        lanes = lanes_for(sessions, field)
        lanes.start()
        try:
            t0 = time.monotonic()
            await queue_relay_off(sessions, field.meters)
            lanes.nudge()
            most_in_flight = 0
            async with asyncio.timeout(30):
                while (await states(sessions)).get("confirmed", 0) < gateways * per_gateway:
                    most_in_flight = max(most_in_flight, *(len(lane.inflight) for lane in lanes.lanes.values()))
                    await asyncio.sleep(0.01)
            elapsed = time.monotonic() - t0
        finally:
            await lanes.stop()
        one_bus = per_gateway * 3 * WIRE_S  # the serial wire time of one gateway's commands
        assert one_bus <= elapsed < one_bus + 0.4 * one_bus * (gateways - 1), elapsed  # ~max, far from the sum
        assert set(field.watch.most.values()) == {1}  # never two requests at once on one bus
        assert most_in_flight > 1  # ...while a lane kept several commands going (DB writes overlap the wire)
        assert set(field.writes().values()) == {1}
    async with sessions() as s:
        assert not await s.scalar(select(func.count()).select_from(Meter).where(Meter.site_id == site,
                                                                                 Meter.relay_closed.is_(True)))


async def test_a_command_is_never_executed_twice_when_replies_are_lost_and_the_executor_restarts(sessions):
    site = await add_fleet(sessions, 2, 6, code="R")
    async with rig(sessions, site, Faults(latency_s=0.03, lose_write_replies=1)) as field:
        first = lanes_for(sessions, field, claim_s=0.5)  # a short lease, so the stopped lanes' claims come back soon
        first.start()
        await queue_relay_off(sessions, field.meters)
        first.nudge()
        async with asyncio.timeout(20):  # stop (as a crash would) with commands sent and not yet confirmed
            while not (0 < (await states(sessions)).get("confirmed", 0) < len(field.meters) - 2):
                await asyncio.sleep(0.01)
        await first.stop()
        assert 0 < (await states(sessions)).get("confirmed", 0) < len(field.meters)
        second = lanes_for(sessions, field, claim_s=0.5)
        second.start()
        try:
            async with asyncio.timeout(30):
                while (await states(sessions)).get("confirmed", 0) < len(field.meters):
                    await asyncio.sleep(0.05)
        finally:
            await second.stop()
        assert set(field.writes().values()) == {1}  # each relay written once: retries read back first
        assert all(not field.sim.meter(g, 1, a).relay_closed for g, a in field.meters.values())
    assert await states(sessions) == {"confirmed": len(field.meters)}


async def test_a_command_cancelled_after_its_claim_is_withdrawn_before_the_write(sessions):
    site = await add_fleet(sessions, 1, 1, code="W")
    async with rig(sessions, site, Faults()) as field:
        [meter_id] = field.meters
        await queue_relay_off(sessions, [meter_id])
        store = DbCommandStore(sessions, claim_s=30)
        [claimed] = await store.claim(utcnow(), 10, None)
        assert await in_transaction(sessions, lambda s: meter_commands.cancel(s, int(claimed.id), "staff:ann"))
        await CommandExecutor(store, field.router).execute(claimed)  # read, then the `sent` mark is refused
        assert field.writes() == {meter_id: 0}
    async with sessions() as s:
        row = await s.get(MeterCommand, int(claimed.id))
        assert row is not None and row.state == "cancelled" and row.sent_at is None
