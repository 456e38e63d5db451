"""A small wired site in the database, its simulated field, and the runtime that polls it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.money import Money
from devices.poller import PollPolicy
from devices.sim import SimulatorHandle
from devices.sim.bus import Faults
from services.accounts import OpenAccount, open_account
from services.meter_runtime import MeterRuntime, RuntimeOptions, load_fleet, poll_targets
from services.meter_sim import fleet_simulator, sim_endpoints
from services.uow import in_transaction
from services.wallets import recharge
from store.models import Reading
from tests.factories import add_meter, add_tariff, make_site

FAST = RuntimeOptions(
    policy=PollPolicy(interval_s=0.2, retries=0, request_timeout_s=0.3, fail_threshold=2, backoff_s=0.5,
                      backoff_max_s=1.0, online_window_s=2.0, batch_size=50, flush_s=0.1),
    command_interval_s=0.1, command_backoff_s=0.1, command_backoff_max_s=0.3, lost_after_s=3600, lost_check_s=3600, restore_check_s=0.5)
NO_RATE_LIMIT = 10**12  # the simulator runs consumption fast; its rate is plausible in simulated time only


@dataclass
class Site:
    site_id: int
    gateway: str
    meters: dict[str, int] = field(default_factory=dict)  # address -> meter id
    accounts: dict[str, int] = field(default_factory=dict)  # address -> account id


async def build_site(sessions: async_sessionmaker[AsyncSession], meters: dict[str, dict[str, Any]],
                     price: str = "1.00", credit_fen: int = 100_00, code: str = "S1",
                     gateway_protocol: str = "modbus_rtu_tcp", gateway_code: str | None = None) -> Site:
    """One gateway, one flat tariff, and per address a meter with its own prepaid account."""

    async def build(s: AsyncSession) -> Site:
        kit = await make_site(s, code)
        kit.gateway.protocol = gateway_protocol
        if gateway_code:
            kit.gateway.code = gateway_code
        tariff = await add_tariff(s, kit, "flat", {"kind": "flat", "price": price})
        out = Site(kit.site.id, kit.gateway.code)
        for address, kw in meters.items():
            kw = {"max_rate_per_h": NO_RATE_LIMIT, **kw}
            m = await add_meter(s, kit, address, tariff, **kw)
            acc = await open_account(s, OpenAccount(kit.site.id, f"Tenant {address}", f"1390000{int(address):04d}",
                                                    (m.id,)), actor="test")
            if credit_fen:
                await recharge(s, acc.id, Money(credit_fen), f"open-{code}-{address}")
            out.meters[address], out.accounts[address] = m.id, acc.id
        return out

    return await in_transaction(sessions, build)


StartField = Callable[..., Awaitable[tuple[SimulatorHandle, MeterRuntime]]]


@pytest.fixture
async def start_field(sessions) -> AsyncIterator[StartField]:
    """Simulate the database's wired meters and poll them; everything is stopped after the test."""
    runtimes: list[MeterRuntime] = []
    sims: list[SimulatorHandle] = []

    async def start(speed: float = 3600.0, faults: dict[str, Faults] | None = None,
                    options: RuntimeOptions = FAST, sim: SimulatorHandle | None = None) -> tuple[SimulatorHandle, MeterRuntime]:
        async with sessions() as s:
            fleet = await load_fleet(s)
        if sim is None:
            sim = await fleet_simulator(fleet, speed=speed, faults=faults)
            sims.append(sim)
        runtime = MeterRuntime(sessions, poll_targets(fleet, sim_endpoints(sim)), options)
        await runtime.start()
        runtimes.append(runtime)
        return sim, runtime

    yield start
    for runtime in runtimes:
        await runtime.stop()
    for sim in sims:
        await sim.stop()
    await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert not leaked, f"tasks left running: {leaked}"


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0, every_s: float = 0.1) -> None:
    """Wait until `check()` is true; fail the test if it is not within `timeout_s`."""
    async with asyncio.timeout(timeout_s):
        while not await check():
            await asyncio.sleep(every_s)


async def reading_count(sessions: async_sessionmaker[AsyncSession], meter_id: int, verdict: str | None = None) -> int:
    async with sessions() as s:
        stmt = select(func.count()).select_from(Reading).where(Reading.meter_id == meter_id)
        if verdict:
            stmt = stmt.where(Reading.verdict == verdict)
        return int(await s.scalar(stmt) or 0)
