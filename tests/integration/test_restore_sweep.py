"""The restore safety net: a paid account's meter comes back on even when the relay mirror is stale."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from services import relay
from services.meter_reconcile import restore_paid_meters
from services.uow import in_transaction
from store.models import MeterCommand
from tests.integration.conftest import build_site

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


async def _confirmed_command(sessions, meter_id: int, kind: str, key: str) -> None:
    async def go(s):
        cmd = await relay.queue_command(s, meter_id, kind, key, actor="system", now=NOW)
        cmd.state = "confirmed"  # the meter read back off; a stale reading then left relay_closed True
    await in_transaction(sessions, go)


async def test_a_paid_account_cut_off_by_the_platform_gets_a_restore_even_if_the_mirror_says_on(sessions):
    site = await build_site(sessions, {"1": {"relay_closed": True}})
    await _confirmed_command(sessions, site.meters["1"], "relay_open", f"auto-off:{site.meters['1']}:x")
    queued = await in_transaction(sessions, lambda s: restore_paid_meters(s, NOW))
    assert [(c.kind, c.state) for c in queued] == [("relay_close", "queued")]
    assert await in_transaction(sessions, lambda s: restore_paid_meters(s, NOW)) == []  # once


async def test_a_staff_cut_off_and_an_unpaid_account_are_left_alone(sessions):
    site = await build_site(sessions, {"1": {}, "2": {}}, credit_fen=0)
    await _confirmed_command(sessions, site.meters["1"], "relay_open", "staff-off:1")
    await _confirmed_command(sessions, site.meters["2"], "relay_open", f"auto-off:{site.meters['2']}:x")
    assert await in_transaction(sessions, lambda s: restore_paid_meters(s, NOW)) == []
    async with sessions() as s:
        assert len(list(await s.scalars(select(MeterCommand)))) == 2
