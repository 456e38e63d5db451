"""Commands take effect exactly once: read back first, confirm by reading back, retry, expire."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from devices.commands import Command, CommandExecutor, InMemoryCommandStore
from devices.driver import make_driver
from devices.hub import BusHub
from devices.profiles import PROFILES
from devices.sample import MeterRef
from devices.sim import GatewaySpec, SimulatorHandle


def hubs_for(sim: SimulatorHandle, timeout_s: float = 0.3) -> dict[tuple[str, int], BusHub]:
    hubs = {}
    for bus in sim.buses:
        profiles = {a: PROFILES[m.profile_key] for a, m in bus.meters.items()}
        hubs[(bus.gateway, bus.port)] = BusHub(bus.endpoint, make_driver(bus.endpoint, profiles, timeout_s), 1.0)
    return hubs


@pytest.fixture
async def rig(start_sim):
    sim = await start_sim(GatewaySpec("gw1", "modbus_rtu_tcp", meters_per_bus=2), GatewaySpec("gw2", "dlt645_tcp", meters_per_bus=1, profile="dlt645_single_phase"))
    hubs = hubs_for(sim)
    store = InMemoryCommandStore()
    executor = CommandExecutor(store, lambda ref: hubs[(ref.gateway, ref.port)], backoff_s=0.05, backoff_max_s=0.2)
    yield sim, store, executor
    for hub in hubs.values():
        await hub.stop()


def command(id_: str, kind: str, ref: MeterRef, minutes: float = 10, **params: int) -> Command:
    return Command(id_, kind, ref, datetime.now(timezone.utc) + timedelta(minutes=minutes), params)  # type: ignore[arg-type]


async def run_until_settled(executor: CommandExecutor, store: InMemoryCommandStore, limit_s: float = 5.0) -> None:
    async with asyncio.timeout(limit_s):
        while any(c.state in ("queued", "sent") for c in store.commands.values()):
            await executor.run_due()
            await asyncio.sleep(0.02)


async def test_gateway_cut_then_back_applies_relay_and_credit_exactly_once(rig):
    sim, store, executor = rig
    ref = MeterRef("gw1", 1, "1")
    meter = sim.meter("gw1", 1, "1")
    sim.set_gateway_offline("gw1", True)
    await store.add(command("c-relay", "relay_open", ref))
    await store.add(command("c-credit", "push_credit", ref, amount_fen=3000, purchase_count=1))
    await store.add(command("c-credit", "push_credit", ref, amount_fen=3000, purchase_count=1))  # duplicate id: ignored
    for _ in range(5):  # the gateway is away: every attempt fails, nothing is confirmed
        await executor.run_due()
        await asyncio.sleep(0.06)
    assert {c.state for c in store.commands.values()} == {"queued"}
    assert all(c.attempts >= 2 for c in store.commands.values())
    sim.set_gateway_offline("gw1", False)
    sim.bus("gw1", 1).faults.lose_write_replies = 2  # both writes land, both acks are lost on the way back
    await run_until_settled(executor, store)
    assert {c.id: c.state for c in store.commands.values()} == {"c-relay": "confirmed", "c-credit": "confirmed"}
    assert meter.purchase_count == 1 and meter.credits_applied == [(1, 3000)]  # the counter proves one credit
    assert meter.relay_writes == 1 and meter.relay_closed is False
    assert sim.bus("gw1", 1).faults.lose_write_replies == 0  # the lost-ack path really ran


async def test_a_relay_already_in_the_wanted_state_is_confirmed_without_writing(rig):
    sim, store, executor = rig
    await store.add(command("c1", "relay_close", MeterRef("gw1", 1, "2")))
    await run_until_settled(executor, store)
    assert store.commands["c1"].state == "confirmed" and sim.meter("gw1", 1, "2").relay_writes == 0


async def test_a_credit_already_counted_by_the_meter_is_not_sent_again(rig):
    sim, store, executor = rig
    meter = sim.meter("gw1", 1, "2")
    meter.apply_credit(1, 500)  # landed earlier, e.g. before a worker crashed
    await store.add(command("c2", "push_credit", MeterRef("gw1", 1, "2"), amount_fen=500, purchase_count=1))
    await run_until_settled(executor, store)
    assert store.commands["c2"].state == "confirmed" and meter.credits_applied == [(1, 500)]


async def test_a_credit_waits_for_the_earlier_purchase_then_both_land_in_order(rig):
    sim, store, executor = rig
    ref = MeterRef("gw2", 1, "000201000001")
    await store.add(command("p2", "push_credit", ref, amount_fen=200, purchase_count=2))
    await executor.run_due()
    assert store.commands["p2"].state == "queued" and "purchase 1" in (store.commands["p2"].last_error or "")
    await store.add(command("p1", "push_credit", ref, amount_fen=100, purchase_count=1))
    await run_until_settled(executor, store)
    assert sim.meter("gw2", 1, "000201000001").credits_applied == [(1, 100), (2, 200)]


async def test_price_and_time_sync_are_confirmed_by_reading_back(rig):
    sim, store, executor = rig
    await store.add(command("price", "set_price", MeterRef("gw1", 1, "1"), price_e4=7321))
    await store.add(command("clock", "time_sync", MeterRef("gw2", 1, "000201000001")))
    sim.meter("gw2", 1, "000201000001").clock_offset_s = -7200
    await run_until_settled(executor, store)
    assert store.commands["price"].state == "confirmed" and sim.meter("gw1", 1, "1").price_e4 == 7321
    assert store.commands["clock"].state == "confirmed" and abs(sim.meter("gw2", 1, "000201000001").clock_offset_s) < 3


async def test_a_command_for_a_meter_that_never_returns_expires(rig):
    sim, store, executor = rig
    sim.meter("gw1", 1, "2").dead = True
    await store.add(command("late", "relay_open", MeterRef("gw1", 1, "2"), minutes=0.01))
    await run_until_settled(executor, store)
    assert store.commands["late"].state == "expired" and sim.meter("gw1", 1, "2").relay_closed is True


async def test_a_meter_refusal_fails_the_command_and_only_queued_commands_cancel(rig):
    sim, store, executor = rig
    meter = sim.meter("gw1", 1, "2")
    meter.balance_fen, meter.relay_closed = -10.0, False  # meter-side billing: no credit, no power
    await store.add(command("close", "relay_close", MeterRef("gw1", 1, "2")))
    await store.add(command("drop", "relay_open", MeterRef("gw1", 1, "1")))
    assert await store.cancel("drop") is True
    await run_until_settled(executor, store)
    assert store.commands["close"].state == "failed" and store.commands["drop"].state == "cancelled"
    assert await store.cancel("close") is False
