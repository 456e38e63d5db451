"""Meter commands with exactly-once effect: read back before acting, confirm by reading back.

A relay or credit command is never blindly re-sent: each attempt first reads the relay state or
purchase counter; a command already in effect is confirmed without writing. Persistence is a
small port (`CommandStore`); the executor holds no state of its own, so it survives restarts.
Run one executor per gateway at a time (the poller's lease) so two never race on one meter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Protocol, TypeVar

from devices.driver import MeterDriver
from devices.errors import DeviceError, MeterRejected
from devices.hub import COMMAND, BusHub
from devices.sample import MeterRef

log = logging.getLogger(__name__)
T = TypeVar("T")
CommandKind = Literal["relay_open", "relay_close", "valve_open", "valve_close", "set_price", "push_credit", "time_sync"]
CommandState = Literal["queued", "sent", "confirmed", "failed", "expired", "cancelled"]
OPEN_STATES = frozenset({"queued", "sent"})
# relay_open trips (power off); valve_open lets water through: both map to "relay closed?"
WANT_CLOSED: dict[str, bool] = {"relay_open": False, "relay_close": True, "valve_open": True, "valve_close": False}
CLOCK_TOLERANCE = timedelta(seconds=5)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class Command:
    """One command for one meter. params: push_credit {amount_fen, purchase_count}; set_price {price_e4}."""

    id: str
    kind: CommandKind
    target: MeterRef
    expires_at: datetime
    params: Mapping[str, Any] = field(default_factory=dict)
    state: CommandState = "queued"
    attempts: int = 0
    next_attempt_at: datetime | None = None  # None: due now
    last_error: str | None = None


class CommandStore(Protocol):
    """Persistence port. A DB store keeps one row per command id and updates it on save."""

    async def due(self, now: datetime, limit: int = 100) -> list[Command]:
        """Commands in state queued/sent with next_attempt_at <= now (or None), oldest first."""
        ...

    async def save(self, command: Command) -> None:
        """Persist the command's new state, attempts, next_attempt_at and last_error by id."""
        ...


class InMemoryCommandStore:
    """The store used in tests and by the simulator demo."""

    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}

    async def add(self, command: Command) -> None:
        self.commands.setdefault(command.id, command)  # the id is the idempotency key

    async def due(self, now: datetime, limit: int = 100) -> list[Command]:
        ready = [c for c in self.commands.values() if c.state in OPEN_STATES and (c.next_attempt_at or now) <= now]
        return ready[:limit]

    async def save(self, command: Command) -> None:
        self.commands[command.id] = command

    async def cancel(self, command_id: str) -> bool:
        """Only a command not yet sent can be cancelled."""
        command = self.commands.get(command_id)
        if command is None or command.state != "queued":
            return False
        self.commands[command_id] = replace(command, state="cancelled")
        return True


class NotYet(Exception):
    """The meter is not ready for this command yet (e.g. an earlier purchase is missing)."""


class CommandExecutor:
    """Runs due commands through the bus hubs (ahead of polls) and records each outcome."""

    def __init__(self, store: CommandStore, router: Callable[[MeterRef], BusHub], backoff_s: float = 5.0,
                 backoff_max_s: float = 3600.0, clock: Callable[[], datetime] = utcnow) -> None:  # fmt: skip
        self.store, self.router, self.clock = store, router, clock
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self._sent_now: set[str] = set()  # ids marked sent during the current attempt

    async def run_due(self) -> list[Command]:
        """One pass over the due commands; returns them in their new state."""
        return [await self.execute(c) for c in await self.store.due(self.clock())]

    async def run_forever(self, interval_s: float = 1.0) -> None:
        while True:
            await self.run_due()
            await asyncio.sleep(interval_s)

    async def execute(self, command: Command) -> Command:
        if command.state not in OPEN_STATES:
            return command
        if self.clock() >= command.expires_at:
            return await self._finish(command, "expired", "expired before the meter confirmed")
        command = replace(command, attempts=command.attempts + 1)
        try:
            confirmed = await STEPS[command.kind](self, command)
        except MeterRejected as ex:
            return await self._finish(command, "failed", str(ex))
        except (DeviceError, NotYet) as ex:
            return await self._retry(command, str(ex) or type(ex).__name__)
        if confirmed:
            return await self._finish(command, "confirmed", None)
        return await self._retry(command, "meter did not read back as commanded")

    async def _call(self, command: Command, op: Callable[[MeterDriver], Awaitable[T]]) -> T:
        return await self.router(command.target).submit(op, COMMAND)

    async def _mark_sent(self, command: Command) -> None:
        """Saved before the write leaves, so a crash in between still reads back first next time."""
        self._sent_now.add(command.id)
        if command.state != "sent":
            await self.store.save(replace(command, state="sent"))

    async def _retry(self, command: Command, error: str) -> Command:
        delay = min(self.backoff_s * 2 ** (command.attempts - 1), self.backoff_max_s)
        state: CommandState = "sent" if command.id in self._sent_now else command.state
        self._sent_now.discard(command.id)
        updated = replace(command, state=state, next_attempt_at=self.clock() + timedelta(seconds=delay), last_error=error)
        await self.store.save(updated)
        return updated

    async def _finish(self, command: Command, state: CommandState, error: str | None) -> Command:
        self._sent_now.discard(command.id)
        done = replace(command, state=state, last_error=error, next_attempt_at=None)
        await self.store.save(done)
        log.info("command %s %s on %s: %s%s", command.id, command.kind, command.target, state, f" ({error})" if error else "")
        return done

    # -- one step function per kind: True = confirmed by reading the meter back --------------
    async def _relay(self, command: Command) -> bool:
        want, address = WANT_CLOSED[command.kind], command.target.address
        if await self._call(command, lambda d: d.read_relay(address)) == want:
            return True
        await self._mark_sent(command)
        await self._call(command, lambda d: d.set_relay(address, want))
        return await self._call(command, lambda d: d.read_relay(address)) == want

    async def _credit(self, command: Command) -> bool:
        address, target = command.target.address, int(command.params["purchase_count"])
        count = await self._call(command, lambda d: d.read_purchase_count(address))
        if count >= target:
            return True  # this purchase (and maybe later ones) is already in the meter
        if count < target - 1:
            raise NotYet(f"meter is at purchase {count}; purchase {target - 1} must land first")
        await self._mark_sent(command)
        await self._call(command, lambda d: d.push_credit(address, int(command.params["amount_fen"]), target))
        return await self._call(command, lambda d: d.read_purchase_count(address)) >= target

    async def _price(self, command: Command) -> bool:
        address, price = command.target.address, int(command.params["price_e4"])
        if await self._call(command, lambda d: d.read_price(address)) == price:
            return True
        await self._mark_sent(command)
        await self._call(command, lambda d: d.set_price(address, price))
        return await self._call(command, lambda d: d.read_price(address)) == price

    async def _time(self, command: Command) -> bool:
        address = command.target.address
        await self._mark_sent(command)
        await self._call(command, lambda d: d.time_sync(address, self.clock()))
        return abs(await self._call(command, lambda d: d.read_clock(address)) - self.clock()) <= CLOCK_TOLERANCE


STEPS: dict[str, Callable[[CommandExecutor, Command], Awaitable[bool]]] = {
    "relay_open": CommandExecutor._relay,
    "relay_close": CommandExecutor._relay,
    "valve_open": CommandExecutor._relay,
    "valve_close": CommandExecutor._relay,
    "push_credit": CommandExecutor._credit,
    "set_price": CommandExecutor._price,
    "time_sync": CommandExecutor._time,
}
