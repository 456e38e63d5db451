"""MQTT 4G gateway adapter (aiomqtt): the topic layout, JSON payloads and a readings listener.

Topics (QoS 1 throughout; `prefix` is configurable, e.g. "meterpay" or one per test run):
  {prefix}/gw/{gateway}/up/readings   gateway -> platform  {"readings": [reading, ...]}
  {prefix}/gw/{gateway}/down/cmd      platform -> gateway  {"id", "op", "port", "address", "args"}
  {prefix}/gw/{gateway}/up/ack        gateway -> platform  {"id", "ok", "result", "error"}
  {prefix}/gw/{gateway}/status        "online" (retained) on connect; "offline" as the LWT
A reading carries its original `taken_at` (ISO 8601, UTC): a gateway that was offline buffers
readings and publishes them, oldest first, when it reconnects (store-and-forward).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import aiomqtt

from devices.errors import FrameError
from devices.sample import MeterSample

log = logging.getLogger(__name__)
QOS = 1
OPS = ("read", "set_relay", "read_relay", "push_credit", "read_purchase_count", "set_price", "read_price", "time_sync", "read_clock")


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic of the layout, built from one configurable prefix."""

    prefix: str = "meterpay"

    def readings(self, gateway: str = "+") -> str:
        return f"{self.prefix}/gw/{gateway}/up/readings"

    def command(self, gateway: str) -> str:
        return f"{self.prefix}/gw/{gateway}/down/cmd"

    def ack(self, gateway: str = "+") -> str:
        return f"{self.prefix}/gw/{gateway}/up/ack"

    def status(self, gateway: str = "+") -> str:
        return f"{self.prefix}/gw/{gateway}/status"

    def gateway_of(self, topic: str) -> str:
        """The gateway code in one of this layout's topics; FrameError for any other topic."""
        head = f"{self.prefix}/gw/"
        rest = topic[len(head) :].split("/") if topic.startswith(head) else []
        if len(rest) not in (2, 3) or not rest[0] or "/".join(rest[1:]) not in ("status", "up/readings", "up/ack"):
            raise FrameError(f"topic {topic} is not under {head}")
        return rest[0]


def sample_to_json(sample: MeterSample) -> dict[str, Any]:
    """MeterSample -> JSON-ready dict (the gateway code is in the topic, not repeated)."""
    out = {k: v for k, v in asdict(sample).items() if v is not None and k != "gateway"}
    out["taken_at"] = sample.taken_at.isoformat()
    if sample.energy_rates is not None:
        out["energy_rates"] = list(sample.energy_rates)
    return out


def sample_from_json(gateway: str, item: dict[str, Any]) -> MeterSample:
    """One reading from a gateway's payload; FrameError for anything malformed."""
    try:
        taken_at = datetime.fromisoformat(item["taken_at"])
        if taken_at.tzinfo is None:
            raise ValueError("taken_at must carry a time zone")
        rates = item.get("energy_rates")
        fields = {k: item[k] for k in MeterSample.__slots__ if k in item and k not in ("gateway", "taken_at", "energy_rates")}  # type: ignore[attr-defined]
        return MeterSample(gateway=gateway, taken_at=taken_at, energy_rates=tuple(rates) if rates else None, **fields)
    except (KeyError, TypeError, ValueError) as ex:
        raise FrameError(f"bad reading from {gateway}: {ex}") from ex


def encode_readings(samples: list[MeterSample]) -> bytes:
    return json.dumps({"readings": [sample_to_json(s) for s in samples]}).encode()


def decode_readings(gateway: str, payload: bytes) -> list[MeterSample]:
    try:
        items = json.loads(payload)["readings"]
    except (ValueError, KeyError, TypeError) as ex:
        raise FrameError(f"bad readings payload from {gateway}") from ex
    return [sample_from_json(gateway, item) for item in items]


class ReadingsListener:
    """Platform side: subscribes to every gateway's readings and status under one prefix."""

    def __init__(self, topics: Topics, sink: Callable[[list[MeterSample]], Awaitable[None]]) -> None:
        self.topics, self.sink = topics, sink
        self.gateway_status: dict[str, str] = {}
        self.rejected = 0

    async def subscribe(self, client: aiomqtt.Client) -> None:
        await client.subscribe(self.topics.readings(), qos=QOS)
        await client.subscribe(self.topics.status(), qos=QOS)

    async def run(self, client: aiomqtt.Client) -> None:
        """Consume messages until cancelled; a bad payload is counted and logged, not fatal."""
        await self.subscribe(client)
        async for message in client.messages:
            await self.handle(str(message.topic), bytes(message.payload))  # type: ignore[arg-type]

    async def handle(self, topic: str, payload: bytes) -> None:
        try:
            gateway = self.topics.gateway_of(topic)
            if topic.endswith("/status"):
                self.gateway_status[gateway] = payload.decode(errors="replace")
                return
            samples = decode_readings(gateway, payload)
        except FrameError as ex:
            self.rejected += 1
            log.warning("dropped MQTT message on %s: %s", topic, ex)
            return
        if samples:
            await self.sink(samples)
