"""Meter commands for 4G MQTT gateways: the database command queue delivered over devices.mqtt_driver.

`MqttCommandRuntime` runs a devices.CommandExecutor (read back first, confirm only by read-back)
on a DbCommandStore limited to gateways whose protocol is 'mqtt', routing each meter to a BusHub
over an MqttDriver (one request at a time per gateway downlink, like a wired bus). Gateways are
worked in parallel, so an offline one only costs its own timeouts. Nothing is attempted while
the broker is unreachable; a command for an offline gateway times out and is retried with
backoff until it lands or expires. Started next to services.meter_mqtt.MqttBridge when MQTT_URL
is set (meterpay.embedded.mqtt_ctx).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices.commands import Command, CommandExecutor
from devices.driver import BusEndpoint
from devices.hub import BusHub
from devices.mqtt import Topics
from devices.mqtt_driver import MqttDriver, MqttLink
from devices.sample import MeterRef
from services.meter_commands import DbCommandStore
from services.meter_mqtt import broker_address
from store.models import Gateway

log = logging.getLogger(__name__)
MQTT_PROTOCOL = "mqtt"


class MqttCommandStore(DbCommandStore):
    """DbCommandStore over the gateways with protocol 'mqtt' (re-read each pass: new gateways join)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], only: Collection[str] | None = None,
                 claim_s: float = 300.0) -> None:
        super().__init__(sessions, gateways=(), claim_s=claim_s)
        self.only = None if only is None else frozenset(only)

    async def due(self, now: datetime, limit: int = 100) -> list[Command]:
        async with self.sessions() as session:
            codes = set(await session.scalars(select(Gateway.code).where(Gateway.protocol == MQTT_PROTOCOL)))
        self.gateways = frozenset(codes if self.only is None else codes & self.only)
        return await super().due(now, limit) if self.gateways else []


@dataclass(frozen=True)
class MqttCommandOptions:
    interval_s: float = 1.0  # between passes over the due commands
    request_timeout_s: float = 10.0  # one request/ack round trip through a 4G link
    backoff_s: float = 5.0
    backoff_max_s: float = 3600.0


class MqttCommandRuntime:
    """Delivers queued meter commands to MQTT gateways; start() / stop()."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], url: str, topics: Topics,
                 options: MqttCommandOptions = MqttCommandOptions(), gateways: Collection[str] | None = None,
                 identifier: str | None = None) -> None:
        host, port, user, password = broker_address(url)
        self.options = options
        self.link = MqttLink(host, port, topics, user, password, identifier=identifier)
        self.store = MqttCommandStore(sessions, only=gateways)
        self.executor = CommandExecutor(self.store, self._hub, options.backoff_s, options.backoff_max_s)
        self._hubs: dict[tuple[str, int], BusHub] = {}
        self._task: asyncio.Task[None] | None = None

    def _hub(self, ref: MeterRef) -> BusHub:
        key = (ref.gateway, ref.port)
        if key not in self._hubs:
            driver = MqttDriver(self.link, ref.gateway, ref.port, self.options.request_timeout_s)
            endpoint = BusEndpoint(ref.gateway, ref.port, "mqtt", 0, "mqtt")  # type: ignore[arg-type]
            self._hubs[key] = BusHub(endpoint, driver, request_timeout_s=self.options.request_timeout_s + 1.0,
                                     frame_gap_s=0)
        return self._hubs[key]

    def start(self) -> None:
        self.link.start()
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="mqtt meter commands")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for hub in self._hubs.values():
            await hub.stop()
        self._hubs.clear()
        await self.link.stop()

    async def run_due(self) -> list[Command]:
        """One pass: every due command, one gateway's commands in order, gateways in parallel."""
        by_gateway: dict[str, list[Command]] = defaultdict(list)
        for command in await self.store.due(self.executor.clock()):
            by_gateway[command.target.gateway].append(command)

        async def one_gateway(commands: list[Command]) -> list[Command]:
            return [await self.executor.execute(c) for c in commands]

        done = await asyncio.gather(*(one_gateway(cs) for cs in by_gateway.values()))
        return [c for cs in done for c in cs]

    async def _loop(self) -> None:
        while True:
            await self.link.connected.wait()  # no attempts (and no backoff spent) while the broker is away
            try:
                await self.run_due()
            except Exception:  # noqa: BLE001 - a database blip must not stop delivery for good
                log.exception("MQTT command pass failed; trying again")
            await asyncio.sleep(self.options.interval_s)
