"""pymodbus's own client and meterpay's Modbus driver read the simulator over real sockets."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusTcpClient

from devices.driver import make_driver
from devices.errors import MeterRejected, MeterTimeout
from devices.profiles import ACREL_DDSY1352, MULTI_USER_UNIT, PROFILES, THREE_PHASE, WATER_VALVE, decode_registers
from devices.sim import GatewaySpec


@pytest.mark.parametrize(("protocol", "framer"), [("modbus_rtu_tcp", FramerType.RTU), ("modbus_tcp", FramerType.SOCKET)])
async def test_pymodbus_client_reads_acrel_energy_registers_from_the_simulator(start_sim, protocol, framer):
    sim = await start_sim(GatewaySpec("gw1", protocol), speed=3600)
    meter = sim.meter("gw1", 1, "3")
    meter.energy = 123_456.0  # Wh -> 12345 x 0.01 kWh
    client = AsyncModbusTcpClient("127.0.0.1", port=sim.endpoints[0].tcp_port, framer=framer, timeout=2, retries=0)
    await client.connect()
    try:
        rr = await client.read_holding_registers(0x0000, count=2, device_id=3)
        assert not rr.isError()
        total = (rr.registers[0] << 16) | rr.registers[1]
        assert 12345 <= total < 12400
        wr = await client.write_registers(0x0057, [0x0001, 0x0001], device_id=3)  # Acrel: 00 01 00 01 trips
        assert not wr.isError() and meter.relay_closed is False
        await client.write_registers(0x0057, [0x0001, 0x0000], device_id=3)  # 00 01 00 00 restores
        assert meter.relay_closed is True
        bad = await client.write_registers(0x0200, [1], device_id=3)
        assert bad.isError()
    finally:
        client.close()


@pytest.mark.parametrize("protocol", ["modbus_rtu_tcp", "modbus_tcp"])
@pytest.mark.parametrize("profile", [ACREL_DDSY1352, THREE_PHASE, MULTI_USER_UNIT, WATER_VALVE])
async def test_driver_reads_every_profile_into_a_meter_sample(start_sim, protocol, profile):
    sim = await start_sim(GatewaySpec("gw7", protocol, meters_per_bus=3, profile=profile.key), speed=3600)
    meter = sim.meter("gw7", 1, "2")
    meter.energy, meter.balance_fen, meter.purchase_count = 5_000_000.0, 1234.0, 7
    driver = make_driver(sim.endpoints[0], {"2": profile})
    try:
        sample = await driver.read("2", profile)
    finally:
        await driver.close()
    assert (sample.gateway, sample.port, sample.address) == ("gw7", 1, "2")
    assert 5_000_000 <= sample.energy_total < 5_010_000
    assert sample.relay_closed is True and sample.purchase_count == 7
    assert 1200 <= sample.meter_balance_fen <= 1234
    assert sample.taken_at.tzinfo is timezone.utc
    if profile.medium == "electricity":
        assert 200 < sample.voltage_v < 240 and sample.frequency_hz == 50.0
        assert sample.energy_rates is None or sum(sample.energy_rates) <= sample.energy_total


async def test_multi_user_box_answers_on_many_unit_ids_behind_one_port(start_sim):
    sim = await start_sim(GatewaySpec("box", "modbus_rtu_tcp", meters_per_bus=12, profile=MULTI_USER_UNIT.key))
    units = {str(n): MULTI_USER_UNIT for n in range(1, 13)}
    for n in range(1, 13):
        sim.meter("box", 1, str(n)).energy = n * 1000.0
    driver = make_driver(sim.endpoints[0], units)
    try:
        samples = [await driver.read(u, MULTI_USER_UNIT) for u in units]
    finally:
        await driver.close()
    assert [s.energy_total // 1000 for s in samples] == list(range(1, 13))


async def test_driver_controls_relay_credit_price_and_clock(start_sim):
    sim = await start_sim(GatewaySpec("gw1", "modbus_rtu_tcp"))
    driver = make_driver(sim.endpoints[0], {"1": ACREL_DDSY1352})
    meter = sim.meter("gw1", 1, "1")
    try:
        await driver.set_relay("1", False)
        assert await driver.read_relay("1") is False and meter.relay_closed is False
        await driver.push_credit("1", 2000, 1)
        assert await driver.read_purchase_count("1") == 1
        with pytest.raises(MeterRejected):
            await driver.push_credit("1", 2000, 1)  # the same purchase again: the meter refuses
        assert meter.credits_applied == [(1, 2000)]
        await driver.set_price("1", 5880)
        assert await driver.read_price("1") == 5880
        target = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=3)
        await driver.time_sync("1", target)
        assert abs((await driver.read_clock("1")) - target) < timedelta(seconds=3)
    finally:
        await driver.close()


async def test_a_silent_unit_times_out_and_the_next_request_still_works(start_sim):
    sim = await start_sim(GatewaySpec("gw1", "modbus_rtu_tcp"))
    sim.meter("gw1", 1, "2").dead = True
    driver = make_driver(sim.endpoints[0], dict.fromkeys("12", ACREL_DDSY1352), timeout_s=0.3)
    try:
        with pytest.raises(MeterTimeout):
            await driver.read("2", ACREL_DDSY1352)
        assert (await driver.read("1", ACREL_DDSY1352)).address == "1"
    finally:
        await driver.close()


def test_acrel_register_words_decode_to_base_units():
    words = [0x0001, 0xE240, 0, 100, 0, 200, 0, 300, 0, 400, 2301, 523, 0, 1180, 990, 5001, 1, 0, 5000, 0, 3, 0, 6000]
    values = decode_registers(ACREL_DDSY1352, 0, words)
    assert values["energy_total"] == 1_234_560  # 0x0001E240 = 123456 x 0.01 kWh = 1234560 Wh
    assert (values["rate_sharp"], values["rate_valley"]) == (1000, 4000)
    assert (values["voltage_v"], values["current_a"], values["power_w"]) == (230.1, 5.23, 1180)
    assert (values["power_factor"], values["frequency_hz"], values["relay_closed"]) == (0.99, 50.01, 1)
    assert (values["meter_balance_fen"], values["purchase_count"], values["price_e4"]) == (5000, 3, 6000)
    assert set(PROFILES) >= {"acrel_ddsy1352", "three_phase_4q", "multi_user_box_unit", "water_valve"}


async def test_offline_gateway_refuses_then_serves_again(start_sim):
    sim = await start_sim(GatewaySpec("gw1", "modbus_tcp"))
    driver = make_driver(sim.endpoints[0], {"1": ACREL_DDSY1352}, timeout_s=0.3)
    try:
        sim.set_gateway_offline("gw1", True)
        with pytest.raises(MeterTimeout):
            await driver.read("1", ACREL_DDSY1352)
        sim.set_gateway_offline("gw1", False)
        await asyncio.sleep(0.05)
        assert (await driver.read("1", ACREL_DDSY1352)).relay_closed is True
    finally:
        await driver.close()


async def test_an_offline_window_cuts_the_gateway_only_for_that_window(start_sim):
    from devices.sim.bus import Faults

    sim = await start_sim(GatewaySpec("gw1", "modbus_rtu_tcp", faults=Faults(offline_windows=((0.0, 0.4),))))
    driver = make_driver(sim.endpoints[0], {"1": ACREL_DDSY1352}, timeout_s=0.2)
    try:
        with pytest.raises(MeterTimeout):
            await driver.read("1", ACREL_DDSY1352)
        await asyncio.sleep(0.5)
        assert (await driver.read("1", ACREL_DDSY1352)).address == "1"
    finally:
        await driver.close()


async def test_relay_open_stops_consumption_and_meter_side_balance_trips_at_zero(start_sim):
    sim = await start_sim(GatewaySpec("gw1", "modbus_rtu_tcp", meters_per_bus=2), speed=36_000)
    idle, broke = sim.meter("gw1", 1, "1"), sim.meter("gw1", 1, "2")
    idle.set_relay(False)
    broke.balance_fen = 5.0
    before = idle.values()["energy_total"]
    await asyncio.sleep(0.3)  # ~3 simulated hours
    assert idle.values()["energy_total"] == before
    assert broke.values()["relay_closed"] == 0 and broke.balance_fen <= 0
    assert broke.set_relay(True) is False  # no credit, no closing
    assert broke.apply_credit(1, 1000) and broke.set_relay(True)
