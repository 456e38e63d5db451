"""Apportionment: worked examples per method, and properties that hold for any group."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.apportion import (
    ApportionError,
    Member,
    Method,
    apportion,
    energy_shares,
    largest_remainder,
    split_by_weights,
)
from billing.money import Money


def amounts(parts) -> dict[str, int]:
    return {p.member_id: p.amount.fen for p in parts}


def test_equal_ratios_give_the_odd_fen_to_the_smallest_member_id():
    # 10000 fen / 3 = 3333.33 each; floors sum to 9999; the one fen left has a three-way tie
    # on remainder 1/3 and goes to "A", the smallest id -- whatever order members are listed in.
    members = [Member("C", ratio=Decimal(1)), Member("A", ratio=Decimal(1)),
               Member("B", ratio=Decimal(1))]
    parts = apportion(Money(10000), members, Method.RATIO)
    assert [p.member_id for p in parts] == ["C", "A", "B"]
    assert amounts(parts) == {"A": 3334, "B": 3333, "C": 3333}


def test_area_split_gives_leftover_fen_to_the_largest_remainders():
    # 12345 fen over 30 + 45.5 + 24.5 = 100 m2:
    #   A 12345 x 30/100   = 3703.5    -> 3703, remainder .5
    #   B 12345 x 45.5/100 = 5616.975  -> 5616, remainder .975
    #   C 12345 x 24.5/100 = 3024.525  -> 3024, remainder .525
    # floors sum to 12343, 2 fen left: B (.975) then C (.525). A stays at 3703.
    members = [Member("A", area_m2=Decimal(30)), Member("B", area_m2=Decimal("45.5")),
               Member("C", area_m2=Decimal("24.5"))]
    assert amounts(apportion(Money(12345), members, Method.AREA)) == {
        "A": 3703, "B": 5617, "C": 3025}


def test_usage_split_follows_each_sub_meters_own_usage():
    # 5701 fen over 1200 + 3400 + 0 + 400 = 5000 Wh:
    #   A 5701 x .24 = 1368.24, B 5701 x .68 = 3876.68, C 0, D 5701 x .08 = 456.08
    # floors sum to 5700; the last fen goes to B (.68). C used nothing and pays nothing.
    members = [Member("A", usage=1200), Member("B", usage=3400), Member("C", usage=0),
               Member("D", usage=400)]
    assert amounts(apportion(Money(5701), members, Method.USAGE)) == {
        "A": 1368, "B": 3877, "C": 0, "D": 456}


def test_the_method_chooses_which_weight_is_used():
    members = [Member("A", ratio=Decimal(1), area_m2=Decimal(3), usage=0),
               Member("B", ratio=Decimal(1), area_m2=Decimal(1), usage=5)]
    assert amounts(apportion(Money(400), members, Method.RATIO)) == {"A": 200, "B": 200}
    assert amounts(apportion(Money(400), members, Method.AREA)) == {"A": 300, "B": 100}
    assert amounts(apportion(Money(400), members, Method.USAGE)) == {"A": 0, "B": 400}


def test_all_zero_weights_split_the_cost_equally():
    # Nobody used anything: 1000 fen / 3 = 333.33 -> 333 each, the odd fen to "A".
    members = [Member("B"), Member("A"), Member("C")]
    assert amounts(apportion(Money(1000), members, Method.USAGE)) == {"A": 334, "B": 333, "C": 333}


def test_a_negative_whole_is_split_as_its_magnitude_and_negated():
    parts = split_by_weights(Money(-10000), [("A", Decimal(1)), ("B", Decimal(1)), ("C", Decimal(1))])
    assert amounts(parts) == {"A": -3334, "B": -3333, "C": -3333}


def test_energy_shares_split_the_masters_energy_exactly():
    # 10000 Wh by usage 1 : 2 -> 3333.33 and 6666.67; the leftover Wh goes to B (.67).
    shares = energy_shares(10000, [Member("A", usage=1), Member("B", usage=2)])
    assert [(s.member_id, s.quantity) for s in shares] == [("A", 3333), ("B", 6667)]


@pytest.mark.parametrize("ids, weights, message", [
    ([], [], "at least one member"),
    (["A", "A"], [Decimal(1), Decimal(1)], "duplicate"),
    (["A", "B"], [Decimal(1), Decimal(-1)], "non-negative"),
    (["A"], [Decimal("NaN")], "non-negative"),
])
def test_groups_that_cannot_be_split_are_refused(ids, weights, message):
    with pytest.raises(ApportionError, match=message):
        largest_remainder(100, ids, weights)


groups = st.lists(
    st.tuples(st.text(alphabet="abcdefgh0123", min_size=1, max_size=4),
              st.integers(min_value=0, max_value=10**6).map(lambda n: Decimal(n) / 100)),
    min_size=1, max_size=30, unique_by=lambda t: t[0],
)
costs = st.integers(min_value=0, max_value=10**10)


@settings(max_examples=300, deadline=None)
@given(cost=costs, group=groups)
def test_parts_always_sum_exactly_to_the_masters_cost(cost, group):
    parts = split_by_weights(Money(cost), group)
    assert sum(p.amount.fen for p in parts) == cost
    assert all(p.amount.fen >= 0 for p in parts)


@settings(max_examples=300, deadline=None)
@given(cost=costs, group=groups, data=st.data())
def test_a_split_is_deterministic_and_ignores_member_order(cost, group, data):
    shuffled = data.draw(st.permutations(group))
    assert split_by_weights(Money(cost), group) == split_by_weights(Money(cost), group)
    assert amounts(split_by_weights(Money(cost), shuffled)) == amounts(
        split_by_weights(Money(cost), group))


@settings(max_examples=300, deadline=None)
@given(cost=costs, group=groups)
def test_each_part_is_within_one_fen_of_its_exact_quota_and_respects_weight_order(cost, group):
    parts = split_by_weights(Money(cost), group)
    total_weight = sum(Fraction(w) for _, w in group)
    for p in parts:
        quota = cost * Fraction(p.weight) / total_weight if total_weight else Fraction(cost, len(group))
        assert abs(p.amount.fen - quota) < 1
    for a in parts:
        for b in parts:
            if a.weight > b.weight:
                assert a.amount.fen >= b.amount.fen
