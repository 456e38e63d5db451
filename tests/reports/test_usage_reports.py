"""Report figures come from the roll-ups and agree with sums computed straight from the raw readings."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from billing.money import round_half_up
from services.reports import meter_series, monthly_report, site_days, site_year
from services.rollups import roll_up, roll_up_all
from services.uow import in_transaction
from store.models import Reading, RollupMark, UsageDaily, UsageMonthly
from tests.reports.support import (GAP, TARIFF_CHANGE, TOU_V1, TOU_V2, TZ, WINDOWS, build, first, hourly_use, local,
                                   month_range, raw_billing, within)

RATES = ("sharp", "peak", "flat", "valley")


@pytest.fixture
async def history(sessions):
    return await build(sessions)


def rate_of_hour(hour: int) -> str:
    for w in WINDOWS:
        a, b = int(w["start"][:2]), int(w["end"][:2])
        if (a < b and a <= hour < b) or (a > b and (hour >= a or hour < b)):
            return w["rate"]
    raise AssertionError(hour)


def expected_fen(qty: int, price: str) -> int:
    return round_half_up(Decimal(qty) * Decimal(price) * 100 / 1000)


async def test_the_monthly_report_matches_the_raw_readings_across_a_tariff_change(sessions, history):
    raws = await raw_billing(sessions, history.tou_meter)
    march = [r for r in raws if within(r, *month_range(2026, 3))]
    assert len(march) == len(raws)  # every interval of the month lies inside it
    split = dict.fromkeys(RATES, 0)
    cost = 0
    for r in march:
        if r.taken_at - r.from_at > timedelta(hours=1):  # the outage: split by time over the windows
            assert (r.from_at, r.taken_at) == GAP
            split = {k: split[k] + v for k, v in zip(RATES, r.rate_split)}
            cost += r.amount_fen
            continue
        rate = rate_of_hour(r.from_at.astimezone(TZ).hour)
        split[rate] += r.quantity
        spec = TOU_V2 if r.from_at >= TARIFF_CHANGE else TOU_V1
        assert expected_fen(r.quantity, spec["prices"][rate]) == r.amount_fen
        cost += r.amount_fen
    qty = sum(hourly_use(i) for i in range(31 * 24))
    async with sessions() as s:
        report = await monthly_report(s, history.site, date(2026, 3, 1))
    [room] = [row for row in report.rows if row.room_id == history.rooms[0]]
    got = room.usage["electricity"]
    assert (got.quantity, got.cost_fen) == (qty, cost) == (sum(r.quantity for r in march), sum(r.amount_fen for r in march))
    assert {k: getattr(got, k) for k in RATES} == split
    assert got.readings == len(march)
    water = await raw_billing(sessions, history.water_meter)
    assert room.usage["water"].quantity == sum(r.quantity for r in water) == sum(200 + k * 7 for k in range(31))
    assert room.usage["water"].cost_fen == sum(expected_fen(r.quantity, "3.00") for r in water)
    assert report.total.usage["electricity"].quantity == qty
    assert room.prev["electricity"] == 0 and room.mom("electricity") is None


async def test_a_reading_that_spans_days_is_shared_among_them_by_duration(sessions, history):
    raws = await raw_billing(sessions, history.tou_meter)
    [gap] = [r for r in raws if r.from_at == GAP[0]]
    hours = {date(2026, 3, 20): 14, date(2026, 3, 21): 24, date(2026, 3, 22): 13}
    async with sessions() as s:
        rows = {d.day: d for d in await s.scalars(select(UsageDaily).where(UsageDaily.meter_id == history.tou_meter))}
    for day, h in hours.items():
        lo, hi = local(day.year, day.month, day.day), local(day.year, day.month, day.day) + timedelta(days=1)
        whole = sum(r.quantity for r in raws if r is not gap and within(r, lo, hi))
        share = rows[day].quantity - whole
        assert abs(share - gap.quantity * h / 51) <= 1
    assert sum(rows[d].quantity for d in hours) - sum(
        r.quantity for r in raws if r is not gap and within(r, local(2026, 3, 20), local(2026, 3, 23))) == gap.quantity
    for day, row in rows.items():
        if day not in hours and row.day.month == 3:
            lo = local(day.year, day.month, day.day)
            assert row.quantity == sum(r.quantity for r in raws if within(r, lo, lo + timedelta(days=1)))
            assert row.quantity == row.sharp + row.peak + row.flat + row.valley


async def test_a_year_with_a_meter_replacement_sums_both_meters(sessions, history):
    raws = await raw_billing(sessions, history.replaced_meter)
    year = [r for r in raws if within(r, local(2025, 1, 1), local(2026, 1, 1))]
    old = [r for r in year if r.epoch == 1]
    new = [r for r in year if r.epoch == 2]
    assert old and new and min(r.from_at for r in new) >= local(2025, 7, 1)
    async with sessions() as s:
        [(label, u)] = [(p.label, p.usage) for p in await meter_series(s, history.replaced_meter, "year",
                                                                        date(2025, 1, 1), date(2026, 1, 1))]
        months = await meter_series(s, history.replaced_meter, "month", date(2025, 1, 1), date(2026, 1, 1))
        jan = await monthly_report(s, history.site, date(2026, 1, 1))
    assert label == "2025" and u.quantity == sum(r.quantity for r in year)
    assert u.cost_fen == sum(expected_fen(r.quantity, "1.00") for r in year)
    assert [p.label for p in months] == [f"2025-{m:02d}" for m in range(1, 13)]
    for m, p in enumerate(months, start=1):
        assert p.usage.quantity == sum(r.quantity for r in raws if within(r, *month_range(2025, m)))
    [room] = [row for row in jan.rows if row.room_id == history.rooms[1]]
    ly = sum(r.quantity for r in raws if within(r, *month_range(2025, 1)))
    dec = sum(r.quantity for r in raws if within(r, *month_range(2025, 12)))
    now = sum(r.quantity for r in raws if within(r, *month_range(2026, 1)))
    assert (room.usage["electricity"].quantity, room.prev["electricity"], room.last_year["electricity"]) == (now, dec, ly)
    assert room.yoy("electricity") is not None


async def test_rolling_up_again_changes_nothing(sessions, history):
    async with sessions() as s:
        before = await s.scalar(select(func.sum(UsageDaily.quantity)))
    assert await roll_up_all(sessions) == 0
    assert (await in_transaction(sessions, lambda s: roll_up(s))).folded == 0
    async with sessions() as s:
        assert await s.scalar(select(func.sum(UsageDaily.quantity))) == before
        for meter in (history.tou_meter, history.water_meter, history.replaced_meter):
            days = await s.scalar(select(func.sum(UsageDaily.quantity)).where(UsageDaily.meter_id == meter))
            months = await s.scalar(select(func.sum(UsageMonthly.quantity)).where(UsageMonthly.meter_id == meter))
            raw = await s.scalar(select(func.sum(Reading.quantity)).where(
                Reading.meter_id == meter, Reading.verdict.in_(("billed", "rollover"))))
            assert days == months == raw


async def test_a_reading_committed_late_below_the_watermark_is_still_folded(sessions, history):
    async with sessions() as s:
        top = await s.scalar(select(func.max(Reading.id)))
    after = local(2026, 4, 1) + timedelta(hours=1)

    def row(rid, at, qty):
        return Reading(id=rid, meter_id=history.tou_meter, epoch=1, taken_at=at, total=0, verdict="billed",
                       quantity=qty, rate_split=[0, 0, qty, 0], amount_fen=qty, from_at=at - timedelta(minutes=1))

    async def add(rows):
        async def go(s):
            s.add_all(rows)
        await in_transaction(sessions, go)

    await add([row(top + 3, after, 7)])  # ids top+1, top+2 still "in flight"
    res = await in_transaction(sessions, lambda s: roll_up(s))
    assert res.gaps == 1 and res.last_id == top + 3
    await add([row(top + 1, after + timedelta(hours=1), 11)])
    res = await in_transaction(sessions, lambda s: roll_up(s))
    assert res.folded == 1 and res.gaps == 1
    async with sessions() as s:
        april = await s.scalar(select(UsageDaily.quantity).where(UsageDaily.meter_id == history.tou_meter,
                                                                 UsageDaily.day == date(2026, 4, 1)))
        mark = await s.get(RollupMark, "usage")
    assert april == 18 and mark is not None and mark.gaps[0][:2] == [top + 2, top + 2]


async def test_site_charts_read_days_and_both_years(sessions, history):
    async with sessions() as s:
        days = await site_days(s, history.site, date(2026, 3, 1))
        year = await site_year(s, history.site, 2026)
    assert len(days["electricity"]) == 31 and len(days["water"]) == 31
    assert year["electricity"]["last"][0] > 0 and year["electricity"]["this"][2] > 0
    assert first(2026, 3) == date(2026, 3, 1)
