"""meterpay's DL/T 645 driver against the simulator over a real TCP socket."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from devices.driver import make_driver
from devices.errors import MeterRejected, MeterTimeout
from devices.profiles import DLT645_SINGLE_PHASE
from devices.sim import GatewaySpec
from devices.sim.bus import Faults


def dlt_gateway(faults: Faults | None = None) -> GatewaySpec:
    return GatewaySpec("gw9", "dlt645_tcp", meters_per_bus=3, profile="dlt645_single_phase", faults=faults or Faults())


async def test_driver_reads_energy_block_voltage_relay_balance_and_counter(start_sim):
    sim = await start_sim(dlt_gateway(), speed=3600)
    address = "000101000002"
    meter = sim.meter("gw9", 1, address)
    meter.energy, meter.balance_fen, meter.purchase_count = 1_234_560.0, 8800.0, 4
    driver = make_driver(sim.endpoints[0], {})
    try:
        sample = await driver.read(address, DLT645_SINGLE_PHASE)
    finally:
        await driver.close()
    assert sample.address == address and 1_234_560 <= sample.energy_total < 1_240_000
    assert sample.energy_rates is not None and sum(sample.energy_rates) <= sample.energy_total
    assert 200 < sample.voltage_v < 240 and sample.relay_closed is True
    assert 8700 <= sample.meter_balance_fen <= 8800 and sample.purchase_count == 4


async def test_relay_control_1c_trips_and_allows_closing(start_sim):
    sim = await start_sim(dlt_gateway())
    address = "000101000001"
    driver = make_driver(sim.endpoints[0], {})
    try:
        await driver.set_relay(address, False)
        assert await driver.read_relay(address) is False and not sim.meter("gw9", 1, address).relay_closed
        await driver.set_relay(address, True)
        assert await driver.read_relay(address) is True
    finally:
        await driver.close()


async def test_repeated_credit_is_refused_with_an_abnormal_reply(start_sim):
    sim = await start_sim(dlt_gateway())
    address = "000101000003"
    driver = make_driver(sim.endpoints[0], {})
    try:
        await driver.push_credit(address, 5000, 1)
        with pytest.raises(MeterRejected):
            await driver.push_credit(address, 5000, 1)
        assert await driver.read_purchase_count(address) == 1
        await driver.set_price(address, 6123)
        assert await driver.read_price(address) == 6123
    finally:
        await driver.close()
    assert sim.meter("gw9", 1, address).credits_applied == [(1, 5000)]


async def test_broadcast_time_sync_sets_every_meter_clock_on_the_bus(start_sim):
    sim = await start_sim(dlt_gateway())
    driver = make_driver(sim.endpoints[0], {})
    target = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=2)
    try:
        await driver.time_sync("000101000001", target)
        clocks = [await driver.read_clock(a) for a in sim.bus("gw9", 1).meters]
    finally:
        await driver.close()
    assert all(abs(c - target) < timedelta(seconds=3) for c in clocks)


async def test_corrupted_replies_surface_as_timeouts_and_later_reads_succeed(start_sim):
    sim = await start_sim(dlt_gateway(Faults(corrupt_rate=1.0)))
    driver = make_driver(sim.endpoints[0], {}, timeout_s=0.3)
    try:
        with pytest.raises(MeterTimeout):
            await driver.read_relay("000101000001")
        sim.bus("gw9", 1).faults.corrupt_rate = 0.0
        assert await driver.read_relay("000101000001") is True
    finally:
        await driver.close()
