"""A MeterDriver over MQTT: each call is a `down/cmd` request (QoS 1, unique id) awaiting its `up/ack`.

`MqttLink` is one broker connection per process, subscribed to every gateway's acks under the
prefix; `MqttDriver` is the MeterDriver for one gateway downlink on top of it. Delivery is at
least once (QoS 1), so a gateway may see a command twice: writes are idempotent at the meter
(relay state; a purchase counter that refuses a repeat), and the CommandExecutor never re-sends
without reading back first. A command carries `expires_at`: a gateway drops it once that has
passed, so a write delayed in some queue cannot land after a newer decision.
Ack -> outcome: ok -> result; ok False with `transient` -> MeterTimeout (retry); ok False ->
MeterRejected (the meter refused); no ack within the timeout -> MeterTimeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import aiomqtt

from devices.errors import FrameError, MeterRejected, MeterTimeout
from devices.mqtt import QOS, Topics, sample_from_json
from devices.profiles import Profile
from devices.sample import MeterSample

log = logging.getLogger(__name__)


class MqttLink:
    """One broker connection: publishes requests and routes acks to their waiting callers by id."""

    def __init__(self, host: str, port: int, topics: Topics, username: str | None = None, password: str | None = None,
                 identifier: str | None = None, reconnect_s: float = 2.0) -> None:
        self.host, self.port, self.username, self.password = host, port, username, password
        self.topics, self.reconnect_s = topics, reconnect_s
        self.identifier = identifier or f"meterpay-cmd-{topics.prefix}-{uuid.uuid4().hex[:8]}"
        self.connected = asyncio.Event()
        self.late_acks = 0  # acks for requests that had already timed out (or duplicates)
        self._client: aiomqtt.Client | None = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"mqtt commands {self.topics.prefix}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def request(self, gateway: str, op: str, port: int, address: str, args: dict[str, Any] | None = None,
                      timeout_s: float = 5.0, ttl_s: float = 60.0) -> Any:
        """Publish one command and return the gateway's `result`; see the module doc for errors."""
        client = self._client
        if client is None or not self.connected.is_set():
            raise MeterTimeout(f"MQTT broker {self.host}:{self.port} not connected")
        cid = uuid.uuid4().hex
        expires = datetime.now(timezone.utc) + timedelta(seconds=ttl_s)
        body = {"id": cid, "op": op, "port": port, "address": address, "args": args or {}, "expires_at": expires.isoformat()}
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[cid] = future
        try:
            async with asyncio.timeout(timeout_s):
                await client.publish(self.topics.command(gateway), json.dumps(body).encode(), qos=QOS)
                ack = await future
        except TimeoutError as ex:
            raise MeterTimeout(f"no ack from gateway {gateway} for {op} on {address} within {timeout_s}s") from ex
        except aiomqtt.MqttError as ex:
            raise MeterTimeout(f"MQTT publish to {gateway} failed: {ex}") from ex
        finally:
            self._waiting.pop(cid, None)
        if ack.get("ok") is True:
            return ack.get("result")
        error = str(ack.get("error") or "refused")
        if ack.get("transient"):
            raise MeterTimeout(f"gateway {gateway}, {op} on {address}: {error}")
        raise MeterRejected(f"gateway {gateway}, {op} on {address}: {error}")

    def handle_ack(self, payload: bytes) -> None:
        try:
            ack = json.loads(payload)
            future = self._waiting.get(str(ack["id"])) if isinstance(ack, dict) else None
        except (ValueError, KeyError, TypeError):
            log.warning("dropped a malformed MQTT ack")
            return
        if future is None or future.done():
            self.late_acks += 1
            return
        future.set_result(ack)

    async def _run(self) -> None:
        outage = False
        while True:
            try:
                async with aiomqtt.Client(self.host, self.port, identifier=self.identifier,
                                          username=self.username, password=self.password) as client:
                    await client.subscribe(self.topics.ack(), qos=QOS)
                    self._client = client
                    self.connected.set()
                    if outage:
                        log.info("MQTT broker %s:%s reachable again (commands)", self.host, self.port)
                    outage = False
                    async for message in client.messages:
                        self.handle_ack(bytes(message.payload))  # type: ignore[arg-type]
            except aiomqtt.MqttError as ex:
                if not outage:
                    log.warning("MQTT broker %s:%s unavailable for commands (%s)", self.host, self.port, ex)
                outage = True
            finally:
                self.connected.clear()
                self._client = None
            await asyncio.sleep(self.reconnect_s)


class MqttDriver:
    """The MeterDriver for the meters on one downlink of one MQTT gateway."""

    def __init__(self, link: MqttLink, gateway: str, port: int = 1, timeout_s: float = 5.0) -> None:
        self.link, self.gateway, self.port, self.timeout_s = link, gateway, port, timeout_s

    async def _ask(self, op: str, address: str, **args: Any) -> Any:
        return await self.link.request(self.gateway, op, self.port, address, args, self.timeout_s)

    async def read(self, address: str, profile: Profile) -> MeterSample:
        result = await self._ask("read", address)
        if not isinstance(result, dict):
            raise FrameError(f"gateway {self.gateway} sent no reading for {address}")
        return sample_from_json(self.gateway, result)

    async def set_relay(self, address: str, closed: bool) -> None:
        await self._ask("set_relay", address, closed=closed)

    async def read_relay(self, address: str) -> bool:
        return bool(_typed(await self._ask("read_relay", address), (bool, int)))

    async def push_credit(self, address: str, amount_fen: int, purchase_count: int) -> None:
        await self._ask("push_credit", address, amount_fen=amount_fen, purchase_count=purchase_count)

    async def read_purchase_count(self, address: str) -> int:
        return int(_typed(await self._ask("read_purchase_count", address), int))

    async def set_price(self, address: str, price_e4: int) -> None:
        await self._ask("set_price", address, price_e4=price_e4)

    async def read_price(self, address: str) -> int:
        return int(_typed(await self._ask("read_price", address), int))

    async def time_sync(self, address: str, now: datetime) -> None:
        await self._ask("time_sync", address, now=now.isoformat())

    async def read_clock(self, address: str) -> datetime:
        try:
            return datetime.fromisoformat(str(await self._ask("read_clock", address)))
        except ValueError as ex:
            raise FrameError(f"gateway {self.gateway} sent a bad clock for {address}") from ex

    async def close(self) -> None:
        """Nothing to close: the link is shared by every gateway's driver."""


def _typed(value: Any, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(value, kind):
        raise FrameError(f"unexpected ack result {value!r}")
    return value
