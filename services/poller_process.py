"""A standalone poller process (`python app.py poller`): polls only the gateways it holds a lease on.

Every `renew_s` it renews its leases and heartbeat in one transaction and claims free or expired
gateways up to a fair share (wired gateways / live pollers, rounded up). Holding more than its
share (another poller came up), it stops polling the excess first and only then releases them.
If it cannot renew before its leases could expire (database down, loop starved), it stops polling
everything (fencing), so a gateway is never polled by two processes that both believe they own
it. On SIGTERM it flushes, releases its leases and goes; killed, its gateways are free after
`ttl_s` and the next claim of a live poller takes them. With MQTT_URL set, the poller that holds
the MQTT token (the lease of the lowest-id MQTT gateway) runs the one MQTT bridge: one consumer,
so one meter's readings are never ingested by two processes at once.

Env: POLLER_NAME, POLLER_LEASE_TTL_S (10), POLLER_RENEW_S (3), POLL_INTERVAL_S (60), POLL_TIMEOUT_S (1),
POLLER_COMMAND_CLAIM_S (30), POLLER_COMMAND_INTERVAL_S (1), POLLER_MQTT (on|off).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices.mqtt import Topics
from devices.poller import PollPolicy
from meterpay.heap import settle_startup_heap
from meterpay.settings import Settings
from services.leases import claim, release
from services.meter_io import ReadingSink
from services.meter_mqtt import MqttBridge
from services.meter_runtime import BUS_PROTOCOLS, MeterRuntime, RuntimeOptions, db_endpoints, load_fleet, poll_targets
from services.uow import in_transaction
from store.db import make_engine, make_sessionmaker
from store.models import Gateway, PollerSeen
from store.types import utcnow

log = logging.getLogger(__name__)
WIRED = tuple(sorted(BUS_PROTOCOLS))


class Startable(Protocol):
    def start(self) -> None: ...
    async def stop(self) -> None: ...


@dataclass(frozen=True)
class PollerOptions:
    name: str
    owner: str
    ttl_s: float = 10.0
    renew_s: float = 3.0
    command_claim_s: float = 30.0  # a killed poller's claimed commands come back this soon
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    mqtt: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> PollerOptions:
        def num(key: str, default: float) -> float:
            return float(settings.get(key) or default)

        name = settings.get("POLLER_NAME") or f"poller-{socket.gethostname()}-{os.getpid()}"
        policy = PollPolicy(interval_s=num("POLL_INTERVAL_S", 60.0), request_timeout_s=num("POLL_TIMEOUT_S", 1.0))
        return cls(name=name, owner=f"{name}@{socket.gethostname()}:{os.getpid()}"[:100],
                   ttl_s=num("POLLER_LEASE_TTL_S", 10.0), renew_s=num("POLLER_RENEW_S", 3.0),
                   command_claim_s=num("POLLER_COMMAND_CLAIM_S", 30.0),
                   runtime=RuntimeOptions(policy=policy, command_interval_s=num("POLLER_COMMAND_INTERVAL_S", 1.0)),
                   mqtt=(settings.get("POLLER_MQTT") or "on") != "off")


def fair_share(gateways: int, live_pollers: int) -> int:
    """How many wired gateways one poller should hold: all of them divided by the live pollers, rounded up."""
    return math.ceil(gateways / max(live_pollers, 1))


@dataclass(frozen=True)
class Held:
    """What one renewal left this poller holding."""

    wired: list[int]  # gateway ids, in id order
    share: int  # how many wired gateways this poller should hold
    bridge: bool  # the MQTT bridge token: the lowest-id MQTT gateway's lease


async def claim_bridge(session: AsyncSession, owner: str, ttl_s: float, now: datetime) -> bool:
    """Hold the MQTT bridge token (one bridge at a time, so one consumer per gateway's readings)."""
    token = await session.scalar(select(Gateway.id).where(Gateway.protocol == "mqtt").order_by(Gateway.id).limit(1))
    if token is None:
        return False
    res = await session.execute(update(Gateway).where(
        Gateway.id == token, or_(Gateway.lease_owner == owner, Gateway.lease_owner.is_(None), Gateway.lease_until < now))
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=ttl_s)))
    return res.rowcount == 1


async def heartbeat_and_claim(session: AsyncSession, owner: str, ttl_s: float, now: datetime | None = None,
                              bridge: bool = True) -> Held:
    """Beat, renew, and claim up to the fair share of wired gateways (and the bridge token if asked)."""
    now = now or utcnow()
    seen = await session.get(PollerSeen, owner, with_for_update=True)
    if seen is None:
        seen = PollerSeen(owner=owner, seen_at=now)
        session.add(seen)
    seen.seen_at = now
    await session.flush()
    live = await session.scalar(select(func.count()).select_from(PollerSeen)
                                .where(PollerSeen.seen_at >= now - timedelta(seconds=ttl_s))) or 1
    total = await session.scalar(select(func.count()).select_from(Gateway).where(Gateway.protocol.in_(WIRED))) or 0
    share = fair_share(int(total), int(live))
    token = bridge and await claim_bridge(session, owner, ttl_s, now)
    held = await claim(session, owner, ttl_s, limit=share + int(token), now=now, protocols=WIRED)
    wired = sorted(await session.scalars(select(Gateway.id).where(Gateway.id.in_(held), Gateway.protocol.in_(WIRED))))
    seen.gateways = len(wired)
    await session.execute(delete(PollerSeen).where(PollerSeen.seen_at < now - timedelta(seconds=30 * ttl_s)))
    return Held(list(wired), share, token)


async def release_gateways(session: AsyncSession, owner: str, gateway_ids: list[int]) -> None:
    """Hand back some of this owner's gateways (rebalancing); the caller stopped polling them first."""
    await session.execute(update(Gateway).where(Gateway.id.in_(gateway_ids), Gateway.lease_owner == owner)
                          .values(lease_owner=None, lease_until=None))


async def leave(session: AsyncSession, owner: str) -> None:
    """Clean shutdown: every lease and the heartbeat go at once."""
    await release(session, owner)
    await session.execute(delete(PollerSeen).where(PollerSeen.owner == owner))


async def gateway_codes(session: AsyncSession, ids: list[int]) -> dict[int, str]:
    return dict((await session.execute(select(Gateway.id, Gateway.code).where(Gateway.id.in_(ids)))).all())


class PollerProcess:
    """The lease loop around one MeterRuntime (and the MQTT bridge while holding its token); run(stop)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], options: PollerOptions,
                 mqtt: Sequence[Startable] = ()) -> None:
        self.sessions, self.options, self.mqtt = sessions, options, list(mqtt)
        self.runtime: MeterRuntime | None = None
        self.polling: frozenset[str] = frozenset()
        self.bridging = False
        self.renewed_at = -math.inf  # monotonic time of the last successful renewal
        self.changes = 0
        self._outage = False

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                await self.tick()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.options.renew_s)
        finally:
            await self._fence()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(in_transaction(self.sessions, lambda s: leave(s, self.options.owner)), 5)
            log.info("poller %s stopped; leases released", self.options.owner)

    async def tick(self) -> None:
        """One renewal: claim, drive what is held (dropping the excess first), release the excess."""
        started = time.monotonic()
        try:
            held = await asyncio.wait_for(in_transaction(self.sessions, lambda s: heartbeat_and_claim(
                s, self.options.owner, self.options.ttl_s, bridge=bool(self.mqtt))), self.options.ttl_s / 2)
            async with self.sessions() as session:
                codes = await gateway_codes(session, held.wired)
        except Exception as ex:  # noqa: BLE001 - the database may be restarting: fence, then retry quietly
            if not self._outage:
                log.warning("poller %s cannot renew its leases (%s); retrying", self.options.owner, ex)
            self._outage = True
            if time.monotonic() - self.renewed_at > self.options.ttl_s - self.options.renew_s / 2:
                await self._fence()  # our leases may be gone: stop before another poller starts
            return
        self.renewed_at = started
        if self._outage:
            log.info("poller %s renewing again", self.options.owner)
        self._outage = False
        keep, excess = held.wired[:held.share], held.wired[held.share:]
        await self._poll(frozenset(codes[i] for i in keep))
        await self._bridge(held.bridge)
        if excess:
            await in_transaction(self.sessions, lambda s: release_gateways(s, self.options.owner, excess))
            log.info("poller %s handed back %d gateway(s) to balance the load", self.options.owner, len(excess))

    async def _fence(self) -> None:
        await self._poll(frozenset())
        await self._bridge(False)

    async def _bridge(self, hold: bool) -> None:
        """Start the MQTT side (readings bridge, command runtime) on taking the token; stop it on losing it."""
        if not self.mqtt or hold == self.bridging:
            return
        for part in self.mqtt:
            if hold:
                part.start()
            else:
                await part.stop()
        self.bridging = hold
        log.info("poller %s %s the MQTT bridge", self.options.owner, "runs" if hold else "stopped")

    async def _poll(self, codes: frozenset[str]) -> None:
        """Drive exactly these gateways: the old runtime stops before a new one starts."""
        if codes == self.polling:
            return
        if self.runtime is not None:
            await self.runtime.stop()
            self.runtime = None
        self.polling = frozenset()
        if codes:
            async with self.sessions() as session:
                fleet = await load_fleet(session, codes)
            runtime = MeterRuntime(self.sessions, poll_targets(fleet, db_endpoints(fleet)), self.options.runtime)
            runtime.store.claim_s = self.options.command_claim_s  # TODO(lead): a RuntimeOptions field
            await runtime.start()
            self.runtime = runtime
            self.polling = codes
        self.changes += 1
        log.info("poller %s now polls %d gateway(s)", self.options.owner, len(codes))


def mqtt_parts(settings: Settings, options: PollerOptions,
               sessions: async_sessionmaker[AsyncSession]) -> list[Startable]:
    """The 4G gateways' readings bridge and command runtime (run only while holding the token).

    Every poller uses the same client ids and a persistent session, so the broker keeps QoS 1
    readings while no poller holds the token and hands them to whichever poller takes it next.
    """
    if not (settings.mqtt_url and options.mqtt):
        return []
    from services.meter_mqtt_commands import MqttCommandRuntime

    topics = Topics(settings.mqtt_prefix)
    return [MqttBridge(settings.mqtt_url, topics, ReadingSink.for_sessions(sessions),
                       identifier=f"meterpay-bridge-{settings.mqtt_prefix}"),
            MqttCommandRuntime(sessions, settings.mqtt_url, topics, identifier=f"meterpay-commands-{settings.mqtt_prefix}")]


async def serve_poller(settings: Settings, stop: asyncio.Event | None = None,
                       options: PollerOptions | None = None, settle_heap: bool = False) -> None:
    """Run one poller until SIGTERM/SIGINT or `stop` (`settle_heap`: see meterpay.heap)."""
    options = options or PollerOptions.from_settings(settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    log.info("poller %s starting (lease ttl %gs, poll every %gs)", options.owner, options.ttl_s,
             options.runtime.policy.interval_s)
    process = PollerProcess(sessions, options, mqtt_parts(settings, options, sessions))
    if settle_heap:
        settle_startup_heap()
    try:
        await process.run(stop)
    finally:
        await engine.dispose()


def run_poller(settings: Settings, settle_heap: bool = False) -> None:
    """`python app.py poller`."""
    asyncio.run(serve_poller(settings, settle_heap=settle_heap))


__all__ = ["Held", "PollerOptions", "PollerProcess", "fair_share", "heartbeat_and_claim", "run_poller", "serve_poller"]
