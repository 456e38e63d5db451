"""Fee items: proration, due dates, one-time items and idempotency keys, worked by hand."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.fees import (
    Basis,
    Collection,
    FeeError,
    FeeItem,
    Occupancy,
    Recurrence,
    charges_for_period,
)
from billing.money import Money
from billing.periods import Period, add_months, month

RENT = FeeItem("rent", "Rent", Basis.FIXED, Recurrence.MONTHLY, date(2026, 1, 1),
               amount=Money.yuan("1500.00"))
MARCH = month(2026, 3)


def one(item: FeeItem, occupancy: Occupancy, run: Period, area: Decimal | None = None):
    charges = charges_for_period(item, area, occupancy, run)
    assert len(charges) == 1, charges
    return charges[0]


def test_mid_month_move_in_is_prorated_by_days_occupied():
    # Moves in 15 March; March has 31 days; 15..31 March = 17 days.
    # 150000 fen x 17 / 31 = 82258.06 -> 82258 fen (822.58 yuan), due on the move-in day.
    charge = one(RENT, Occupancy("A1", "R101", date(2026, 3, 15)), MARCH)
    assert charge.amount == Money(82258)
    assert (charge.days_charged, charge.days_in_period) == (17, 31)
    assert charge.due_on == date(2026, 3, 15)
    assert charge.key == "fee:rent:R101:A1:2026-03-01/2026-04-01"


def test_a_full_month_is_charged_in_full_on_its_day_of_period():
    item = FeeItem("rent", "Rent", Basis.FIXED, Recurrence.MONTHLY, date(2026, 1, 1),
                   amount=Money.yuan("1500.00"), day_of_period=5)
    charge = one(item, Occupancy("A1", "R101", date(2025, 6, 1)), MARCH)
    assert charge.amount == Money(150000)
    assert charge.due_on == date(2026, 3, 5)


def test_mid_month_move_out_charges_days_up_to_the_day_before_leaving():
    # Leaves on 11 April: occupied 1..10 April = 10 of 30 days.
    # 150000 x 10 / 30 = 50000 fen exactly. Due day 15 is after leaving: moved to 10 April.
    item = FeeItem("rent", "Rent", Basis.FIXED, Recurrence.MONTHLY, date(2026, 1, 1),
                   amount=Money.yuan("1500.00"), day_of_period=15)
    charge = one(item, Occupancy("A1", "R101", date(2025, 1, 1), date(2026, 4, 11)), month(2026, 4))
    assert charge.amount == Money(50000)
    assert charge.due_on == date(2026, 4, 10)


def test_a_half_fen_is_rounded_up_once_per_line():
    # 10.01 yuan/month; moves in 15 Feb 2026 (28 days): 15..28 = 14 days.
    # 1001 x 14 / 28 = 500.5 fen -> 501 fen (half up).
    item = FeeItem("svc", "Service fee", Basis.FIXED, Recurrence.MONTHLY, date(2026, 1, 1),
                   amount=Money.yuan("10.01"))
    assert one(item, Occupancy("A1", "R1", date(2026, 2, 15)), month(2026, 2)).amount == Money(501)


def test_per_area_fee_multiplies_rate_by_area_and_rounds_half_up():
    # 1.65 yuan/m2 x 33.3 m2 = 54.945 yuan = 5494.5 fen -> 5495 fen.
    item = FeeItem("prop", "Property fee", Basis.PER_M2, Recurrence.MONTHLY, date(2026, 1, 1),
                   rate_per_m2=Decimal("1.65"))
    occupancy = Occupancy("A1", "R1", date(2025, 1, 1))
    assert one(item, occupancy, MARCH, Decimal("33.3")).amount == Money(5495)


def test_per_area_fee_is_prorated_with_a_single_rounding():
    # 2.80 yuan/m2 x 37.5 m2 = 105.00 yuan = 10500 fen per month; moves in 15 March:
    # 10500 x 17 / 31 = 5758.06 -> 5758 fen (rounded once, not once for area and again for days).
    item = FeeItem("prop", "Property fee", Basis.PER_M2, Recurrence.MONTHLY, date(2026, 1, 1),
                   rate_per_m2=Decimal("2.80"), collection=Collection.BILL)
    charge = one(item, Occupancy("A1", "R1", date(2026, 3, 15)), MARCH, Decimal("37.5"))
    assert charge.amount == Money(5758)
    assert charge.collection is Collection.BILL


def test_per_area_fee_without_an_area_is_refused():
    item = FeeItem("prop", "Property fee", Basis.PER_M2, Recurrence.MONTHLY, date(2026, 1, 1),
                   rate_per_m2=Decimal("2.80"))
    with pytest.raises(FeeError, match="needs a room area"):
        charges_for_period(item, None, Occupancy("A1", "R1", date(2026, 1, 1)), MARCH)


def test_quarterly_fee_falls_due_once_in_the_month_of_its_due_date():
    # Q1 2026 = 31 + 28 + 31 = 90 days. Moves in 20 Feb: 9 days of Feb + 31 of March = 40 days.
    # 30000 x 40 / 90 = 13333.33 -> 13333 fen, due 20 Feb (the 10th of Q1 was before moving in).
    item = FeeItem("svc", "Service fee", Basis.FIXED, Recurrence.QUARTERLY, date(2026, 1, 1),
                   amount=Money.yuan("300"), day_of_period=10)
    occupancy = Occupancy("A1", "R1", date(2026, 2, 20))
    runs = [month(2026, m) for m in (1, 2, 3)]
    found = [charges_for_period(item, None, occupancy, run) for run in runs]
    assert [len(f) for f in found] == [0, 1, 0]
    assert found[1][0].amount == Money(13333)
    assert found[1][0].period == Period(date(2026, 1, 1), date(2026, 4, 1))


def test_an_item_ending_mid_month_charges_through_its_last_day_inclusive():
    # Active until 20 March inclusive: 20 of 31 days. 150000 x 20 / 31 = 96774.19 -> 96774.
    item = FeeItem("rent", "Rent", Basis.FIXED, Recurrence.MONTHLY, date(2026, 1, 1),
                   amount=Money.yuan("1500.00"), ends_on=date(2026, 3, 20))
    assert one(item, Occupancy("A1", "R1", date(2025, 1, 1)), MARCH).amount == Money(96774)
    assert charges_for_period(item, None, Occupancy("A1", "R1", date(2025, 1, 1)), month(2026, 4)) == []


def test_an_unprorated_item_charges_in_full_for_any_occupied_day():
    item = FeeItem("net", "Internet", Basis.FIXED, Recurrence.MONTHLY, date(2026, 1, 1),
                   amount=Money.yuan("50"), prorate=False)
    assert one(item, Occupancy("A1", "R1", date(2026, 3, 31)), MARCH).amount == Money(5000)


def test_a_one_time_item_is_charged_once_to_whoever_occupies_the_room_that_day():
    item = FeeItem("key", "Key card", Basis.FIXED, Recurrence.ONE_TIME, date(2026, 3, 10),
                   amount=Money.yuan("20"))
    tenant = Occupancy("A1", "R1", date(2026, 3, 1))
    charge = one(item, tenant, MARCH)
    assert (charge.amount, charge.due_on, charge.key) == (Money(2000), date(2026, 3, 10),
                                                          "fee:key:R1:A1:once")
    assert charges_for_period(item, None, tenant, month(2026, 4)) == []
    assert charges_for_period(item, None, Occupancy("A2", "R1", date(2026, 3, 11)), MARCH) == []


def test_no_charge_when_the_room_is_not_occupied_in_the_period():
    gone = Occupancy("A1", "R1", date(2025, 1, 1), date(2026, 3, 1))
    assert charges_for_period(RENT, None, gone, MARCH) == []


def test_rerunning_a_period_raises_the_same_charges_with_the_same_keys():
    occupancy = Occupancy("A1", "R1", date(2026, 3, 15))
    assert charges_for_period(RENT, None, occupancy, MARCH) == charges_for_period(
        RENT, None, occupancy, MARCH)


def test_bad_items_and_occupancies_are_refused():
    with pytest.raises(FeeError):
        FeeItem("a:b", "x", Basis.FIXED, Recurrence.MONTHLY, date(2026, 1, 1))
    with pytest.raises(FeeError):
        FeeItem("a", "x", Basis.FIXED, Recurrence.MONTHLY, date(2026, 1, 1), amount=Money(-1))
    with pytest.raises(FeeError):
        Occupancy("A1", "R1", date(2026, 3, 2), date(2026, 3, 2))


days_2026 = st.integers(min_value=0, max_value=364).map(lambda n: date(2026, 1, 1) + timedelta(n))


@settings(max_examples=200, deadline=None)
@given(move_in=days_2026, stay=st.integers(min_value=1, max_value=400),
       recurrence=st.sampled_from([Recurrence.MONTHLY, Recurrence.QUARTERLY, Recurrence.YEARLY]),
       due_day=st.integers(min_value=1, max_value=40))
def test_monthly_runs_charge_each_occupied_day_exactly_once(move_in, stay, recurrence, due_day):
    item = FeeItem("rent", "Rent", Basis.FIXED, recurrence, date(2025, 1, 1),
                   amount=Money.yuan("1000"), day_of_period=due_day)
    occupancy = Occupancy("A1", "R1", move_in, move_in + timedelta(days=stay))
    runs = [month(2025, 12)]
    while runs[-1].end <= occupancy.move_out:  # the runs cover the whole stay (up to 2028-02-04)
        runs.append(Period(runs[-1].end, add_months(runs[-1].end, 1)))
    charges = [c for run in runs for c in charges_for_period(item, None, occupancy, run)]
    assert len({c.key for c in charges}) == len(charges)
    assert sum(c.days_charged for c in charges) == stay
    assert all(move_in <= c.due_on < occupancy.move_out for c in charges)


@pytest.mark.parametrize("module", ["alerts", "apportion", "fees", "periods", "postpaid"])
def test_the_rule_modules_import_only_the_standard_library_and_billing(module):
    import ast
    import sys
    from pathlib import Path

    source = Path(__file__).parents[2] / "billing" / f"{module}.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    roots = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    roots |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module}
    assert roots - {"billing"} <= set(sys.stdlib_module_names)
