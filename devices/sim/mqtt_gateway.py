"""A simulated 4G gateway on MQTT: publishes readings, buffers them while offline, replays on return."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field

import aiomqtt

from devices.driver import BusEndpoint, sample_from_values
from devices.mqtt import QOS, Topics, encode_readings
from devices.sample import MeterSample
from devices.sim.meter import SimMeter
from devices.sim.mqtt_ops import apply_command

log = logging.getLogger(__name__)


@dataclass
class SimMqttGateway:
    """One gateway, one downlink of meters; `online` toggles the uplink (store-and-forward)."""

    code: str
    meters: dict[str, SimMeter]
    topics: Topics
    host: str = "127.0.0.1"
    port: int = 1883
    interval_s: float = 1.0
    online: bool = True
    buffer: list[MeterSample] = field(default_factory=list)
    published: int = 0
    _task: asyncio.Task[None] | None = None
    _reconnect: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: bool = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"mqtt gateway {self.code}")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Leave the broker cleanly, then stop: an aiomqtt client cancelled in the middle of a QoS 1
        publish could be left waiting for its disconnect forever (a test hung on it, 1 run in 4).
        Cancelled only if it has not left within `timeout_s`."""
        if self._task is None or self._task.done():
            return
        self._stopping, self.online = True, False
        self._reconnect.set()
        done, _ = await asyncio.wait({self._task}, timeout=timeout_s)
        if not done:
            log.warning("simulated gateway %s did not leave the broker in %.0f s: cancelled", self.code, timeout_s)
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=timeout_s)

    def set_online(self, online: bool) -> None:
        self.online = online
        self._reconnect.set()

    def take_readings(self) -> None:
        bus = BusEndpoint(self.code, 1, "mqtt", 0)
        for address, meter in self.meters.items():
            self.buffer.append(sample_from_values(bus, address, meter.clock.now(), meter.values()))

    async def _run(self) -> None:
        while not self._stopping:
            if not self.online:
                self.take_readings()
                await self._wait(self.interval_s)
                continue
            with contextlib.suppress(aiomqtt.MqttError):
                await self._session()

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._reconnect.wait(), seconds)
        self._reconnect.clear()

    async def _session(self) -> None:
        will = aiomqtt.Will(self.topics.status(self.code), b"offline", qos=QOS, retain=True)
        async with aiomqtt.Client(self.host, self.port, identifier=f"sim-{self.topics.prefix}-{self.code}", will=will) as client:
            await client.publish(self.topics.status(self.code), b"online", qos=QOS, retain=True)
            await client.subscribe(self.topics.command(self.code), qos=QOS)
            commands = asyncio.create_task(self._commands(client))
            try:
                while self.online:
                    self.take_readings()
                    await self._flush(client)
                    await self._wait(self.interval_s)
            finally:
                commands.cancel()
                await asyncio.gather(commands, return_exceptions=True)

    async def _flush(self, client: aiomqtt.Client, chunk: int = 50) -> None:
        """Oldest first; a reading leaves the buffer only after the broker acknowledged it."""
        while self.buffer:
            batch = self.buffer[:chunk]
            await client.publish(self.topics.readings(self.code), encode_readings(batch), qos=QOS)
            del self.buffer[: len(batch)]
            self.published += len(batch)

    async def _commands(self, client: aiomqtt.Client) -> None:
        """Answer each `down/cmd` with an `up/ack` (devices.sim.mqtt_ops: every op of devices.mqtt)."""
        async for message in client.messages:
            try:
                cmd = json.loads(bytes(message.payload))  # type: ignore[arg-type]
            except ValueError as ex:
                cmd = {"error": str(ex)}
            ack = apply_command(self.code, self.meters, cmd if isinstance(cmd, dict) else {})
            await client.publish(self.topics.ack(self.code), json.dumps(ack).encode(), qos=QOS)
