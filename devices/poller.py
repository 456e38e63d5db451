"""Polls every meter of every bus: buses in parallel, per-meter health, dead meters quarantined."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from devices.driver import BusEndpoint, MeterDriver, make_driver
from devices.errors import DeviceError
from devices.hub import POLL, BusHub
from devices.profiles import Profile
from devices.sample import MeterRef, MeterSample

log = logging.getLogger(__name__)
Sink = Callable[[list[MeterSample]], Awaitable[None]]


@dataclass(frozen=True)
class PollPolicy:
    interval_s: float = 60.0  # between two reads of one meter
    retries: int = 1  # extra attempts per poll while the meter is not quarantined
    request_timeout_s: float = 1.0
    frame_gap_s: float = 0.002
    fail_threshold: int = 2  # consecutive failed polls before quarantine
    backoff_s: float = 10.0  # first quarantine probe delay, doubled up to backoff_max_s
    backoff_max_s: float = 600.0
    online_window_s: float = 300.0  # online = a successful read of THIS meter this recently
    batch_size: int = 200
    flush_s: float = 1.0


@dataclass
class MeterHealth:
    """What the poller knows about one meter (never inferred from its gateway's link)."""

    last_ok: float | None = None
    failures: int = 0
    next_due: float = 0.0
    polls: int = 0


POLICY_DEFAULT = PollPolicy()


class Poller:
    """One hub per bus and one polling loop per bus; readings go to `sink` in batches."""

    def __init__(self, meters: list[tuple[BusEndpoint, str, Profile]], sink: Sink, policy: PollPolicy = POLICY_DEFAULT,
                 driver_factory: Callable[[BusEndpoint, dict[str, Profile], float], MeterDriver] = make_driver) -> None:  # fmt: skip
        self.sink, self.policy = sink, policy
        self.meters: dict[BusEndpoint, dict[str, Profile]] = {}
        for bus, address, profile in meters:
            self.meters.setdefault(bus, {})[address] = profile
        self.hubs = {
            (bus.gateway, bus.port): BusHub(bus, driver_factory(bus, profiles, policy.request_timeout_s), policy.request_timeout_s * 1.5, policy.frame_gap_s)
            for bus, profiles in self.meters.items()
        }  # fmt: skip
        self.health = {MeterRef(b.gateway, b.port, a): MeterHealth() for b, ps in self.meters.items() for a in ps}
        self._batch: list[MeterSample] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()

    def hub(self, gateway: str, port: int) -> BusHub:
        return self.hubs[(gateway, port)]

    def is_online(self, ref: MeterRef, now: float | None = None) -> bool:
        last = self.health[ref].last_ok
        return last is not None and (now or time.monotonic()) - last <= self.policy.online_window_s

    def is_quarantined(self, ref: MeterRef) -> bool:
        return self.health[ref].failures >= self.policy.fail_threshold

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._bus_loop(bus)) for bus in self.meters]
        self._tasks.append(asyncio.create_task(self._flush_loop()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(hub.stop() for hub in self.hubs.values()))
        await self.flush()

    async def _bus_loop(self, bus: BusEndpoint) -> None:
        """Round-robin the bus's due meters back to back; the hub keeps it one at a time."""
        refs = [MeterRef(bus.gateway, bus.port, a) for a in self.meters[bus]]
        while True:
            now = time.monotonic()
            due = sorted((r for r in refs if self.health[r].next_due <= now), key=lambda r: self.health[r].next_due)
            if not due:
                await asyncio.sleep(min(self.health[r].next_due for r in refs) - now)
                continue
            for ref in due:
                await self.poll_once(bus, ref)

    async def poll_once(self, bus: BusEndpoint, ref: MeterRef) -> MeterSample | None:
        """Read one meter with retries (one probe only when quarantined); update its health."""
        health, profile = self.health[ref], self.meters[bus][ref.address]
        hub = self.hub(bus.gateway, bus.port)
        attempts = 1 if health.failures >= self.policy.fail_threshold else 1 + self.policy.retries
        health.polls += 1
        last_error: Exception = DeviceError("not attempted")
        for _ in range(attempts):
            try:
                sample = await hub.submit(lambda d: d.read(ref.address, profile), POLL)
            except DeviceError as ex:
                last_error = ex
                continue
            self._record_ok(ref, health)
            await self._add(sample)
            return sample
        self._record_failure(ref, health, last_error)
        return None

    def _record_ok(self, ref: MeterRef, health: MeterHealth) -> None:
        if health.failures >= self.policy.fail_threshold:
            log.info("meter %s answers again after %d failed polls", ref, health.failures)
        health.failures, health.last_ok = 0, time.monotonic()
        health.next_due = health.last_ok + self.policy.interval_s

    def _record_failure(self, ref: MeterRef, health: MeterHealth, error: Exception) -> None:
        health.failures += 1
        over = health.failures - self.policy.fail_threshold
        if over < 0:
            health.next_due = time.monotonic() + self.policy.interval_s
            return
        if over == 0:
            log.warning("meter %s lost (%s); quarantined, probing with backoff", ref, error)
        delay = min(self.policy.backoff_s * 2**over, self.policy.backoff_max_s)
        health.next_due = time.monotonic() + max(delay, self.policy.interval_s)

    async def _add(self, sample: MeterSample) -> None:
        self._batch.append(sample)
        if len(self._batch) >= self.policy.batch_size:
            self._wake.set()

    async def _flush_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.policy.flush_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Hand the pending readings to the sink; on failure they stay for the next flush."""
        batch, self._batch = self._batch, []
        if not batch:
            return
        try:
            await self.sink(batch)
        except Exception:
            log.exception("reading sink failed; keeping %d readings for the next flush", len(batch))
            self._batch[:0] = batch
