"""Alert policy: levels fire once per crossing, re-arm on top-up, repeat on schedule; other rules."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.alerts import (
    AccountBalance,
    AlertConfig,
    AlertConfigError,
    AlertKind,
    AlertLevel,
    AlertOverride,
    AlertState,
    LinkKind,
    LinkStatus,
    PowerSample,
    abnormal_load,
    above_all_levels,
    cut_off_done,
    daily_digest,
    due_repeats,
    effective_config,
    evaluate,
    link_lost,
    payment_received,
    supply_restored,
)
from billing.money import Money

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=timezone.utc)
DEFAULT = AlertConfig()


def run(balances_yuan: list[str], config: AlertConfig = DEFAULT, state: AlertState | None = None):
    """Feed balances one reading a minute; return the final state and every event key."""
    state = state or AlertState("A1")
    keys: list[str] = []
    for n, yuan in enumerate(balances_yuan):
        state, events = evaluate(state, Money.yuan(yuan), config, T0 + timedelta(minutes=n))
        keys += [e.key for e in events]
    return state, keys


def test_falling_balance_fires_each_level_once_and_a_top_up_re_arms_them():
    _, keys = run(["60", "45", "40", "19", "15", "-1", "-3", "100", "45", "44"])
    assert keys == [
        "low_balance:A1:L1:c1",
        "low_balance:A1:L2:c1",
        "cutoff_warning:A1:L3:c1",
        "low_balance:A1:L1:c2",
    ]


def test_a_balance_exactly_at_a_threshold_fires_it():
    _, keys = run(["50.00"])
    assert keys == ["low_balance:A1:L1:c1"]


def test_a_reading_that_changes_nothing_returns_the_same_state_object():
    state, _ = run(["30"])
    same, events = evaluate(state, Money.yuan("29.99"), DEFAULT, T0)
    assert same is state and events == []


def test_a_plunge_through_all_levels_announces_only_the_most_severe():
    state, keys = run(["60", "-5"])
    assert keys == ["cutoff_warning:A1:L3:c1"]
    # A small top-up to 10 yuan re-arms only the cut-off level; falling to 0 fires it again, alone.
    _, keys = run(["10", "0"], state=state)
    assert keys == ["cutoff_warning:A1:L3:c2"]


def test_the_low_balance_event_carries_balance_threshold_and_kind():
    _, events = evaluate(AlertState("A1"), Money.yuan("19.50"), DEFAULT, T0)
    (event,) = events
    assert (event.kind, event.level, event.balance, event.amount, event.at) == (
        AlertKind.LOW_BALANCE, "L2", Money(1950), Money(2000), T0)


def test_hysteresis_keeps_a_level_tripped_until_the_balance_clears_it():
    config = AlertConfig(hysteresis=Money.yuan(5))
    # 45 trips L1; 52 is not above 50 + 5 so no re-arm and 49 stays silent; 56 re-arms; 48 fires.
    _, keys = run(["45", "52", "49", "56", "48"], config)
    assert keys == ["low_balance:A1:L1:c1", "low_balance:A1:L1:c2"]


def repeating(repeats: int) -> AlertConfig:
    return AlertConfig(levels=(
        AlertLevel("L1", Money.yuan(50), repeats=repeats, repeat_interval_s=3600),
        AlertLevel("L2", Money.yuan(20), repeats=repeats, repeat_interval_s=3600),
    ))


def repeat_keys(state: AlertState, config: AlertConfig, offsets_min: list[int]) -> list[str]:
    keys = []
    for minutes in offsets_min:
        state, events = due_repeats(state, T0 + timedelta(minutes=minutes), config)
        keys += [e.key for e in events]
    return keys


def test_a_level_is_repeated_up_to_its_count_at_its_interval():
    config = repeating(2)
    state, _ = evaluate(AlertState("A1"), Money.yuan(40), config, T0)
    # Sent at 0; repeats due at 60 and 120 min; none at 30 or 61; none after the second repeat.
    assert repeat_keys(state, config, [30, 60, 61, 120, 180, 600]) == [
        "low_balance:A1:L1:c1:r1", "low_balance:A1:L1:c1:r2"]


def test_a_late_sweep_sends_one_repeat_not_a_burst():
    config = repeating(3)
    state, _ = evaluate(AlertState("A1"), Money.yuan(40), config, T0)
    assert repeat_keys(state, config, [600]) == ["low_balance:A1:L1:c1:r1"]


def test_repeats_follow_only_the_most_severe_tripped_level():
    config = repeating(1)
    state, _ = evaluate(AlertState("A1"), Money.yuan(40), config, T0)
    state, _ = evaluate(state, Money.yuan(10), config, T0 + timedelta(minutes=30))
    assert repeat_keys(state, config, [60, 90, 200]) == ["low_balance:A1:L2:c1:r1"]


def test_a_top_up_stops_repeats():
    config = repeating(3)
    state, _ = evaluate(AlertState("A1"), Money.yuan(40), config, T0)
    state, _ = evaluate(state, Money.yuan(80), config, T0 + timedelta(minutes=1))
    assert repeat_keys(state, config, [60, 120]) == []


def test_an_account_override_changes_amounts_and_repeats():
    config = effective_config(DEFAULT, AlertOverride({"L1": Money.yuan(100)}, repeats=2))
    assert [lv.threshold for lv in config.levels] == [Money.yuan(100), Money.yuan(20), Money(0)]
    assert {lv.repeats for lv in config.levels} == {2}
    _, keys = run(["80"], config)
    assert keys == ["low_balance:A1:L1:c1"]
    assert effective_config(DEFAULT, None) is DEFAULT


def test_bad_configurations_are_refused():
    with pytest.raises(AlertConfigError, match="descending"):
        effective_config(DEFAULT, AlertOverride({"L1": Money.yuan(10)}))
    with pytest.raises(AlertConfigError, match="unknown"):
        effective_config(DEFAULT, AlertOverride({"L9": Money.yuan(10)}))
    with pytest.raises(AlertConfigError, match="unique"):
        AlertConfig(levels=(AlertLevel("L1", Money(2)), AlertLevel("L1", Money(1))))


def test_relay_and_payment_events_are_keyed_by_their_command_or_payment():
    cut = cut_off_done("A1", "M7", "cmd:42", "electricity", T0)
    back = supply_restored("A1", "M7", "cmd:43", "water", T0)
    paid = payment_received("A1", "alipay:2026030122001", Money(5000), Money(4200), T0)
    assert (cut.kind, cut.key) == (AlertKind.CUT_OFF, "cut_off:cmd:42")
    assert (back.kind, back.key, dict(back.details)["utility"]) == (
        AlertKind.RESTORED, "restored:cmd:43", "water")
    assert (paid.key, paid.amount, paid.balance) == (
        "payment_received:alipay:2026030122001", Money(5000), Money(4200))


def test_a_link_is_lost_only_after_the_configured_silence_and_once_per_outage():
    config = AlertConfig(lost_after_s=1800)
    seen = T0
    assert link_lost(LinkKind.METER, "M7", seen, seen + timedelta(minutes=30), config) is None
    first = link_lost(LinkKind.METER, "M7", seen, seen + timedelta(minutes=31), config)
    later = link_lost(LinkKind.METER, "M7", seen, seen + timedelta(hours=5), config)
    assert first is not None and later is not None
    assert first.kind is AlertKind.METER_LOST and first.key == later.key
    gateway = link_lost(LinkKind.GATEWAY, "G1", seen, seen + timedelta(hours=1), config)
    assert gateway is not None and gateway.key == f"gateway_lost:G1:{seen.isoformat()}"


@pytest.mark.parametrize("before_w, after_w, gap_s, fires", [
    (80, 1580, 60, True),     # a 1500 W heater switched on within a minute
    (80, 1579, 60, False),    # 1499 W: below the step
    (80, 1580, 301, False),   # too slow to be one switch-on
    (2000, 500, 60, False),   # a drop is not a load step
    (80, 1580, 0, False),     # same instant: a duplicate reading, not a step
])
def test_abnormal_load_is_a_large_power_step_within_one_interval(before_w, after_w, gap_s, fires):
    previous = PowerSample(T0, before_w)
    current = PowerSample(T0 + timedelta(seconds=gap_s), after_w)
    event = abnormal_load("M7", previous, current, DEFAULT)
    assert (event is not None) is fires
    if event is not None:
        assert event.key == f"abnormal_load:M7:{current.at.isoformat()}"
        assert dict(event.details)["step_w"] == "1500"


def test_abnormal_load_needs_a_previous_sample():
    assert abnormal_load("M7", None, PowerSample(T0, 3000), DEFAULT) is None


def test_the_daily_digest_lists_arrears_most_owed_first_and_lost_links_gateways_first():
    balances = [AccountBalance("A1", "101", Money(-500)), AccountBalance("A2", "102", Money(100)),
                AccountBalance("A3", "103", Money(-2000)), AccountBalance("A0", "100", Money(-500))]
    links = [LinkStatus(LinkKind.METER, "M1", T0 - timedelta(hours=2)),
             LinkStatus(LinkKind.METER, "M2", T0 - timedelta(minutes=5)),
             LinkStatus(LinkKind.METER, "M3", None),
             LinkStatus(LinkKind.METER, "M4", T0 - timedelta(hours=9)),
             LinkStatus(LinkKind.GATEWAY, "G1", T0 - timedelta(hours=1))]
    digest = daily_digest("S1", date(2026, 3, 1), balances, links, T0, DEFAULT)
    assert [a.account_id for a in digest.arrears] == ["A3", "A0", "A1"]
    assert digest.total_arrears == Money(3000)
    assert [x.device_id for x in digest.lost] == ["G1", "M3", "M4", "M1"]
    assert digest.lost[-1].silent_s == 7200
    assert digest.key == "digest:S1:2026-03-01" and not digest.is_empty


def test_a_quiet_day_gives_an_empty_digest():
    digest = daily_digest("S1", date(2026, 3, 1), [AccountBalance("A1", "1", Money(0))], [], T0, DEFAULT)
    assert digest.is_empty and digest.total_arrears == Money(0)


@settings(max_examples=300, deadline=None)
@given(balances=st.lists(st.integers(min_value=-10000, max_value=10000), max_size=60),
       hysteresis=st.integers(min_value=0, max_value=1000))
def test_any_balance_walk_fires_each_crossing_at_most_once_and_only_below_its_threshold(
        balances, hysteresis):
    config = AlertConfig(hysteresis=Money(hysteresis))
    thresholds = {lv.name: lv.threshold for lv in config.levels}
    state, keys = AlertState("A1"), []
    for n, fen in enumerate(balances):
        state, events = evaluate(state, Money(fen), config, T0 + timedelta(minutes=n))
        assert len(events) <= 1
        for event in events:
            assert Money(fen) <= thresholds[event.level]
        keys += [e.key for e in events]
        for lv in config.levels:
            if fen <= lv.threshold.fen:
                assert state.level(lv.name).tripped
            if fen > lv.threshold.fen + hysteresis:
                assert not state.level(lv.name).tripped
    assert len(keys) == len(set(keys))


@given(st.integers(-10**6, 10**6), st.lists(st.integers(-10**5, 10**5), min_size=1, max_size=4, unique=True),
       st.integers(0, 5000))
@settings(max_examples=300, deadline=None)
def test_above_all_levels_means_evaluate_changes_nothing_for_an_untripped_account(balance, thresholds, hysteresis):
    """The ingest path skips such accounts without evaluating them: that must be exactly a no-op."""
    levels = tuple(AlertLevel(f"L{i}", Money(t)) for i, t in enumerate(sorted(thresholds, reverse=True)))
    config = AlertConfig(levels, Money(hysteresis))
    state = AlertState("A1")
    if above_all_levels(Money(balance), config):
        assert evaluate(state, Money(balance), config, T0) == (state, [])
    else:
        assert evaluate(state, Money(balance), config, T0)[1]  # some level trips: it is announced
