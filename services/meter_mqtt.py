"""The MQTT bridge: 4G gateways' readings (devices.mqtt layout) from the broker into the ingest sink.

One persistent session (clean_session=False, a stable client id) so the broker keeps QoS 1
readings while the platform restarts; gateways replay their own buffers with original
timestamps, which ingest bills exactly once. With several web processes give each the same
`shared_group` (MQTT shared subscription) so each message is handled by one of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlparse

import aiomqtt

from devices.mqtt import QOS, ReadingsListener, Topics
from devices.sample import MeterSample

log = logging.getLogger(__name__)
Sink = Callable[[list[MeterSample]], Awaitable[object]]


def broker_address(url: str) -> tuple[str, int, str | None, str | None]:
    """`mqtt://user:pass@host:port` -> (host, port, user, password)."""
    u = urlparse(url if "//" in url else f"mqtt://{url}")
    return u.hostname or "127.0.0.1", u.port or 1883, u.username, u.password


class RetryingSink:
    """A broker message is acknowledged on receipt: retry the database a few times before giving up."""

    def __init__(self, sink: Sink, attempts: int = 5, delay_s: float = 0.5) -> None:
        self.sink, self.attempts, self.delay_s = sink, attempts, delay_s
        self.lost = 0

    async def __call__(self, samples: list[MeterSample]) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                await self.sink(samples)
                return
            except Exception:  # noqa: BLE001 - retried, then counted and logged
                if attempt == self.attempts:
                    self.lost += len(samples)
                    log.exception("dropping %d MQTT readings after %d attempts", len(samples), attempt)
                    return
                await asyncio.sleep(self.delay_s * attempt)


class MqttBridge:
    """Subscribes to every gateway's readings and status under `topics.prefix`; start() / stop()."""

    def __init__(self, url: str, topics: Topics, sink: Sink, identifier: str | None = None,
                 shared_group: str | None = None, reconnect_s: float = 2.0) -> None:
        self.host, self.port, self.username, self.password = broker_address(url)
        self.topics, self.shared_group, self.reconnect_s = topics, shared_group, reconnect_s
        self.identifier = identifier or f"meterpay-bridge-{topics.prefix}"
        self.sink = RetryingSink(sink)
        self.listener = ReadingsListener(topics, self.sink)
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"mqtt bridge {self.topics.prefix}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _readings_topic(self) -> str:
        topic = self.topics.readings()
        return f"$share/{self.shared_group}/{topic}" if self.shared_group else topic

    async def _run(self) -> None:
        outage = False
        while True:
            try:
                async with aiomqtt.Client(self.host, self.port, identifier=self.identifier, clean_session=False,
                                          username=self.username, password=self.password) as client:
                    await client.subscribe(self._readings_topic(), qos=QOS)
                    await client.subscribe(self.topics.status(), qos=QOS)
                    if outage:
                        log.info("MQTT broker %s:%s reachable again", self.host, self.port)
                    outage = False
                    self.connected.set()
                    async for message in client.messages:
                        await self.listener.handle(str(message.topic), bytes(message.payload))  # type: ignore[arg-type]
            except aiomqtt.MqttError as ex:
                self.connected.clear()
                if not outage:
                    log.warning("MQTT broker %s:%s unavailable (%s); retrying quietly", self.host, self.port, ex)
                outage = True
                await asyncio.sleep(self.reconnect_s)
