"""The poller: buses in parallel, one request at a time per bus, dead meters quarantined."""

from __future__ import annotations

import asyncio
import logging

from devices.driver import BusEndpoint
from devices.hub import COMMAND, POLL, BusHub
from devices.poller import PollPolicy, Poller
from devices.sample import MeterRef, MeterSample
from devices.sim import GatewaySpec

FAST = PollPolicy(interval_s=0.02, retries=1, request_timeout_s=0.2, fail_threshold=2, backoff_s=5.0, batch_size=10, flush_s=0.1)


class Batches:
    """An async sink that keeps what it was given."""

    def __init__(self) -> None:
        self.batches: list[list[MeterSample]] = []

    async def __call__(self, batch: list[MeterSample]) -> None:
        self.batches.append(batch)

    def count(self, address: str) -> int:
        return sum(1 for b in self.batches for s in b if s.address == address)


async def test_one_dead_meter_does_not_stall_the_others_on_its_bus(start_sim, caplog):
    sim = await start_sim(GatewaySpec("gw1", "modbus_rtu_tcp", meters_per_bus=4))
    sim.meter("gw1", 1, "2").dead = True
    sink = Batches()
    poller = Poller(sim.meter_list(), sink, FAST)
    loop = asyncio.get_running_loop()
    with caplog.at_level(logging.INFO, logger="devices.poller"):
        await poller.start()
        started = loop.time()
        async with asyncio.timeout(20):  # a loaded machine is slower; the property is the same
            while min(sink.count(a) for a in ("1", "3", "4")) < 15 or loop.time() - started < 1.5:
                await asyncio.sleep(0.05)
        elapsed = loop.time() - started
        await poller.stop()
    dead = MeterRef("gw1", 1, "2")
    assert sink.count("2") == 0 and poller.is_quarantined(dead) and not poller.is_online(dead)
    assert poller.health[dead].polls <= 3 + int(elapsed / 5)  # two failed polls, then one probe per 5 s backoff
    for address in ("1", "3", "4"):
        assert sink.count(address) >= 15, address
        assert poller.is_online(MeterRef("gw1", 1, address))
    lost = [r for r in caplog.records if "lost" in r.getMessage()]
    assert len(lost) == 1  # the outage is logged once, then quiet


async def test_a_quarantined_meter_is_probed_again_and_recovers(start_sim, caplog):
    sim = await start_sim(GatewaySpec("gw1", "modbus_tcp", meters_per_bus=2))
    meter = sim.meter("gw1", 1, "1")
    meter.dead = True
    sink = Batches()
    poller = Poller(sim.meter_list(), sink, PollPolicy(interval_s=0.05, request_timeout_s=0.15, fail_threshold=1, backoff_s=0.2, flush_s=0.05))
    with caplog.at_level(logging.INFO, logger="devices.poller"):
        await poller.start()
        await asyncio.sleep(0.6)
        assert poller.is_quarantined(MeterRef("gw1", 1, "1"))
        meter.dead = False
        await asyncio.sleep(1.2)
        await poller.stop()
    assert poller.is_online(MeterRef("gw1", 1, "1")) and sink.count("1") >= 1
    assert any("answers again" in r.getMessage() for r in caplog.records)


async def test_online_is_per_meter_not_per_gateway_connection(start_sim):
    sim = await start_sim(GatewaySpec("gw1", "modbus_rtu_tcp", meters_per_bus=2))
    sim.meter("gw1", 1, "2").dead = True  # the gateway is up and answers for meter 1
    poller = Poller(sim.meter_list(), Batches(), FAST)
    await poller.start()
    await asyncio.sleep(0.8)
    await poller.stop()
    assert poller.is_online(MeterRef("gw1", 1, "1")) and not poller.is_online(MeterRef("gw1", 1, "2"))


async def test_buses_are_polled_in_parallel_and_readings_arrive_in_batches(start_sim):
    sim = await start_sim(GatewaySpec("gw1", "modbus_rtu_tcp", buses=3, meters_per_bus=2), GatewaySpec("gw2", "dlt645_tcp", meters_per_bus=2, profile="dlt645_single_phase"), baud=9600)
    sink = Batches()
    poller = Poller(sim.meter_list(), sink, PollPolicy(interval_s=0.0, batch_size=20, flush_s=0.2))
    await poller.start()
    await asyncio.sleep(1.0)
    await poller.stop()
    per_bus = {(b.gateway, b.port): b.exchanges for b in sim.buses}
    assert all(n >= 8 for n in per_bus.values()), per_bus  # ~20 exchanges/s each at 9600 baud, side by side
    assert len(sink.batches) >= 2 and all(1 <= len(b) <= 20 + 4 for b in sink.batches)


class RecordingDriver:
    """A fake driver whose every call takes a little time and is recorded in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def work(self, name: str) -> str:
        await asyncio.sleep(0.005)
        self.calls.append(name)
        return name

    async def close(self) -> None:
        pass


async def test_commands_jump_ahead_of_queued_polls():
    fake = RecordingDriver()
    hub = BusHub(BusEndpoint("gw", 1, "127.0.0.1", 1), fake, frame_gap_s=0)  # type: ignore[arg-type]
    polls = [asyncio.create_task(hub.submit(lambda d, n=n: d.work(f"poll{n}"), POLL)) for n in range(10)]
    await asyncio.sleep(0)
    command = await hub.submit(lambda d: d.work("command"), COMMAND)
    await asyncio.gather(*polls)
    await hub.stop()
    assert command == "command" and fake.calls.index("command") <= 1
    assert [c for c in fake.calls if c != "command"] == [f"poll{n}" for n in range(10)]


async def test_stopping_a_hub_ends_even_when_a_request_swallows_the_cancel():
    class Stubborn(RecordingDriver):
        async def work(self, name: str) -> str:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                return "swallowed"  # as asyncio.timeout on 3.11 or a driver may do
            return name

    hub = BusHub(BusEndpoint("gw", 1, "127.0.0.1", 1), Stubborn(), frame_gap_s=0)  # type: ignore[arg-type]
    pending = asyncio.create_task(hub.submit(lambda d: d.work("x"), POLL))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(hub.stop(), timeout=5)  # before: waited on the empty queue for ever
    assert await pending == "swallowed"


async def test_only_one_request_is_in_flight_on_a_bus_at_a_time():
    active, peak = 0, 0

    class Probe(RecordingDriver):
        async def work(self, name: str) -> str:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.002)
            active -= 1
            return name

    hub = BusHub(BusEndpoint("gw", 1, "127.0.0.1", 1), Probe(), frame_gap_s=0)  # type: ignore[arg-type]
    await asyncio.gather(*(hub.submit(lambda d: d.work("x"), POLL if n % 2 else COMMAND) for n in range(30)))
    await hub.stop()
    assert peak == 1

