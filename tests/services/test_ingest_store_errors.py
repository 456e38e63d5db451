"""Ingest writes on the driver's own connection (aiosqlite, asyncpg), past SQLAlchemy; its errors
must still arrive as SQLAlchemy's, or `uow.in_transaction` would not see a lost race to retry."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy.exc import IntegrityError

from services.ingest_store import store_for
from tests.factories import make_site

AT = datetime(2026, 3, 1, tzinfo=timezone.utc)
COLUMNS = ("site_id", "key", "kind", "memo", "created_at")


async def test_a_duplicate_key_from_the_driver_is_sqlalchemys_integrity_error(sessions):
    async with sessions() as s, s.begin():
        kit = await make_site(s)
        store = await store_for(s)
        row = (kit.site.id, "usage:dup", "usage", "metered usage", store.dt(AT))
        await store.insert("ledger_transactions", COLUMNS, [row])
        with pytest.raises(IntegrityError):
            await store.insert("ledger_transactions", COLUMNS, [row])
