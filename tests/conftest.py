"""Shared fixtures: a real database per test (SQLite file, or PostgreSQL in a database of this run's own).

Service tests take the `sessions` fixture and run once on SQLite and once on PostgreSQL. With
CI=true a missing PostgreSQL/Redis/Mosquitto is a failure, not a skip.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from store.db import admin_sql, create_all, make_engine, make_sessionmaker
from store.models import Base

PG_ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
RUN_ID = uuid.uuid4().hex[:8]


def need_service(name: str, reason: str) -> None:
    """Skip a test whose server is absent, except in CI where that is a failure."""
    if IN_CI:
        pytest.fail(f"{name} is required in CI: {reason}")
    pytest.skip(f"{name} not available: {reason}")


async def _pg_admin(sql: str) -> None:
    await admin_sql(PG_ADMIN_URL, sql)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database created for this test run and dropped at its end."""
    name = f"meterpay_test_{RUN_ID}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except Exception as ex:  # noqa: BLE001 - reported as skip/fail below
        need_service("PostgreSQL", str(ex))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    async def _schema() -> None:
        engine = make_engine(url)
        await create_all(engine)
        await engine.dispose()

    asyncio.run(_schema())
    yield url
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/meterpay.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(db_url)
    if db_url.startswith("sqlite"):
        await create_all(engine)
    else:
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)
