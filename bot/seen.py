"""Remember which WeChat deliveries were answered, so a redelivery gets the same reply once more.

WeChat redelivers a message up to three times when it gets no answer within 5 s. The store is
behind a small Protocol so several processes can share one (e.g. Redis: SET NX EX to claim,
SET XX to settle, GET to read); the in-memory one is bounded in size and age.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

DEFAULT_TTL_S = 60.0  # WeChat's retries span ~15 s; a minute leaves room for clock jitter


class SeenStore(Protocol):
    """Claim a delivery key once; settle it with the reply; duplicates read that reply."""

    async def claim(self, key: str) -> bool:
        """True for the first delivery of `key` (now pending); False for a duplicate."""
        ...

    async def settle(self, key: str, reply: str) -> None:
        """Record the reply given to the first delivery (may be "success")."""
        ...

    async def reply(self, key: str, timeout_s: float) -> str | None:
        """The settled reply, waiting up to `timeout_s` while pending; None if still pending."""
        ...


@dataclass
class _Entry:
    expires_at: float
    reply: str | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)


class InMemorySeenStore:
    """A bounded, expiring SeenStore for one process (the oldest keys go first when full)."""

    def __init__(
        self,
        max_keys: int = 50_000,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._max_keys = max_keys
        self._ttl_s = ttl_s
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    def _live(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at <= self._clock():
            del self._entries[key]
            return None
        return entry

    def _evict(self) -> None:
        now = self._clock()
        while self._entries:
            oldest_key, oldest = next(iter(self._entries.items()))
            if len(self._entries) <= self._max_keys and oldest.expires_at > now:
                break
            del self._entries[oldest_key]

    async def claim(self, key: str) -> bool:
        if self._live(key) is not None:
            return False
        self._entries[key] = _Entry(self._clock() + self._ttl_s)
        self._evict()
        return True

    async def settle(self, key: str, reply: str) -> None:
        entry = self._live(key)
        if entry is None:
            return
        entry.reply = reply
        entry.settled.set()

    async def reply(self, key: str, timeout_s: float) -> str | None:
        entry = self._live(key)
        if entry is None:
            return None
        if entry.reply is None and timeout_s > 0:
            try:
                await asyncio.wait_for(entry.settled.wait(), timeout_s)
            except TimeoutError:
                return None
        return entry.reply
