"""Common-area apportionment, worked by hand for each method, and run exactly once per month."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from services import apportionment
from services.errors import NotFound
from services.uow import in_transaction
from store.models import ApportionRun, ApportionShare
from tests.charges.support import MARCH, balance, books_ok, build_world, meter_month


async def _group(sessions, w, method, ratios=None, collection="deduct", members=None):
    spec = dict(code="corridor", name="Corridor lights", master_meter_id=w.master, method=method,
                collection=collection,
                members=members or [dict(room_id=r, ratio=x) for r, x in zip(w.rooms, ratios or ["0"] * len(w.rooms))])
    return await in_transaction(sessions, lambda s: apportionment.create_group(s, w.site_id, spec, actor="staff"))


async def _run(sessions, w):
    return await in_transaction(sessions, lambda s: apportionment.run_apportionment(s, w.site_id, MARCH))


async def _charged(sessions, w):
    return [1000_00 - await balance(sessions, w.site_id, f"wallet:{a}") for a in w.accounts]


async def test_by_ratio_the_odd_fen_goes_to_the_largest_remainder(sessions):
    # Master: 100.01 kWh at 1.00 = 10001 fen; ratios 2:3:5 -> 2000.2, 3000.3, 5000.5 fen.
    # Floors 2000 + 3000 + 5000 = 10000; the one fen left goes to the .5 remainder.
    w = await build_world(sessions)
    await meter_month(sessions, w.master, 1_000_000, 100_010)
    await _group(sessions, w, "ratio", ["2", "3", "5"])
    await _run(sessions, w)
    assert await _charged(sessions, w) == [2000, 3000, 5001]
    assert await balance(sessions, w.site_id, "revenue:common:electricity") == 10001


async def test_by_area_the_parts_follow_the_square_metres(sessions):
    # 100.00 kWh = 10000 fen over 10.5 + 20 + 31.5 = 62 m2: 1693.55, 3225.81, 5080.65 fen.
    # Floors sum to 9998; the two fen go to .81 and .65: 1693, 3226, 5081.
    w = await build_world(sessions, areas=("10.50", "20.00", "31.50"))
    await meter_month(sessions, w.master, 1_000_000, 100_000)
    await _group(sessions, w, "area")
    await _run(sessions, w)
    assert await _charged(sessions, w) == [1693, 3226, 5081]


async def test_by_usage_each_room_pays_in_proportion_to_its_own_meter(sessions):
    # Subs used 1, 2 and 4 kWh (their own 100 + 200 + 400 fen are debited by ingest).
    # 10000 fen x 1/7, 2/7, 4/7 = 1428.57, 2857.14, 5714.29 -> floors 9999, +1 to .57: 1429, 2857, 5714.
    w = await build_world(sessions)
    await meter_month(sessions, w.master, 1_000_000, 100_000)
    for meter, used in zip(w.meters, (1000, 2000, 4000)):
        await meter_month(sessions, meter, 5_000, used)
    await _group(sessions, w, "usage")
    await _run(sessions, w)
    assert await _charged(sessions, w) == [100 + 1429, 200 + 2857, 400 + 5714]


async def test_a_vacant_member_share_is_recorded_but_charged_to_nobody(sessions):
    w = await build_world(sessions, areas=("20.00", "30.00"))
    await meter_month(sessions, w.master, 1_000_000, 100_000)
    members = [dict(room_id=w.rooms[0], ratio="1"), dict(room_id=w.rooms[1], ratio="1"),
               dict(room_id=w.master_room, ratio="2")]  # the plant room: nobody lives there
    await _group(sessions, w, "ratio", members=members)
    await _run(sessions, w)
    assert await _charged(sessions, w) == [2500, 2500]
    async with sessions() as s:
        shares = list(await s.scalars(select(ApportionShare).order_by(ApportionShare.id)))
    assert [(x.amount_fen, x.account_id) for x in shares] == [(2500, w.accounts[0]), (2500, w.accounts[1]), (5000, None)]


async def test_running_a_month_twice_splits_and_charges_once(sessions):
    w = await build_world(sessions)
    await meter_month(sessions, w.master, 1_000_000, 100_010)
    await _group(sessions, w, "ratio", ["2", "3", "5"])
    first = await _run(sessions, w)
    again = await _run(sessions, w)
    assert (first.groups, first.deducted, again.groups, again.skipped) == (1, 3, 0, 1)
    assert await _charged(sessions, w) == [2000, 3000, 5001]
    async with sessions() as s:
        assert len(list(await s.scalars(select(ApportionRun)))) == 1
    await books_ok(sessions)


async def test_a_group_needs_a_master_meter_of_its_site(sessions):
    w = await build_world(sessions, areas=("20.00",))
    spec = dict(code="g", name="g", master_meter_id=w.meters[0], method="ratio", members=[dict(room_id=w.rooms[0])])
    with pytest.raises(NotFound):
        await in_transaction(sessions, lambda s: apportionment.create_group(s, w.site_id, spec, actor="staff"))
