"""Serving the app: the web server, plus (embedded default) the in-process worker and simulator."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from meterpay.heap import settle_startup_heap
from meterpay.settings import Settings
from meterpay.web import init_app

log = logging.getLogger(__name__)


async def serve(settings: Settings, simulate: bool = False, stop: asyncio.Event | None = None,
                settle_heap: bool = False) -> None:
    """Run until cancelled (Ctrl-C) or until `stop` is set; `settle_heap` (the entry point's
    choice): freeze the start-up heap once serving (meterpay.heap)."""
    app = init_app(settings)
    if simulate:
        from meterpay.embedded import simulator_ctx

        app.cleanup_ctx.append(simulator_ctx)
    if settings.embedded_worker and not settings.redis_url:
        from meterpay.embedded import worker_ctx

        app.cleanup_ctx.append(worker_ctx)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=True)
    await site.start()
    log.info("meterpay listening on http://%s:%s", settings.host, settings.port)
    if settle_heap:
        settle_startup_heap()
    try:
        await (stop.wait() if stop else asyncio.Event().wait())
    finally:
        await runner.cleanup()
