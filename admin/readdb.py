"""Read-only sessions for the panel's pages, which must not queue behind writers.

store.db starts every SQLite transaction with BEGIN IMMEDIATE (the write lock), which is right
for writes but would make twenty staff reading the monitor wait for each other and for every
ingest batch. Reads here use a second SQLite engine whose transactions begin DEFERRED: in WAL
mode each still sees one consistent snapshot, and none takes the write lock. On PostgreSQL
the application's engine already reads without blocking, so it is used as is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from meterpay.web import SESSIONS
from store.db import make_read_engine

READS = web.AppKey("admin_reads", async_sessionmaker[AsyncSession])


def reads_ctx(url: str) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context for the panel's sub-application: the SQLite read engine, if any."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if not url.startswith("sqlite"):
            yield
            return
        engine = make_read_engine(url)
        app[READS] = async_sessionmaker(engine, expire_on_commit=False)
        yield
        await engine.dispose()

    return ctx


def read_sessions(request: web.Request) -> Callable[[], AsyncSession]:
    """Where reading sessions come from (never the write lock); PostgreSQL: the application's sessions."""
    return request.config_dict.get(READS) or request.config_dict[SESSIONS]


def reads(request: web.Request) -> AsyncSession:
    """A session for reading (never the write lock); PostgreSQL: the application's sessions."""
    return read_sessions(request)()
