"""The monitor's per-room state: the level alerting itself trips; shared site reads lag but never drift."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from admin.monitor import RoomFilter, SiteStates, cells_by_id, monitor_page, state_counts
from admin.room_state import level_state, room_cells
from billing import alerts
from billing.money import Money
from services import wallets
from services.alerting import load_state, site_config
from services.meter_io import mark_lost
from services.uow import in_transaction
from store.db import make_read_engine, make_sessionmaker
from store.models import Account, Meter, Site


@pytest.fixture
async def reads(db_url, sessions):  # type: ignore[no-untyped-def]
    """Sessions for reading as the panel reads: on SQLite without the write lock (admin.readdb)."""
    if not db_url.startswith("sqlite"):
        yield sessions
        return
    engine = make_read_engine(db_url)
    yield make_sessionmaker(engine)
    await engine.dispose()


def test_a_balance_is_at_the_most_severe_level_it_is_at_or_below():
    levels = (5000, 2000, 0)
    assert [level_state(b, levels) for b in (5001, 5000, 2001, 2000, 1, 0, -1)] == [
        "normal", "alert1", "alert1", "alert2", "alert2", "alert3", "arrears"]
    assert level_state(100, (9000, 6000, 3000, 1000)) == "alert3"  # a fourth level shows as the third colour


def test_the_level_is_the_one_billing_alerts_trips_from_a_fresh_state():
    config = alerts.AlertConfig(levels=(alerts.AlertLevel("A", Money(12_00)), alerts.AlertLevel("B", Money(3_00)),
                                        alerts.AlertLevel("C", Money(0), announces_cutoff=True)))
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    thresholds = tuple(lv.threshold.fen for lv in config.levels)
    for fen in range(-50, 1500, 7):
        state, _ = alerts.evaluate(alerts.AlertState("1"), Money(fen), config, now)
        tripped = [i for i, ls in enumerate(state.levels, start=1) if ls.tripped]
        expected = "arrears" if fen < 0 else f"alert{tripped[-1]}" if tripped else "normal"
        assert level_state(fen, thresholds) == expected, fen


async def _cell(sessions, site_id: int, room_id: int):  # type: ignore[no-untyped-def]
    async with sessions() as s:
        site = await s.get(Site, site_id)
        return (await cells_by_id(s, site, [room_id]))[0]


async def test_the_monitor_shows_the_level_alerting_recorded_for_the_account(sessions, world):
    """Site levels from settings["alerts"], the account's own first threshold: the room's state is
    always the most severe level alerting has tripped (and persisted) for the account."""
    a = world.a

    async def configure(s):  # type: ignore[no-untyped-def]
        site = await s.get(Site, a.site)
        site.settings = {**(site.settings or {}), "alerts": {"levels": [
            {"name": "L1", "threshold_fen": 80_00}, {"name": "L2", "threshold_fen": 30_00},
            {"name": "L3", "threshold_fen": 0, "announces_cutoff": True}]}}
        (await s.get(Account, a.account)).alert_settings = {"thresholds_fen": {"L1": 120_00}}

    await in_transaction(sessions, configure)
    seen = []
    # 100.00 -> 90 (own L1 at 120) -> 50 -> 20 (L2) -> 0 (L3) -> 40 -> 200 (normal again)
    for kind, fen in (("refund", 10_00), ("refund", 40_00), ("refund", 30_00), ("refund", 20_00),
                      ("recharge", 40_00), ("recharge", 160_00)):
        move = wallets.refund if kind == "refund" else wallets.recharge
        await in_transaction(sessions, lambda s, m=move, f=fen: m(s, a.account, Money(f), uuid.uuid4().hex))
        async with sessions() as s:
            acc = await s.get(Account, a.account)
            site = await s.get(Site, a.site)
            config = site_config(site, acc)
            recorded = load_state(acc.id, acc.alert_state)
            tripped = [i for i, lv in enumerate(config.levels, start=1) if recorded.level(lv.name).tripped]
            expected = f"alert{tripped[-1]}" if tripped else "normal"
            cell = (await cells_by_id(s, site, [a.room]))[0]
            everyone = {c.id: c for c in await room_cells(s, site)}
        assert cell.state == expected == everyone[a.room].state, (cell.balance_fen, recorded)
        seen.append(cell.state)
    assert seen == ["alert1", "alert1", "alert2", "alert3", "alert1", "normal"]


async def test_shared_site_reads_are_replaced_not_patched_so_they_lag_but_never_drift(sessions, reads, world):
    """Whatever changes (payments, a meter going quiet, a relay cut), a shared read taken after
    the change equals a fresh read of every room; before that, pages still show fresh cells."""
    a, states = world.a, SiteStates(max_age_s=0.2, wait_after_s=30)
    shared = (states, reads)

    async with reads() as s:
        site = await s.get(Site, a.site)
        first = await monitor_page(s, site, RoomFilter(), shared)  # the first read: waited for
    assert {c.id: c.state for c in first.cells} == {a.room: "normal", a.vacant_room: "vacant"}
    assert first.counts == {"normal": 1, "vacant": 1}

    await in_transaction(sessions, lambda s: wallets.refund(s, a.account, Money(60_00), uuid.uuid4().hex))
    await in_transaction(sessions, lambda s: s.execute(update(Meter).where(Meter.id == a.meter).values(
        last_seen_at=datetime.now(timezone.utc) - timedelta(hours=2), online=True)))
    await in_transaction(sessions, lambda s: mark_lost(s, datetime.now(timezone.utc), 600))
    async with reads() as s:
        site = await s.get(Site, a.site)
        page = await monitor_page(s, site, RoomFilter(), shared)  # within max age: the same read...
        assert page.counts == {"normal": 1, "vacant": 1}
        cell = next(c for c in page.cells if c.id == a.room)  # ...but the cells on the page are read fresh
        assert (cell.state, cell.balance_fen, cell.link) == ("alert1", 40_00, "lost")

    await asyncio.sleep(0.25)
    async with reads() as s:
        site = await s.get(Site, a.site)
        await state_counts(s, site, RoomFilter(), shared)  # too old: a new read starts in the background
    for _ in range(100):
        async with reads() as s:
            site = await s.get(Site, a.site)
            if await state_counts(s, site, RoomFilter(), shared) == {"alert1": 1, "vacant": 1}:
                break
        await asyncio.sleep(0.05)
    async with reads() as s:
        site = await s.get(Site, a.site)
        lost = await monitor_page(s, site, RoomFilter(link="lost"), shared)
        assert [c.id for c in lost.cells] == [a.room, a.vacant_room]  # rooms 101 and 102: both meters quiet
        assert await states.cells(reads, site) == await room_cells(s, site)

    await in_transaction(sessions, lambda s: s.execute(update(Meter).where(Meter.id == a.meter).values(
        relay_closed=False)))
    await asyncio.sleep(0.25)
    for _ in range(100):
        async with reads() as s:
            site = await s.get(Site, a.site)
            if (await state_counts(s, site, RoomFilter(), shared)).get("cutoff") == 1:
                break
        await asyncio.sleep(0.05)
    async with reads() as s:
        site = await s.get(Site, a.site)
        assert await states.cells(reads, site) == await room_cells(s, site)
        assert [c.id for c in (await monitor_page(s, site, RoomFilter(state="cutoff"), shared)).cells] == [a.room]
    await states.close()
