"""Per-gateway command executors: each gateway runs its own queue, concurrently with the others.

A gateway's RS485 bus carries one request at a time (devices.hub.BusHub serialises it), so
commands for different gateways must not wait for each other, and a bus must not sit idle
while the database records the last command. A `GatewayLane` therefore:

- claims its gateway's next due commands in one transaction, before its backlog runs dry, but
  only what its buses can start soon (`window_per_bus + claim_ahead` per bus): a killed poller
  strands a handful, not a batch;
- holds unstarted claims on a short lease (`hold_s`) that it renews while they wait, so the
  claims of a lane killed without a clean stop come back within `hold_s`, not the full claim
  lease (one stranded credit would hold back every later purchase of its meter); a command
  whose lease ran out while it waited in the backlog is dropped, to be claimed again, never run
  on a stale claim. A started command keeps the lease it started with: one poller drives a
  gateway, and after a crash that command too comes back the sooner;
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
from dataclasses import dataclass, replace
from datetime import timedelta

from devices.commands import Command, CommandExecutor
from devices.hub import BusHub
from devices.sample import MeterRef
from services.meter_commands import DbCommandStore, GroupCommit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaneOptions:
    window_per_bus: int = 4  # commands in flight per bus (distinct meters); the hub still sends one at a time
    claim_batch: int = 32  # most commands a gateway claims per transaction, and holds unstarted
    interval_s: float = 1.0  # how often idle gateways are checked for due commands
    backoff_s: float = 5.0
    backoff_max_s: float = 3600.0
    claim_ahead: int = 8  # per bus, startable commands claimed beyond one window (the refill while a claim runs)
    hold_s: float = 10.0  # lease of unstarted claims, renewed while they wait (capped by the store's claim_s)


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

    @property
    def hold_s(self) -> float:
        return min(self.options.hold_s, self.store.claim_s)

    async def run(self) -> None:
        """Until cancelled: claim, start what the window allows, renew what waits, wait for a finish or a nudge."""
        loop = asyncio.get_running_loop()
        next_claim = 0.0  # after a short claim (nothing more due), claim again only after the interval
        next_renew = 0.0
        try:
            while True:
                if self.wake.is_set():
                    self.wake.clear()
                    next_claim = 0.0
                limit = self._claim_limit()
                if limit > 0 and loop.time() >= next_claim:
                    waiting = bool(self.backlog)
                    got = await self._claim(limit)
                    next_claim = loop.time() + self.options.interval_s if len(got) < limit else 0.0
                    if not waiting:  # the oldest claim waiting is this one: renew it a third of its lease on
                        next_renew = loop.time() + self.hold_s / 3
                self._start_ready()
                if self._claim_limit() > 0 and loop.time() >= next_claim:
                    continue  # what just started left room: refill before waiting
                if self.backlog and loop.time() >= next_renew:
                    await self._renew()
                    next_renew = loop.time() + self.hold_s / 3
                if self.inflight:
                    timeout = max(0.0, next_renew - loop.time()) if self.backlog else None
                    await asyncio.wait(self.inflight, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                else:  # idle: CommandLanes wakes this lane when its gateway has something due
                    await self.wake.wait()
        finally:
            await self._stop()

    def _claim_limit(self) -> int:
        """How many to claim now: 0 while the backlog can still refill every bus's window, else enough
        for `window_per_bus + claim_ahead` startable meters per bus (never over `claim_batch` held)."""
        busy = {c.target for c in self.inflight.values()}
        ready = len({c.target for c in self.backlog} - busy)  # one meter's commands start one at a time
        buses = len({c.target.port for c in (*self.backlog, *self.inflight.values())}) or 1
        if ready > self.options.window_per_bus * buses:
            return 0
        want = (self.options.window_per_bus + self.options.claim_ahead) * buses - ready
        return max(0, min(want, self.options.claim_batch - len(self.backlog)))

    async def _claim(self, limit: int) -> list[Command]:
        try:
            got = await self.store.claim(self.executor.clock(), limit, {self.gateway}, lease_s=self.hold_s)
        except Exception:  # noqa: BLE001 - a database blip: try again after the interval
            log.exception("claiming commands for gateway %s failed", self.gateway)
            await asyncio.sleep(self.options.interval_s)
            return []
        mine = {c.id for c in (*self.backlog, *self.inflight.values())}
        self.backlog.extend(c for c in got if c.id not in mine)  # a lease that ran out under us: not twice
        return got

    async def _renew(self) -> None:
        """Extend the lease of the commands still waiting to start; drop those whose claim is lost
        (it ran out, or the row was settled elsewhere)."""
        now = self.executor.clock()
        until = now + timedelta(seconds=self.hold_s)
        live = [c for c in self.backlog if c.next_attempt_at is None or c.next_attempt_at > now]
        try:
            renewed = await self.store.renew(live, now, until)
        except Exception:  # noqa: BLE001 - the leases may run out: those commands are claimed again
            log.warning("renewing %d claimed command(s) of %s failed", len(live), self.gateway, exc_info=True)
            return
        self.backlog = collections.deque(replace(c, next_attempt_at=until) for c in self.backlog if c.id in renewed)

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
