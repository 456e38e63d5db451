"""The MQTT bridge against the real Mosquitto: a 4G gateway goes away, comes back, replays; bills are exact."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import aiomqtt
import pytest
from sqlalchemy import select

from billing.money import Money, round_half_up
from devices.mqtt import Topics
from devices.sample import MeterSample
from devices.sim.meter import SimClock, SimMeter
from devices.sim.mqtt_gateway import SimMqttGateway
from services import ledger
from services.meter_io import ReadingSink
from services.meter_mqtt import MqttBridge, broker_address
from services.wallets import balance
from store.models import Reading
from tests.conftest import need_service
from tests.integration.conftest import build_site, eventually

MQTT_URL = os.environ.get("TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
HOST, PORT, _, _ = broker_address(MQTT_URL)
PRICE = Decimal("0.85")  # yuan per kWh
pytestmark = pytest.mark.mqtt


@dataclass
class RecordingGateway(SimMqttGateway):
    """The simulated DTU, remembering every reading it took (published or still buffered)."""

    taken: list[MeterSample] = field(default_factory=list)

    def take_readings(self) -> None:
        before = len(self.buffer)
        super().take_readings()
        self.taken.extend(self.buffer[before:])


@pytest.fixture
async def broker_up() -> None:
    try:
        async with aiomqtt.Client(HOST, PORT, identifier=f"probe-{uuid.uuid4().hex[:8]}"):
            pass
    except aiomqtt.MqttError as ex:
        need_service("Mosquitto", str(ex))


def hand_computed_fen(samples: list[MeterSample]) -> int:
    """Each interval's Wh x 0.85 yuan/kWh, rounded half up to the fen per reading line."""
    by_meter: dict[str, list[MeterSample]] = defaultdict(list)
    for s in samples:
        by_meter[s.address].append(s)
    fen = 0
    for series in by_meter.values():
        series.sort(key=lambda s: s.taken_at)
        for a, b in zip(series, series[1:]):
            fen += round_half_up(Decimal(b.energy_total - a.energy_total) * PRICE / 10)
    return fen


async def test_a_gateway_back_from_offline_replays_its_buffer_and_the_bills_are_exact(sessions, broker_up):
    run = uuid.uuid4().hex[:10]
    topics = Topics(f"test-{run}")
    site = await build_site(sessions, {"1": {}, "2": {}}, price=str(PRICE), gateway_protocol="mqtt",
                            gateway_code=f"4g-{run}")
    sink = ReadingSink.for_sessions(sessions)
    bridge = MqttBridge(MQTT_URL, topics, sink, identifier=f"bridge-{run}")
    clock = SimClock(speed=1.0)  # real time: the replayed timestamps are the moments readings were taken
    meters = {a: SimMeter(a, "acrel_ddsy1352", clock, base_load_w=2_000_000, meter_billing=False) for a in ("1", "2")}
    gateway = RecordingGateway(site.gateway, meters, topics, HOST, PORT, interval_s=0.1)
    bridge.start()
    try:
        await asyncio.wait_for(bridge.connected.wait(), 5)
        gateway.start()
        await eventually(lambda: _count(sessions, 6))
        gateway.set_online(False)
        await asyncio.sleep(0.8)
        buffered = list(gateway.buffer)
        gateway.set_online(True)
        await eventually(lambda: _delivered(sessions, site.meters, buffered))
        await gateway.stop()
        published = gateway.taken[: len(gateway.taken) - len(gateway.buffer)]
        await eventually(lambda: _count(sessions, len(published)))
    finally:
        await gateway.stop()
        await bridge.stop()

    assert len(buffered) >= 10 and gateway.published == len(published)
    async with sessions() as s:
        rows = list(await s.scalars(select(Reading)))
        assert sorted((r.meter_id, r.taken_at) for r in rows) == sorted(
            (site.meters[p.address], p.taken_at) for p in published)  # each once, original timestamps
        assert {r.verdict for r in rows} == {"base", "billed"}
        expected = hand_computed_fen(published)
        assert expected > 0 and sum(r.amount_fen for r in rows) == expected
        paid = sum([(await balance(s, site.accounts[a])).total.fen for a in ("1", "2")])
        assert paid == 2 * 100_00 - expected
        assert await ledger.balance_of(s, site.site_id, "revenue:electricity") == Money(expected)
        assert (await ledger.verify(s)).ok
    assert sink.refused == sink.dropped == bridge.sink.lost == 0


async def _count(sessions, at_least: int) -> bool:
    async with sessions() as s:
        return len(list(await s.scalars(select(Reading.id)))) >= at_least


async def _delivered(sessions, ids: dict[str, int], samples: list[MeterSample]) -> bool:
    async with sessions() as s:
        stored = {(r.meter_id, r.taken_at) for r in await s.execute(select(Reading.meter_id, Reading.taken_at))}
    return all((ids[p.address], p.taken_at) in stored for p in samples)
