"""Alembic environment: the URL comes from DATABASE_URL (or the config), never from alembic.ini."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from store.db import make_engine
from store.ledger_guard import include_object
from store.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.attributes.get("url") or os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///meterpay.db")


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True,
                      include_object=include_object(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


async def _online() -> None:
    engine = make_engine(_url())
    async with engine.connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_online())
