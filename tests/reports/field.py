"""A simulated field for batch tests: N gateways x M meters in the database and on simulated buses,
driven by the database command store (services.meter_commands) and one command lane per gateway
(services.command_lanes), as the runtime drives them."""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices.driver import make_driver
from devices.hub import BusHub
from devices.sample import MeterRef
from devices.sim import SimulatorHandle
from services.command_lanes import CommandLanes, LaneOptions
from services.meter_commands import DbCommandStore
from services.meter_runtime import load_fleet
from services.meter_sim import fleet_simulator, sim_endpoints
from services.uow import in_transaction
from store.models import Gateway, Meter
from tests.factories import make_site


@dataclass
class Field:
    site: int
    sim: SimulatorHandle
    meters: dict[int, tuple[str, str]]  # meter id -> (gateway code, address)

    def sim_meter(self, meter_id: int):  # type: ignore[no-untyped-def]
        gw, address = self.meters[meter_id]
        return self.sim.meter(gw, 1, address)


async def add_fleet(sessions: async_sessionmaker[AsyncSession], gateways: int, per_gateway: int, code: str = "F") -> int:
    async def go(s: AsyncSession) -> int:
        kit = await make_site(s, code)
        gws = [kit.gateway]
        for g in range(2, gateways + 1):
            gw = Gateway(site_id=kit.site.id, code=f"{code}-gw{g}", protocol="modbus_rtu_tcp", host="127.0.0.1", port=0)
            s.add(gw)
            gws.append(gw)
        await s.flush()
        await s.execute(insert(Meter), [
            dict(site_id=kit.site.id, gateway_id=gw.id, port=1, address=str(n), utility="electricity",
                 model="acrel-ddsy1352", protocol="modbus_rtu_tcp", relay_closed=True, online=True)
            for gw in gws for n in range(1, per_gateway + 1)])
        return kit.site.id
    return await in_transaction(sessions, go)


@asynccontextmanager
async def running_field(sessions: async_sessionmaker[AsyncSession], site_id: int,
                        timeout_s: float = 0.15) -> AsyncIterator[Field]:
    """Simulated buses for the site's meters plus an executor loop per gateway, until the block ends."""
    async with sessions() as s:
        fleet = await load_fleet(s)
        ids = {m: (g, a) for m, g, a in (await s.execute(
            select(Meter.id, Gateway.code, Meter.address).join(Gateway, Gateway.id == Meter.gateway_id)
            .where(Meter.site_id == site_id))).all()}
    fleet = [f for f in fleet if f.meter_id in ids]
    sim = await fleet_simulator(fleet)
    endpoints = sim_endpoints(sim)
    hubs = {key: BusHub(ep, make_driver(ep, {f.address: f.profile for f in fleet if (f.gateway, f.port) == key},
                                        timeout_s=timeout_s), request_timeout_s=timeout_s * 3, frame_gap_s=0.0)
            for key, ep in endpoints.items()}

    def router(ref: MeterRef) -> BusHub:
        return hubs[(ref.gateway, ref.port)]

    gateways = {g for g, _ in endpoints}
    lanes = CommandLanes(DbCommandStore(sessions, gateways=gateways, claim_s=30), gateways, router,
                         LaneOptions(interval_s=0.1, backoff_s=0.05, backoff_max_s=0.2))
    lanes.start()
    try:
        yield Field(site_id, sim, ids)
    finally:
        await lanes.stop()
        for hub in hubs.values():
            await hub.stop()
        await sim.stop()
