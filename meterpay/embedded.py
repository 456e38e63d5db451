"""The embedded default: worker and simulator running inside the web process (no Redis needed)."""

from __future__ import annotations

from aiohttp import web


async def worker_ctx(app: web.Application):  # type: ignore[no-untyped-def]
    yield


async def simulator_ctx(app: web.Application):  # type: ignore[no-untyped-def]
    yield
