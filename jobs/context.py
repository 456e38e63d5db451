"""What every job needs, opened once per worker (arq on_startup or the in-process runner)."""

from __future__ import annotations

from typing import Any

import aiohttp

from jobs import wiring
from jobs.channels import build_channels
from meterpay.settings import Settings
from store.db import make_engine, make_sessionmaker


async def open_context(ctx: dict[str, Any], settings: Settings) -> None:
    """Fill ctx with sessions, an HTTP client and the channels; keys already present are kept."""
    ctx.setdefault("settings", settings)
    if "sessions" not in ctx:
        engine = make_engine(settings.database_url)
        ctx["_engine"] = engine
        ctx["sessions"] = make_sessionmaker(engine)
    if "channels" not in ctx:
        http = aiohttp.ClientSession()
        ctx["_http"] = http
        ctx["channels"] = build_channels(settings, http)
    await wiring.open_contributed(ctx)


async def close_context(ctx: dict[str, Any]) -> None:
    """Close what open_context opened."""
    await wiring.close_contributed(ctx)
    http = ctx.pop("_http", None)
    if http is not None:
        await http.close()
    engine = ctx.pop("_engine", None)
    if engine is not None:
        await engine.dispose()
