"""Polling the field from the database: the fleet of gateways and meters, and one runtime that drives it.

`MeterRuntime` = a devices.Poller feeding the ingest sink, one command lane per gateway
(services.command_lanes: gateways run their queues concurrently, each bus stays serial, commands
go ahead of polls on the poller's bus hubs) on the database command store, and a periodic
`mark_lost`. It runs wherever a process owns the gateways (the embedded demo, a worker).

Gateway addressing (a transparent RS485-to-TCP gateway): downlink n of a gateway listens on
TCP `gateway.port + n - 1` of `gateway.host`. The demo overrides endpoints in memory instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices.driver import BusEndpoint, BusProtocol
from devices.errors import NotSupported
from devices.hub import BusHub
from devices.poller import Poller, PollPolicy
from devices.profiles import ACREL_DDSY1352, DLT645_SINGLE_PHASE, PROFILES, WATER_VALVE, Profile
from devices.sample import MeterRef
from services import command_wake
from services.command_lanes import CommandLanes, LaneOptions
from services.meter_commands import DbCommandStore
from services.meter_io import ReadingSink, mark_lost
from services.meter_reconcile import restore_paid_meters
from services.uow import in_transaction
from store.models import Gateway, Meter
from store.types import utcnow

log = logging.getLogger(__name__)
BUS_PROTOCOLS: frozenset[str] = frozenset({"modbus_rtu_tcp", "modbus_tcp", "dlt645_tcp"})
BusKey = tuple[str, int]  # gateway code, downlink


@dataclass(frozen=True, slots=True)
class FleetMeter:
    """One polled meter as the runtime (and the demo simulator) needs it."""

    meter_id: int
    gateway: str
    port: int
    address: str
    protocol: BusProtocol
    profile: Profile
    billing_side: str
    relay_closed: bool
    last_total: int
    base_rates: tuple[int, int, int, int] | None
    purchase_count: int
    meter_balance_fen: int | None
    gateway_host: str | None
    gateway_tcp_port: int | None


def profile_for(model: str, utility: str, protocol: str) -> Profile:
    """The register map for a meter model (`acrel-ddsy1352` or `acrel_ddsy1352`), else a fitting default."""
    key = model.strip().lower().replace("-", "_")
    if key in PROFILES:
        return PROFILES[key]
    if protocol == "dlt645_tcp":
        return DLT645_SINGLE_PHASE
    return WATER_VALVE if utility == "water" else ACREL_DDSY1352


async def load_fleet(session: AsyncSession, gateways: Collection[str] | None = None) -> list[FleetMeter]:
    """Every meter behind a wired (non-MQTT) gateway, optionally only the named gateways."""
    stmt = select(Meter, Gateway).join(Gateway, Gateway.id == Meter.gateway_id).order_by(Gateway.code, Meter.port, Meter.id)
    if gateways is not None:
        stmt = stmt.where(Gateway.code.in_(list(gateways)))
    out = []
    for m, gw in (await session.execute(stmt)).all():
        protocol = m.protocol if m.protocol in BUS_PROTOCOLS else gw.protocol
        if gw.protocol == "mqtt" or protocol not in BUS_PROTOCOLS:
            continue  # MQTT DTUs report on their own (services.meter_mqtt)
        out.append(FleetMeter(m.id, gw.code, m.port, m.address, protocol, profile_for(m.model, m.utility, protocol),  # type: ignore[arg-type]
                              m.billing_side, m.relay_closed, m.last_total or m.base_total or 0,
                              tuple(m.base_rates) if m.base_rates else None,  # type: ignore[arg-type]
                              m.purchase_count or 0, m.meter_balance_fen, gw.host, gw.port))
    return out


def db_endpoints(fleet: list[FleetMeter]) -> dict[BusKey, BusEndpoint]:
    """Endpoints from the gateway rows (host, first TCP port + downlink - 1)."""
    out = {}
    for f in fleet:
        if f.gateway_host and f.gateway_tcp_port:
            out[(f.gateway, f.port)] = BusEndpoint(f.gateway, f.port, f.gateway_host, f.gateway_tcp_port + f.port - 1, f.protocol)
    return out


def poll_targets(fleet: list[FleetMeter], endpoints: Mapping[BusKey, BusEndpoint]) -> list[tuple[BusEndpoint, str, Profile]]:
    """(bus, address, profile) for the poller; meters whose bus has no endpoint are left out."""
    return [(endpoints[(f.gateway, f.port)], f.address, f.profile) for f in fleet if (f.gateway, f.port) in endpoints]


@dataclass(frozen=True)
class RuntimeOptions:
    policy: PollPolicy = PollPolicy()
    command_interval_s: float = 1.0  # how often idle gateways are checked for due commands
    command_window: int = 4  # commands in flight per bus (distinct meters), so the bus never waits on the DB
    command_claim_batch: int = 32  # commands a gateway claims per transaction
    command_backoff_s: float = 5.0
    command_backoff_max_s: float = 3600.0
    lost_after_s: float = 600.0  # no reading for this long: the meter is lost
    lost_check_s: float = 60.0
    restore_check_s: float = 60.0  # the restore safety net (services.meter_reconcile)


class MeterRuntime:
    """Poller + command executor + lost-meter sweep for one set of buses; start() / stop()."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], targets: list[tuple[BusEndpoint, str, Profile]],
                 options: RuntimeOptions = RuntimeOptions()) -> None:
        self.sessions, self.options = sessions, options
        self.sink = ReadingSink.for_sessions(sessions)
        self.poller = Poller(targets, self.sink, options.policy)
        gateways = {bus.gateway for bus, _, _ in targets}
        self.store = DbCommandStore(sessions, gateways=gateways)
        self.commands = CommandLanes(self.store, gateways, self._hub, LaneOptions(
            options.command_window, options.command_claim_batch, options.command_interval_s,
            options.command_backoff_s, options.command_backoff_max_s))
        self.executor = self.commands.executor
        self._tasks: list[asyncio.Task[None]] = []
        self._gateway_codes: dict[int, str] = {}  # gateway id -> code, for wake-ups
        self._look_again = False
        self._looking: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def _hub(self, ref: MeterRef) -> BusHub:
        try:
            return self.poller.hub(ref.gateway, ref.port)
        except KeyError as ex:  # a meter added after start: retried with backoff until polled here
            raise NotSupported(f"bus {ref.gateway}/{ref.port} is not driven by this process") from ex

    async def start(self) -> None:
        async with self.sessions() as session:
            self._gateway_codes = dict((await session.execute(select(Gateway.id, Gateway.code).where(
                Gateway.code.in_(sorted(self.commands.lanes))))).all())
        await self.poller.start()
        self.commands.start()
        self._unsubscribe = command_wake.subscribe(self.wake)
        engine = self.sessions.kw.get("bind")
        self._tasks = [asyncio.create_task(self._every(self.options.lost_check_s, self._mark_lost), name="lost meters"),
                       asyncio.create_task(self._every(self.options.restore_check_s, restore_paid_meters),
                                           name="restore sweep")]
        if engine is not None:
            self._tasks.append(asyncio.create_task(command_wake.listen(engine, self.wake), name="command wake-ups"))

    def wake(self, gateway_ids: frozenset[int]) -> None:
        """Commands were queued for these gateways: nudge their lanes now (unknown: look which)."""
        for gid in gateway_ids:
            code = self._gateway_codes.get(gid)
            if code is not None:
                self.commands.nudge(code)
        if command_wake.ANY in gateway_ids:
            if self._looking is not None and not self._looking.done():
                self._look_again = True
            else:
                self._looking = asyncio.get_running_loop().create_task(self._look())

    async def _look(self) -> None:
        """Wake the idle lanes whose gateway has a command due (one query for all), again if asked meanwhile."""
        while True:
            self._look_again = False
            idle = [g for g, lane in self.commands.lanes.items() if lane.idle]
            try:
                for code in await self.store.due_gateways(self.executor.clock(), idle) if idle else ():
                    self.commands.nudge(code)
            except Exception:  # noqa: BLE001 - the lanes' own interval looks again
                log.warning("looking for due commands after a wake-up failed", exc_info=True)
            if not self._look_again:
                return

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        tasks = [*self._tasks, *([self._looking] if self._looking else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.commands.stop()
        await self.poller.stop()

    async def _mark_lost(self, session: AsyncSession, now: datetime) -> list[int]:
        return await mark_lost(session, now, self.options.lost_after_s)

    async def _every(self, interval_s: float, job: Callable[[AsyncSession, datetime], Awaitable[object]]) -> None:
        """Run `job` in its own transaction every `interval_s`; a failure is logged and retried next time."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await in_transaction(self.sessions, lambda s: job(s, utcnow()))
            except Exception:  # noqa: BLE001 - periodic: the next round tries again
                log.exception("periodic %s failed", getattr(job, "__name__", job))
