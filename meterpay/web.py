"""The aiohttp application factory: resources in cleanup contexts, routes from each entrypoint."""

from __future__ import annotations

import logging

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from meterpay.settings import Settings
from store.db import make_engine, make_sessionmaker, ping

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])


async def _database(app: web.Application):  # type: ignore[no-untyped-def]
    engine = make_engine(app[SETTINGS].database_url)
    app[ENGINE] = engine
    app[SESSIONS] = make_sessionmaker(engine)
    yield
    await engine.dispose()


async def healthz(request: web.Request) -> web.Response:
    """Database (and Redis / MQTT when configured) state, as JSON; 503 when the database is down."""
    settings = request.app[SETTINGS]
    body: dict[str, object] = {"database": "ok" if await ping(request.app[ENGINE]) else "down"}
    if settings.redis_url:
        body["redis"] = await _redis_state(settings.redis_url)
    if settings.mqtt_url:
        body["mqtt"] = await _mqtt_state(settings.mqtt_url)
    status = 200 if body["database"] == "ok" else 503
    return web.json_response({"status": "ok" if status == 200 else "degraded", **body}, status=status)


async def _redis_state(url: str) -> str:
    from redis.asyncio import from_url

    client = from_url(url)
    try:
        await client.ping()
        return "ok"
    except Exception:  # noqa: BLE001 - reported, not raised
        return "down"
    finally:
        await client.aclose()


async def _mqtt_state(url: str) -> str:
    import asyncio
    from urllib.parse import urlparse

    u = urlparse(url)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(u.hostname, u.port or 1883), 2)
        writer.close()
        return "ok"
    except (OSError, asyncio.TimeoutError):
        return "down"


def init_app(settings: Settings) -> web.Application:
    """Build the whole web application from settings."""
    app = web.Application(client_max_size=1024 * 1024)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_database)
    app.router.add_get("/healthz", healthz)
    from meterpay import routes
    from meterpay.embedded import mqtt_ctx

    if settings.get("MQTT_BRIDGE", "web") == "web":  # scale-out: one poller runs the bridge instead
        app.cleanup_ctx.append(mqtt_ctx)

    routes.setup(app)
    return app
