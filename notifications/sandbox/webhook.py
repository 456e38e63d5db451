"""A local push gateway that receives meterpay's signed webhook and deduplicates by key."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from notifications.sandbox.server import Received, Sandbox, plain_headers
from notifications.webhook import (
    IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_webhook,
)


@dataclass
class WebhookSandbox(Sandbox):
    """Serves POST /push: 401 for a bad or stale signature, 200 {"id"} otherwise."""

    secret: str = ""
    clock: Callable[[], float] = time.time
    _ids: dict[str, str] = field(default_factory=dict, init=False)

    def routes(self) -> list[web.RouteDef]:
        """One receiving endpoint."""
        return [web.post("/push", self._handle)]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = plain_headers(request)
        valid = verify_webhook(
            self.secret, request.headers.get(TIMESTAMP_HEADER, ""),
            request.headers.get(SIGNATURE_HEADER, ""), body, now=self.clock(),
        )
        if not valid:
            self.received.append(Received(request.path, headers, body, {}, False, "bad signature"))
            return web.json_response({"error": "bad signature"}, status=401)
        fault = self.take_fault()
        if fault is not None:
            await self.hold(fault)
            if fault.status is not None:
                refused = Received(request.path, headers, body, {}, False, f"HTTP {fault.status}")
                self.received.append(refused)
                return web.json_response({"error": fault.message}, status=fault.status)
        key = request.headers.get(IDEMPOTENCY_HEADER, "")
        duplicate = key in self._ids
        if not duplicate:
            self._ids[key] = f"push-{len(self._ids) + 1}"
        self.received.append(Received(request.path, headers, body, {}, True, None, duplicate))
        return web.json_response({"id": self._ids[key]})
