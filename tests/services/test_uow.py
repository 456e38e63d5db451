"""uow.in_transaction and the pool after PostgreSQL closed connections (a restart): nothing fails, nothing runs twice."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from services.uow import in_transaction

PIDS = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"


ON_POSTGRES = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # SQLite has no connections to lose


async def _terminate(db_url: str, only: int | None = None) -> None:
    """Close server-side every other connection to the test database (or only `only`), as a restart does."""
    killer = create_async_engine(db_url, poolclass=NullPool)
    try:
        async with killer.connect() as conn:
            pids = [only] if only is not None else list(await conn.scalars(text(PIDS)))
            for pid in pids:
                await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            for _ in range(200):  # until the backends have gone
                if not set(pids) & set(await conn.scalars(text(PIDS))):
                    break
                await asyncio.sleep(0.01)
    finally:
        await killer.dispose()
    await asyncio.sleep(0.05)  # the client's event loop sees the sockets close


async def _backend_pid(session) -> int:  # type: ignore[no-untyped-def]
    return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


@ON_POSTGRES
async def test_a_pooled_connection_the_server_closed_is_replaced_at_checkout(db_url, sessions):
    async with sessions() as s:
        before = await _backend_pid(s)
    await _terminate(db_url)
    ran: list[int] = []

    async def work(session) -> int:  # type: ignore[no-untyped-def]
        ran.append(await _backend_pid(session))
        return ran[-1]

    assert await in_transaction(sessions, work) != before
    assert len(ran) == 1  # the pool handed out a live connection: the work ran once


@ON_POSTGRES
async def test_a_unit_of_work_that_lost_its_connection_before_the_commit_runs_again_on_a_fresh_one(db_url, sessions):
    async with sessions() as s, s.begin():
        await s.execute(text("CREATE TABLE IF NOT EXISTS uow_probe (n int)"))
        await s.execute(text("DELETE FROM uow_probe"))
    pids: list[int] = []

    async def work(session) -> int:  # type: ignore[no-untyped-def]
        pids.append(await _backend_pid(session))
        await session.execute(text("INSERT INTO uow_probe VALUES (1)"))
        if len(pids) == 1:
            await _terminate(db_url, only=pids[0])  # lost mid-transaction: the server rolls it back
        return int((await session.execute(text("SELECT count(*) FROM uow_probe"))).scalar_one())

    try:
        assert await in_transaction(sessions, work) == 1
        assert len(pids) == 2 and pids[0] != pids[1]
        async with sessions() as s:
            assert (await s.execute(text("SELECT count(*) FROM uow_probe"))).scalar_one() == 1  # once, not twice
    finally:
        async with sessions() as s, s.begin():
            await s.execute(text("DROP TABLE uow_probe"))


@ON_POSTGRES
async def test_a_connection_lost_during_the_commit_is_not_retried(db_url, sessions):
    ran: list[int] = []

    async def work(session) -> None:  # type: ignore[no-untyped-def]
        ran.append(await _backend_pid(session))
        session.sync_session.info["uow_probe_pid"] = ran[-1]

    def lose_it(session: Session) -> None:
        pid = session.info.pop("uow_probe_pid", None)
        if pid is not None:  # the commit's outcome is unknown to the client: the caller must decide
            session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

    event.listen(Session, "before_commit", lose_it)
    try:
        with pytest.raises(DBAPIError):
            await in_transaction(sessions, work)
    finally:
        event.remove(Session, "before_commit", lose_it)
    assert len(ran) == 1
