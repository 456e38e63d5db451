"""Per-gateway command executors: each gateway runs its own queue, concurrently with the others.

A gateway's RS485 bus carries one request at a time (devices.hub.BusHub serialises it), so
commands for different gateways must not wait for each other, and a bus must not sit idle
while the database records the last command. A `GatewayLane` therefore:

- claims its gateway's next `claim_batch` due commands in one transaction, before its backlog
  runs dry (the claim lease keeps every other executor off them; a command whose lease ran out
  while it waited in the backlog is dropped, to be claimed again, never run on a stale claim);
- keeps up to `window_per_bus` commands in flight per bus, never two for one meter (so one
  meter's commands still run in order, and each still reads back before it writes); the bus
  queue stays full while a command waits for the database;
- records outcomes through one `GroupCommit` shared by all lanes: the `sent` marks and results
  of every command finishing at about the same time go in one transaction.

An idle lane does not poll: `CommandLanes` looks once per interval for gateways with something
due (one cheap query for all of them) and wakes only those lanes.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass

from devices.commands import Command, CommandExecutor
from devices.hub import BusHub
from devices.sample import MeterRef
from services.meter_commands import DbCommandStore, GroupCommit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaneOptions:
    window_per_bus: int = 4  # commands in flight per bus (distinct meters); the hub still sends one at a time
    claim_batch: int = 32  # commands claimed per transaction, per gateway
    interval_s: float = 1.0  # how often idle gateways are checked for due commands
    backoff_s: float = 5.0
    backoff_max_s: float = 3600.0


class GatewayLane:
    """One gateway's command queue: claims in batches, a window of commands in flight per bus."""

    def __init__(self, gateway: str, store: DbCommandStore, executor: CommandExecutor, options: LaneOptions) -> None:
        self.gateway, self.store, self.executor, self.options = gateway, store, executor, options
        self.backlog: collections.deque[Command] = collections.deque()
        self.inflight: dict[asyncio.Task[Command], Command] = {}
        self.wake = asyncio.Event()
        self.wake.set()  # look once at start
        self.executed = 0

    def nudge(self) -> None:
        self.wake.set()

    @property
    def idle(self) -> bool:
        return not self.backlog and not self.inflight

    async def run(self) -> None:
        """Until cancelled: claim, start what the window allows, wait for a finish or a nudge."""
        loop = asyncio.get_running_loop()
        next_claim = 0.0  # after a short claim (nothing more due), claim again only after the interval
        try:
            while True:
                if self.wake.is_set():
                    self.wake.clear()
                    next_claim = 0.0
                if len(self.backlog) <= self._low_water() and loop.time() >= next_claim:
                    got = await self._claim()
                    next_claim = loop.time() + self.options.interval_s if len(got) < self.options.claim_batch else 0.0
                self._start_ready()
                if self.inflight:
                    await asyncio.wait(self.inflight, return_when=asyncio.FIRST_COMPLETED)
                else:  # idle: CommandLanes wakes this lane when its gateway has something due
                    await self.wake.wait()
        finally:
            await self._stop()

    def _low_water(self) -> int:
        buses = len({c.target.port for c in (*self.backlog, *self.inflight.values())}) or 1
        return self.options.window_per_bus * buses

    async def _claim(self) -> list[Command]:
        try:
            got = await self.store.claim(self.executor.clock(), self.options.claim_batch, {self.gateway})
        except Exception:  # noqa: BLE001 - a database blip: try again after the interval
            log.exception("claiming commands for gateway %s failed", self.gateway)
            await asyncio.sleep(self.options.interval_s)
            return []
        mine = {c.id for c in (*self.backlog, *self.inflight.values())}
        self.backlog.extend(c for c in got if c.id not in mine)  # a lease that ran out under us: not twice
        return got

    def _start_ready(self) -> None:
        """Start backlog commands in order while their bus has room and their meter has none in flight."""
        busy: set[MeterRef] = {c.target for c in self.inflight.values()}
        per_bus = collections.Counter(c.target.port for c in self.inflight.values())
        waiting: collections.deque[Command] = collections.deque()
        now = self.executor.clock()
        while self.backlog:
            command = self.backlog.popleft()
            if command.next_attempt_at is not None and command.next_attempt_at <= now:
                continue  # its claim ran out while it waited here: another executor may hold it now
            if command.target in busy or per_bus[command.target.port] >= self.options.window_per_bus:
                waiting.append(command)
                continue
            busy.add(command.target)
            per_bus[command.target.port] += 1
            task = asyncio.create_task(self._execute(command), name=f"command {command.id}")
            self.inflight[task] = command
            task.add_done_callback(self._finished)
        self.backlog = waiting

    def _finished(self, task: asyncio.Task[Command]) -> None:
        self.inflight.pop(task, None)
        self.executed += 1

    async def _execute(self, command: Command) -> Command:
        try:
            return await self.executor.execute(command)
        except Exception:  # noqa: BLE001 - its claim runs out and it is tried again then
            log.exception("command %s on gateway %s failed unexpectedly", command.id, self.gateway)
            return command

    async def _stop(self) -> None:
        for task in list(self.inflight):
            task.cancel()
        await asyncio.gather(*self.inflight, return_exceptions=True)
        unstarted, self.backlog = list(self.backlog), collections.deque()
        try:
            await self.store.release(unstarted, self.executor.clock())
        except Exception:  # noqa: BLE001 - their claim lease runs out instead
            log.warning("could not hand back %d claimed command(s) of %s", len(unstarted), self.gateway)


class CommandLanes:
    """A lane per gateway sharing one executor and one group writer; start() / stop() / nudge()."""

    def __init__(self, store: DbCommandStore, gateways: Collection[str], router: Callable[[MeterRef], BusHub],
                 options: LaneOptions = LaneOptions()) -> None:
        if store.group is None:
            store.group = GroupCommit(store.save_many)
        self.store, self.options = store, options
        self.executor = CommandExecutor(store, router, options.backoff_s, options.backoff_max_s)
        self.lanes = {g: GatewayLane(g, store, self.executor, options) for g in sorted(gateways)}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [asyncio.create_task(lane.run(), name=f"commands {g}") for g, lane in self.lanes.items()]
        self._tasks.append(asyncio.create_task(self._watch(), name="due commands watch"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.store.group is not None:
            await self.store.group.close()

    def nudge(self, gateway: str | None = None) -> None:
        """Something was queued: look now rather than at the next interval."""
        for code, lane in self.lanes.items():
            if gateway is None or code == gateway:
                lane.nudge()

    async def _watch(self) -> None:
        """Every interval: wake the idle lanes whose gateway has a command due (one query for all)."""
        while True:
            await asyncio.sleep(self.options.interval_s)
            idle = [g for g, lane in self.lanes.items() if lane.idle]
            if not idle:
                continue
            try:
                due = await self.store.due_gateways(self.executor.clock(), idle)
            except Exception:  # noqa: BLE001 - the next interval looks again
                log.exception("looking for due meter commands failed")
                continue
            for gateway in due:
                self.lanes[gateway].nudge()
