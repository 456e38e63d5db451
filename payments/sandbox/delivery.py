"""What the sandboxes share: serving an aiohttp app on loopback, and POSTing notifies."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp import web


@dataclass(frozen=True)
class Delivery:
    """One notify POST and what the merchant answered (status -1: connection failed)."""

    url: str
    status: int
    content_type: str
    body: bytes


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Start ``app`` on host:port (0 = any free port); returns the runner and the base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    return runner, f"http://{host}:{bound_port}"


async def post(session: aiohttp.ClientSession, url: str, headers: Mapping[str, str],
               body: bytes) -> Delivery:
    """POST one notify; a refused connection is a Delivery too (providers just retry later)."""
    try:
        async with session.post(url, data=body, headers=dict(headers)) as resp:
            return Delivery(url, resp.status, resp.content_type, await resp.read())
    except aiohttp.ClientError:
        return Delivery(url, -1, "", b"")


async def deliver(session: aiohttp.ClientSession, url: str, headers: Mapping[str, str],
                  body: bytes, *, times: int = 1, concurrently: bool = False,
                  delay_s: float = 0.0) -> list[Delivery]:
    """Send the same notify ``times`` times, one after another or all at once."""
    if delay_s:
        await asyncio.sleep(delay_s)
    if concurrently:
        return list(await asyncio.gather(*(post(session, url, headers, body)
                                           for _ in range(times))))
    return [await post(session, url, headers, body) for _ in range(times)]
