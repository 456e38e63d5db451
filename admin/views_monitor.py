"""The room monitor page and its live stream (server-sent events polled from the database)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable

import aiohttp_jinja2
from aiohttp import web

from admin.forms import opt_int
from admin.monitor import LINKS, STATES, RoomFilter, Shared, SiteStates, cells_by_id, monitor_page, state_counts
from admin.readdb import read_sessions
from admin.scope import db, site_of
from admin.security import STAFF
from meterpay.web import SETTINGS

MAX_STREAM_IDS = 500
STREAM_LIFETIME_S = 600  # then the browser reconnects: no connection lives forever
HEARTBEAT_S = 15
COUNTS_EVERY_S = 5  # the per-state counts come from the shared site states (admin.monitor.SiteStates)
ROOM_STATES = web.AppKey("room_states", SiteStates)


def room_states(request: web.Request) -> Shared:
    """The site states all staff share, and the sessions they are read with."""
    return request.config_dict[ROOM_STATES], read_sessions(request)


def states_ctx(max_age_s: float) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context for the panel: the shared site states; reads still in flight stop at shutdown."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[ROOM_STATES] = SiteStates(max_age_s)
        yield
        await app[ROOM_STATES].close()

    return ctx


def _filter(q: dict[str, str] | web.Request) -> RoomFilter:
    query = q.query if isinstance(q, web.Request) else q
    return RoomFilter(building_id=opt_int(query.get("building")), floor_level=opt_int(query.get("floor")),
                      state=query.get("state") or None, link=query.get("link") or None,
                      q=(query.get("q") or "")[:60], page=opt_int(query.get("page")) or 1)


async def monitor(request: web.Request) -> web.StreamResponse:
    f = _filter(request)
    async with db(request) as s:
        site = await site_of(s, request)
        shared = room_states(request)
        page = await monitor_page(s, site, f, shared)
        buildings, levels = await shared[0].layout(shared[1], site)
    return aiohttp_jinja2.render_template("monitor.html", request, {
        "site": site, "page": page, "f": f, "buildings": buildings, "levels": levels, "states": STATES,
        "links": LINKS, "sites": request[STAFF].site_ids})


def interval_s(request: web.Request) -> float:
    return float(request.config_dict[SETTINGS].get("ADMIN_STREAM_INTERVAL_S") or 1.5)


def _ids(raw: str) -> list[int]:
    out = []
    for part in raw.split(",")[:MAX_STREAM_IDS]:
        if part.strip().isdigit():
            out.append(int(part))
    return out


async def stream(request: web.Request) -> web.StreamResponse:
    """Push the rooms whose state changed; state lives in this connection only, the truth in the DB."""
    ids, f = _ids(request.query.get("ids", "")), _filter(request)
    async with db(request) as s:
        site = await site_of(s, request)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    await resp.write(b"retry: 3000\n\n")
    started, pause = time.monotonic(), interval_s(request)
    try:
        await _loop(request, resp, site, ids, f, started, pause)
    except ConnectionResetError:
        pass  # the viewer went away
    return resp


async def _loop(request: web.Request, resp: web.StreamResponse, site, ids: list[int],  # type: ignore[no-untyped-def]
                f: RoomFilter, started: float, pause: float) -> None:
    last: dict[int, dict[str, object]] = {}
    beat, counted, last_counts = started, float("-inf"), None
    while time.monotonic() - started < STREAM_LIFETIME_S:
        if request.transport is None or request.transport.is_closing():
            return  # the viewer left; do not poll for nobody until the next heartbeat
        async with db(request) as s:
            cells = await cells_by_id(s, site, ids)
            counts = None
            if time.monotonic() - counted >= COUNTS_EVERY_S:
                counts, counted = await state_counts(s, site, f, room_states(request)), time.monotonic()
        if counts is not None and counts != last_counts:
            last_counts = counts
            await resp.write(f"event: counts\ndata: {json.dumps(counts)}\n\n".encode())
        changed = [c.as_json() for c in cells if last.get(c.id) != c.as_json()]
        if changed:
            last.update({int(c["id"]): c for c in changed})  # type: ignore[call-overload]
            payload = json.dumps(changed, ensure_ascii=False)
            await resp.write(f"event: rooms\ndata: {payload}\n\n".encode())
            beat = time.monotonic()
        elif time.monotonic() - beat > HEARTBEAT_S:
            await resp.write(b": keep-alive\n\n")
            beat = time.monotonic()
        await asyncio.sleep(pause)
