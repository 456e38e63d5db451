"""The room monitor's reads: a page of rooms, per-state counts, and the rooms a live stream watches.

Cells shown are always read fresh for the rooms on the page only (admin.room_state). What needs
the whole site — which rooms match a state, link or search filter, where page N starts, how many
rooms are in each state — comes from `SiteStates`: the whole site's cells, read by the same query,
shared by every staff member. It is replaced wholesale by a new read, never patched by the write
paths, so it cannot drift from the database; it can only lag (by max_age_s plus one read while
staff are watching; see SiteStates).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession

from admin.room_state import LINKS, STATES, RoomCell, room_cells
from store.models import Site

__all__ = ["LINKS", "STATES", "MonitorPage", "RoomCell", "RoomFilter", "SiteStates", "cells_by_id",
           "monitor_page", "state_counts"]
PAGE_SIZE = 200
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoomFilter:
    building_id: int | None = None
    floor_level: int | None = None
    state: str | None = None
    link: str | None = None
    q: str = ""
    page: int = 1

    @property
    def key(self) -> tuple[object, ...]:
        """What selects rooms (not the page): the key of a filtered view."""
        return (self.building_id, self.floor_level, self.state if self.state in STATES else None,
                self.link if self.link in LINKS else None, self.q.strip().casefold())

    def matches(self, c: RoomCell) -> bool:
        """All but the state filter (the counts are per state, with the other filters applied)."""
        if self.building_id is not None and c.building_id != self.building_id:
            return False
        if self.floor_level is not None and c.floor_level != self.floor_level:
            return False
        if self.link in LINKS and c.link != self.link:
            return False
        q = self.q.strip().casefold()
        return not q or q in c.search


View = tuple[list[RoomCell], dict[str, int]]  # the matching rooms in order, and rooms per state


class Place(NamedTuple):
    id: int
    name: str


Layout = tuple[list[Place], list[int]]  # buildings, floor levels
Shared = tuple["SiteStates", Callable[[], AsyncSession]]  # the shared states, and sessions to read them with


def _view(cells: list[RoomCell], f: RoomFilter) -> View:
    _, _, state, link, q = f.key
    base = cells if f.building_id is None and f.floor_level is None and link is None and not q else [
        c for c in cells if f.matches(c)]
    counts = dict(Counter(c.state for c in base))
    return ([c for c in base if c.state == state] if state else base), counts


class SiteStates:
    """Every room's cell per site, read again when older than `max_age_s`, shared by all staff.

    Reads happen off the request path: a request that finds the site's read too old starts one
    new read in the background (never two at once) and is answered from the current one, unless
    that is older than `wait_after_s` (nobody looked for a while), when it waits for the new one.
    So while staff are watching, what the monitor lists is at most max_age_s + one read behind,
    and the filtered views of one read (matching rooms, counts) are computed once and shared too.
    """

    MAX_VIEWS = 64

    def __init__(self, max_age_s: float = 2.0, wait_after_s: float | None = None) -> None:
        self.max_age_s = max_age_s
        self.wait_after_s = wait_after_s if wait_after_s is not None else max(10.0, 5 * max_age_s)
        self._reads: dict[int, _Read] = {}
        self._pending: dict[int, asyncio.Task[_Read]] = {}

    async def _read(self, sessions: Callable[[], AsyncSession], site: Site) -> _Read:
        hit = self._reads.get(site.id)
        age = time.monotonic() - hit.at if hit is not None else float("inf")
        if hit is not None and age < self.max_age_s:
            return hit
        task = self._pending.get(site.id)
        if task is None:
            task = asyncio.create_task(self._fetch(sessions, site), name=f"site states {site.id}")
            self._pending[site.id] = task
        if hit is not None and age < self.wait_after_s:
            return hit
        return await asyncio.shield(task)

    async def _fetch(self, sessions: Callable[[], AsyncSession], site: Site) -> _Read:
        try:
            started = time.monotonic()
            async with sessions() as session:
                read = _Read(started, await room_cells(session, site), {})
            self._reads[site.id] = read
            return read
        except Exception:
            old = self._reads.get(site.id)
            if old is None:
                raise  # the request waiting for the first read gets the error
            log.exception("reading the states of site %s failed; the previous read stays", site.id)
            return old
        finally:
            self._pending.pop(site.id, None)

    async def close(self) -> None:
        """Stop reads in flight (the application is shutting down)."""
        tasks = list(self._pending.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def cells(self, sessions: Callable[[], AsyncSession], site: Site) -> list[RoomCell]:
        return (await self._read(sessions, site)).cells

    async def layout(self, sessions: Callable[[], AsyncSession], site: Site) -> Layout:
        """The buildings and floor levels that have rooms, for the filter menus (no query of their own)."""
        read = await self._read(sessions, site)
        if read.layout is None:
            names = {c.building_id: c.building for c in read.cells}
            read.layout = ([Place(i, n) for i, n in sorted(names.items(), key=lambda x: (x[1], x[0]))],
                           sorted({c.floor_level for c in read.cells}))
        return read.layout

    async def view(self, sessions: Callable[[], AsyncSession], site: Site, f: RoomFilter) -> View:
        read = await self._read(sessions, site)
        if f.key not in read.views:
            if len(read.views) >= self.MAX_VIEWS:
                read.views.clear()
            read.views[f.key] = _view(read.cells, f)
        return read.views[f.key]


@dataclass
class _Read:
    at: float  # monotonic time the read started
    cells: list[RoomCell]
    views: dict[tuple[object, ...], View]
    layout: Layout | None = None


@dataclass(frozen=True)
class MonitorPage:
    cells: list[RoomCell]
    counts: dict[str, int]  # by state, other filters applied
    total: int
    page: int
    pages: int

    @property
    def groups(self) -> list[tuple[str, list[RoomCell]]]:
        """The page's cells by building and floor ("A栋 · 3F"), in order."""
        out: list[tuple[str, list[RoomCell]]] = []
        for c in self.cells:
            label = f"{c.building} · {c.floor_level}F"
            if not out or out[-1][0] != label:
                out.append((label, []))
            out[-1][1].append(c)
        return out


async def _site_view(session: AsyncSession, site: Site, f: RoomFilter, states: Shared | None) -> View:
    if states is None:
        return _view(await room_cells(session, site), f)
    return await states[0].view(states[1], site, f)


async def state_counts(session: AsyncSession, site: Site, f: RoomFilter,
                       states: Shared | None = None) -> dict[str, int]:
    """Rooms per balance state (building, floor, link and search filters applied)."""
    return (await _site_view(session, site, f, states))[1]


async def monitor_page(session: AsyncSession, site: Site, f: RoomFilter,
                       states: Shared | None = None) -> MonitorPage:
    """One page of rooms: which rooms from the site's states, their cells read fresh."""
    matching, counts = await _site_view(session, site, f, states)
    total = len(matching)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, f.page), pages)
    chosen = matching[(page - 1) * PAGE_SIZE:page * PAGE_SIZE]
    cells = chosen if states is None else await room_cells(session, site, [c.id for c in chosen])
    return MonitorPage(cells, counts, total, page, pages)


async def cells_by_id(session: AsyncSession, site: Site, room_ids: Sequence[int]) -> list[RoomCell]:
    """The current state of the given rooms (those on a viewer's page), for the live stream."""
    return await room_cells(session, site, room_ids)
