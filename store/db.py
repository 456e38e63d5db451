"""The async engine and session factory, for SQLite (default, WAL) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Table, event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from store.models import Base


def make_engine(url: str, echo: bool = False) -> AsyncEngine:
    """An engine; on SQLite every transaction takes the write lock up front (BEGIN IMMEDIATE).

    That serialises writers the way SELECT ... FOR UPDATE does on PostgreSQL, so two concurrent
    recharges or refunds on one account cannot both read the same balance.
    """
    if url.startswith("sqlite"):
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
        _sqlite_pragmas(engine)
        return engine
    engine = create_async_engine(url, echo=echo, pool_size=10, max_overflow=20,
                                 connect_args={"server_settings": PG_SETTINGS})
    _replace_closed_connections(engine)
    return engine


# Sent with each connection's start-up (no round trip). The working set is in memory or on SSD,
# where a random page costs about what a sequential one does; at the default 4 the planner
# scanned all of `meters` or `accounts` to find an ingest batch's 500 rows by id.
PG_SETTINGS = {"random_page_cost": "1.1"}


def _replace_closed_connections(engine: AsyncEngine) -> None:
    """A pooled connection the server has closed (a PostgreSQL restart) is replaced at checkout, for free.

    This stands in for `pool_pre_ping`, which costs three round trips per checkout on asyncpg
    (BEGIN, ping, ROLLBACK): asyncpg sees the server's goodbye on an idle socket at once. A
    connection that dies unseen fails its first statement, and `uow.in_transaction` runs the
    unit of work again on a fresh one.
    """
    @event.listens_for(engine.sync_engine, "checkout")
    def _checkout(dbapi_conn, _record, _proxy):  # type: ignore[no-untyped-def]
        if dbapi_conn.driver_connection.is_closed():
            raise DisconnectionError("the server closed this pooled connection")  # the pool connects anew


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_read_engine(url: str) -> AsyncEngine:
    """A read-only SQLite engine whose transactions begin DEFERRED.

    In WAL mode each read still sees one consistent snapshot but takes no write lock, so pages
    that only read (the staff monitor) do not queue behind each other or behind ingest batches.
    """
    engine = create_async_engine(url, connect_args={"timeout": 30}, pool_size=4, max_overflow=4)

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA query_only=ON")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN")

    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def create_all(engine: AsyncEngine) -> None:
    """Create every table directly (tests); production uses alembic (`python app.py migrate`)."""
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)


async def ping(engine: AsyncEngine) -> bool:
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - health check reports, never raises
        return False


def insert_rows_or_ignore(session: Any, model: Any, unique: Sequence[str], returning: str | None = None) -> Any:
    """INSERT ... ON CONFLICT (unique) DO NOTHING on the model's table for the session's database (SQLite or
    PostgreSQL), built once per database kind, for rows given as parameters
    (`returning`: a column to return, e.g. the new row's id; no row when the key existed).

    A Core statement reused as is: no ORM bulk-insert work and no `.values()` to build and
    cache-key on every call (half the client CPU of a one-row insert on a payment's path).
    """
    bind = session.bind
    return _ignoring(bind.dialect.name if bind is not None else "sqlite", model.__table__, tuple(unique), returning)


@cache
def _ignoring(dialect: str, table: Table, unique: tuple[str, ...], returning: str | None) -> Any:
    maker = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = maker(table).on_conflict_do_nothing(index_elements=list(unique))
    return stmt if returning is None else stmt.returning(table.c[returning])


async def admin_sql(url: str, sql: str) -> None:
    """One statement outside a transaction (CREATE / DROP DATABASE for tests and benches)."""
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()
