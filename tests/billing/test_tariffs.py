"""Tariff worked examples, computed by hand in the comments."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from billing.money import Money, round_half_up
from billing.pricing import price_interval
from billing.split import split_by_weights
from billing.tariffs import TariffError, TariffVersion, line, parse_tariff

SH = ZoneInfo("Asia/Shanghai")
OLD = datetime(2020, 1, 1, tzinfo=timezone.utc)
TOU = {"kind": "tou", "prices": {"sharp": "1.20", "peak": "1.00", "flat": "0.60", "valley": "0.30"},
       "windows": [{"start": "22:00", "end": "06:00", "rate": "valley"},
                   {"start": "06:00", "end": "10:00", "rate": "flat"},
                   {"start": "10:00", "end": "12:00", "rate": "sharp"},
                   {"start": "12:00", "end": "22:00", "rate": "peak"}]}
TIERS = {"kind": "tiered", "tiers": [{"upto": "200", "price": "0.50"}, {"upto": "400", "price": "0.60"},
                                     {"price": "0.80"}]}


def v(spec, at=OLD, vid=1):
    return TariffVersion(vid, at, parse_tariff(spec))


def test_flat_price_rounds_half_up_once_per_line():
    # 1.005 kWh x 0.85 = 0.85425 yuan = 85.425 fen -> 85 fen; 1.007 kWh -> 85.595 -> 86 fen
    p = price_interval([v({"kind": "flat", "price": "0.85"})], OLD, OLD.replace(hour=1), 1005, SH)
    assert p.amount == Money(85)
    p = price_interval([v({"kind": "flat", "price": "0.85"})], OLD, OLD.replace(hour=1), 1007, SH)
    assert p.amount == Money(86)


def test_tou_across_midnight_is_shared_by_time_without_rate_registers():
    # 20:00 -> 02:00 local: 2 h peak (20-22) + 4 h valley (22-02); 6 kWh by time = 2 kWh + 4 kWh
    # 2 x 1.00 + 4 x 0.30 = 2.00 + 1.20 = 3.20 yuan
    start, end = datetime(2026, 1, 1, 20, tzinfo=SH), datetime(2026, 1, 2, 2, tzinfo=SH)
    p = price_interval([v(TOU)], start, end, 6000, SH)
    assert [(ln.label, ln.quantity, ln.amount.fen) for ln in p.lines] == [("peak", 2000, 200), ("valley", 4000, 120)]
    assert p.amount == Money(320)


def test_tou_prices_each_rate_register_when_the_meter_supplies_them():
    # registers say 1 kWh sharp, 0 peak, 0.5 flat, 3.5 valley: 1.20 + 0.30 + 1.05 = 2.55 yuan
    start, end = datetime(2026, 1, 1, 0, tzinfo=SH), datetime(2026, 1, 2, 0, tzinfo=SH)
    p = price_interval([v(TOU)], start, end, 5000, SH, rates=(1000, 0, 500, 3500))
    assert p.amount == Money(255) and p.rates == (1000, 0, 500, 3500)


def test_tou_windows_must_cover_the_day_exactly_once():
    bad = dict(TOU, windows=TOU["windows"][:-1])
    with pytest.raises(TariffError):
        parse_tariff(bad)


def test_a_tier_crossing_inside_one_interval_is_priced_on_both_sides():
    # 150 kWh used this month already; 100 kWh more: 50 at 0.50 (to 200) + 50 at 0.60
    # = 25.00 + 30.00 = 55.00 yuan
    start, end = datetime(2026, 1, 10, tzinfo=SH), datetime(2026, 1, 11, tzinfo=SH)
    p = price_interval([v(TIERS)], start, end, 100_000, SH, month_used_before=150_000)
    assert [(ln.label, ln.quantity) for ln in p.lines] == [("tier1", 50_000), ("tier2", 50_000)]
    assert p.amount == Money(5500) and p.month_used_after == 250_000


def test_tiers_reset_at_the_local_month_start():
    # Jan 31 12:00 -> Feb 1 12:00 local, 100 kWh: 50 in January on top of 380 (20 at 0.60 + 30 at 0.80)
    # and 50 in February from zero (tier 1, 0.50): 12.00 + 24.00 + 25.00 = 61.00 yuan
    start, end = datetime(2026, 1, 31, 12, tzinfo=SH), datetime(2026, 2, 1, 12, tzinfo=SH)
    p = price_interval([v(TIERS)], start, end, 100_000, SH, month_used_before=380_000)
    assert p.amount == Money(6100) and p.month_used_after == 50_000


def test_a_price_change_inside_one_interval_splits_it_by_time():
    # 10:00 -> 14:00, price 1.00 until 12:00 then 2.00: 4 kWh shared 2 + 2: 2.00 + 4.00 = 6.00 yuan
    change = datetime(2026, 3, 1, 12, tzinfo=SH)
    versions = [v({"kind": "flat", "price": "1.00"}, vid=1), v({"kind": "flat", "price": "2.00"}, at=change, vid=2)]
    p = price_interval(versions, datetime(2026, 3, 1, 10, tzinfo=SH), datetime(2026, 3, 1, 14, tzinfo=SH), 4000, SH)
    assert [(ln.version_id, ln.amount.fen) for ln in p.lines] == [(1, 200), (2, 400)]
    assert p.version_ids == (1, 2)


def test_history_can_be_recomputed_from_the_stored_versions():
    versions = [v(TOU, vid=7)]
    start, end = datetime(2026, 5, 1, 9, tzinfo=SH), datetime(2026, 5, 1, 13, tzinfo=SH)
    assert price_interval(versions, start, end, 3333, SH) == price_interval(versions, start, end, 3333, SH)


def test_float_prices_are_refused():
    with pytest.raises(TariffError):
        parse_tariff({"kind": "flat", "price": 0.85})


def test_splits_always_add_up_to_the_whole():
    assert split_by_weights(10, [1, 1, 1]) == [4, 3, 3]
    assert sum(split_by_weights(-7, [2, 5, 0])) == -7


@settings(max_examples=500, deadline=None)
@given(quantity=st.integers(min_value=-10**12, max_value=10**12),
       price=st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False))
def test_a_line_is_the_decimal_product_rounded_half_up_once(quantity, price):
    # line() prices in integers; it must agree with the rule as written: quantity/1000 x price x 100 fen
    expected = round_half_up(Decimal(quantity) * price * 100 / 1000)
    assert line("flat", quantity, price).amount == Money(expected)


def test_half_a_fen_goes_away_from_zero():
    # 1 Wh at 5.00 yuan/kWh = 0.5 fen -> 1 fen; a credit of the same -> -1 fen
    assert line("flat", 1, Decimal("5.00")).amount == Money(1)
    assert line("flat", -1, Decimal("5.00")).amount == Money(-1)
    assert line("flat", 1, Decimal("4.99")).amount == Money(0)
