"""MQTT gateways against the real Mosquitto broker: readings up, store-and-forward replay."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import datetime, timezone

import aiomqtt
import pytest

from devices.mqtt import ReadingsListener, Topics, decode_readings, encode_readings
from devices.sample import MeterSample
from devices.sim.meter import SimClock, SimMeter
from devices.sim.mqtt_gateway import SimMqttGateway
from devices.errors import FrameError
from tests.conftest import need_service

MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883
if url := os.environ.get("TEST_MQTT_URL"):
    MQTT_HOST, MQTT_PORT = url.split("//")[-1].split(":")[0], int(url.rsplit(":", 1)[-1])

pytestmark = pytest.mark.mqtt


@pytest.fixture
async def broker() -> aiomqtt.Client:
    try:
        async with aiomqtt.Client(MQTT_HOST, MQTT_PORT, identifier=f"test-{uuid.uuid4().hex[:8]}") as client:
            yield client
    except aiomqtt.MqttError as ex:
        need_service("Mosquitto", str(ex))


def test_readings_payload_round_trips_with_original_timestamps():
    sample = MeterSample("gw1", 2, "7", datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), 12345, (1, 2, 3, 4), relay_closed=True)
    assert decode_readings("gw1", encode_readings([sample])) == [sample]
    with pytest.raises(FrameError):
        decode_readings("gw1", b'{"readings": [{"address": "7"}]}')


async def test_offline_gateway_replays_buffered_readings_with_original_times(broker):
    topics = Topics(f"test-{uuid.uuid4().hex[:10]}")
    received: list[MeterSample] = []

    async def sink(batch: list[MeterSample]) -> None:
        received.extend(batch)

    listener = ReadingsListener(topics, sink)
    await listener.subscribe(broker)
    listening = asyncio.create_task(listener.run(broker))
    clock = SimClock(speed=3600)
    meters = {str(n): SimMeter(str(n), "acrel_ddsy1352", clock) for n in (1, 2)}
    gateway = SimMqttGateway("gw-4g", meters, topics, MQTT_HOST, MQTT_PORT, interval_s=0.1)
    gateway.start()
    try:
        await asyncio.sleep(0.5)
        gateway.set_online(False)
        await asyncio.sleep(0.6)
        offline_from, buffered = received[-1].taken_at, len(gateway.buffer)
        count_while_offline = len(received)
        await asyncio.sleep(0.1)
        assert len(received) == count_while_offline and buffered >= 8  # nothing arrives while away
        gateway.set_online(True)
        async with asyncio.timeout(5):
            while gateway.buffer or len(received) < gateway.published:
                await asyncio.sleep(0.05)
    finally:
        await gateway.stop()
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
    assert len(received) == gateway.published
    replayed = [s for s in received[count_while_offline:] if s.taken_at > offline_from]
    assert len(replayed) >= buffered
    for address in ("1", "2"):
        mine = [s for s in received if s.address == address]
        assert [s.taken_at for s in mine] == sorted(s.taken_at for s in mine)  # original order and times
        assert [s.energy_total for s in mine] == sorted(s.energy_total for s in mine)
    assert listener.gateway_status.get("gw-4g") == "online"


async def test_garbage_on_the_readings_topic_is_counted_not_fatal(broker):
    topics = Topics(f"test-{uuid.uuid4().hex[:10]}")
    got: list[MeterSample] = []

    async def sink(batch: list[MeterSample]) -> None:
        got.extend(batch)

    listener = ReadingsListener(topics, sink)
    await listener.handle(topics.readings("gw1"), b"not json")
    await listener.handle("elsewhere/gw/gw1/up/readings", b"{}")
    assert listener.rejected == 2 and got == []
