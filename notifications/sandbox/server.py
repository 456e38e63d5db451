"""What every HTTP sandbox shares: injected faults, the request log, serving on a free port."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Fault:
    """How to misbehave on the next request(s) that pass the signature check."""

    code: str | None = None  # answer with this provider error code
    message: str = "injected fault"
    status: int | None = None  # answer with this bare HTTP status (e.g. 500) instead
    delay_s: float = 0.0  # hold the answer this long first (beyond the client's timeout)
    per_item: bool = False  # Tencent: report the code per phone number, not for the request


@dataclass(frozen=True)
class Received:
    """One request as the sandbox saw it, and what it made of it."""

    path: str
    headers: dict[str, str]
    body: bytes
    params: dict[str, Any]
    accepted: bool  # signature valid and a success answer given
    error: str | None = None  # the provider error code answered, if any
    duplicate: bool = False  # accepted, but the provider's dedup swallowed it


@dataclass
class Sandbox:
    """Base for a provider sandbox: subclasses add routes in `routes()`."""

    received: list[Received] = field(default_factory=list, init=False)
    url: str = field(default="", init=False)
    _faults: deque[Fault] = field(default_factory=deque, init=False)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    def fail(self, fault: Fault, times: int = 1) -> None:
        """Misbehave as `fault` says on the next `times` authenticated requests."""
        self._faults.extend([fault] * times)

    def take_fault(self) -> Fault | None:
        """The fault for the current request, if one is queued."""
        return self._faults.popleft() if self._faults else None

    @property
    def delivered(self) -> list[Received]:
        """Requests that the provider would have turned into a message to a person."""
        return [r for r in self.received if r.accepted and not r.duplicate]

    @property
    def rejected(self) -> list[Received]:
        """Requests answered with an error."""
        return [r for r in self.received if not r.accepted]

    def record(
        self, request: web.Request, body: bytes, params: dict[str, Any], accepted: bool,
        error: str | None = None, duplicate: bool = False,
    ) -> None:
        """Add a request to the log."""
        headers = plain_headers(request)
        entry = Received(request.path, headers, body, params, accepted, error, duplicate)
        self.received.append(entry)

    def routes(self) -> list[web.RouteDef]:
        """The provider's endpoints."""
        raise NotImplementedError

    async def hold(self, fault: Fault) -> None:
        """Sleep for the fault's delay, cut short when the sandbox stops."""
        if fault.delay_s > 0:
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), fault.delay_s)

    @asynccontextmanager
    async def running(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve on host:port (0: a free port); yields the base URL, also kept in `self.url`."""
        app = web.Application()
        app.add_routes(self.routes())
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        self.url = f"http://{host}:{bound}"
        self._stopping.clear()
        try:
            yield self.url
        finally:
            self._stopping.set()
            await runner.cleanup()


def plain_headers(request: web.Request) -> dict[str, str]:
    """Request headers as a plain dict (last value wins)."""
    return {k: v for k, v in request.headers.items()}
