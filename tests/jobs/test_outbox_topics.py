"""Rows of a topic no job carries out (a retired one, like meter_command before commands were
claimed straight from meter_commands) never crowd the rows that count out of a relay sweep."""

from __future__ import annotations

from datetime import datetime, timezone

from services import outbox
from services.uow import in_transaction

AT = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


async def test_a_sweep_passes_over_rows_of_a_retired_topic(sessions):
    async def write(s):  # type: ignore[no-untyped-def]
        await outbox.write_many(s, "meter_command", [(f"cmd:{i}", {"command_id": i}, AT) for i in range(600)])
        await outbox.write(s, "cutoff_warning:1:L3:c1", "notify", {"account_id": 1}, AT)
    await in_transaction(sessions, write)
    async with sessions() as s:
        due = await outbox.pending(s, AT, limit=500)
    assert [(r.key, r.topic) for r in due] == [("cutoff_warning:1:L3:c1", "notify")]
