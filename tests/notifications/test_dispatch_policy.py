"""The pure dispatch policy: channels, quiet hours, daily caps, one-shot opt-ins, dedup, retries."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from notifications.channel import Message
from notifications.policy import (
    KIND_RULES, RETRY_DELAYS_S, Capabilities, Preferences, Usage, next_attempt, plan, quiet_end_after,
)
from notifications.templates import KINDS

SHANGHAI = ZoneInfo("Asia/Shanghai")
EVERYTHING = Capabilities(kinds={c: KINDS for c in
                                 ("wechat_template", "wechat_subscribe", "sms", "voice", "email", "push")})
DEFAULTS = Preferences()


def at(hour: int, minute: int = 0, day: int = 26) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI)


def msg(kind: str, key: str = "alert:acct42:x:crossing7") -> Message:
    return Message(key=key, kind=kind, locale="zh-CN", to="t", params={})


def when(p, channel):
    return next(d.send_at for d in p.decisions if d.channel == channel)


def test_a_daytime_level_two_warning_goes_by_template_and_sms_at_once():
    p = plan(msg("low_balance_2"), at(14), DEFAULTS, EVERYTHING, Usage())
    assert p.channels == ("wechat_template", "sms")
    assert all(d.send_at == at(14) and d.reason == "now" for d in p.decisions)


def test_at_night_a_warning_sms_waits_for_the_end_of_quiet_hours():
    p = plan(msg("low_balance_2"), at(23, 10), DEFAULTS, EVERYTHING, Usage())
    assert when(p, "wechat_template") == at(23, 10)
    assert when(p, "sms") == at(8, day=27)
    assert [d.reason for d in p.decisions] == ["now", "quiet_hours"]


def test_at_night_a_cut_off_notice_sms_goes_at_once_but_the_call_waits_for_morning():
    p = plan(msg("low_balance_3"), at(23, 10), DEFAULTS, EVERYTHING, Usage())
    assert p.channels == ("wechat_template", "sms", "voice")
    assert when(p, "sms") == at(23, 10)
    assert when(p, "voice") == at(8, day=27)


def test_an_early_morning_call_waits_until_eight_the_same_day():
    p = plan(msg("low_balance_3"), at(6, 30), DEFAULTS, EVERYTHING, Usage())
    assert when(p, "voice") == at(8)


def test_a_cut_off_done_sms_is_not_deferred_at_night():
    p = plan(msg("cutoff_done"), at(2), DEFAULTS, EVERYTHING, Usage())
    assert when(p, "sms") == at(2)


def test_a_verify_code_goes_at_once_at_night():
    p = plan(msg("verify_code"), at(2), DEFAULTS, EVERYTHING, Usage())
    assert p.channels == ("sms",) and when(p, "sms") == at(2)


def test_quiet_hours_follow_the_tenant_preferences():
    prefs = Preferences(quiet_start=time(21), quiet_end=time(7))
    p = plan(msg("low_balance_2"), at(21, 30), prefs, EVERYTHING, Usage())
    assert when(p, "sms") == at(7, day=27)
    assert plan(msg("low_balance_2"), at(7, 0), prefs, EVERYTHING, Usage()).decisions[1].send_at == at(7)


def test_a_daytime_quiet_window_and_no_window_both_work():
    lunch = Preferences(quiet_start=time(12), quiet_end=time(14))
    assert quiet_end_after(at(13), lunch) == at(14)
    assert quiet_end_after(at(14), lunch) is None and quiet_end_after(at(11), lunch) is None
    assert quiet_end_after(at(3), Preferences(quiet_start=time(0), quiet_end=time(0))) is None


def test_a_warning_over_the_daily_sms_cap_goes_by_template_only():
    p = plan(msg("low_balance_2"), at(14), DEFAULTS, EVERYTHING, Usage(sent_today={"sms": 5}))
    assert p.channels == ("wechat_template",)
    assert [(s.channel, s.reason) for s in p.skipped] == [("sms", "rate_limited")]


def test_a_cut_off_notice_is_not_held_back_by_daily_caps():
    usage = Usage(sent_today={"sms": 99, "voice": 99, "wechat_template": 99})
    p = plan(msg("low_balance_3"), at(14), DEFAULTS, EVERYTHING, usage)
    assert p.channels == ("wechat_template", "sms", "voice") and p.skipped == ()


def test_a_tenant_cap_overrides_the_default_cap():
    prefs = Preferences(daily_limits={"sms": 1})
    p = plan(msg("abnormal_load"), at(14), prefs, EVERYTHING, Usage(sent_today={"sms": 1}))
    assert p.channels == ("wechat_template",)


def test_a_subscribe_opt_in_carries_one_warning_beside_the_template():
    caps = Capabilities(kinds=EVERYTHING.kinds, opt_ins={"low_balance_1": 1})
    p = plan(msg("low_balance_1"), at(14), DEFAULTS, caps, Usage())
    assert p.channels == ("wechat_subscribe", "wechat_template")


def test_without_an_opt_in_a_warning_skips_the_subscribe_message():
    p = plan(msg("low_balance_1"), at(14), DEFAULTS, EVERYTHING, Usage())
    assert p.channels == ("wechat_template",)
    assert [(s.channel, s.reason) for s in p.skipped] == [("wechat_subscribe", "no_opt_in")]


def test_a_mini_program_only_tenant_gets_repeated_warnings_by_sms_once_the_opt_in_is_spent():
    kinds = {"wechat_subscribe": KINDS, "sms": KINDS}
    first = plan(msg("low_balance_1", "k1"), at(14), DEFAULTS,
                 Capabilities(kinds, opt_ins={"low_balance_1": 1}), Usage())
    repeat = plan(msg("low_balance_1", "k2"), at(14), DEFAULTS, Capabilities(kinds), Usage())
    assert first.channels == ("wechat_subscribe",)
    assert repeat.channels == ("sms",) and repeat.decisions[0].reason == "fallback"


def test_a_fallback_sms_still_respects_quiet_hours():
    caps = Capabilities({"wechat_subscribe": KINDS, "sms": KINDS})
    p = plan(msg("low_balance_1"), at(23), DEFAULTS, caps, Usage())
    assert p.channels == ("sms",) and when(p, "sms") == at(8, day=27)


def test_a_channel_the_tenant_cannot_be_reached_on_is_skipped():
    caps = Capabilities({"sms": KINDS, "email": KINDS})
    p = plan(msg("low_balance_2"), at(14), DEFAULTS, caps, Usage())
    assert p.channels == ("sms",)
    assert [(s.channel, s.reason) for s in p.skipped] == [("wechat_template", "not_configured")]


def test_a_tenant_can_choose_channels_per_kind_and_opt_out_of_one():
    prefs = Preferences(channels={"receipt": ("email", "sms")}, disabled=frozenset({"sms"}))
    p = plan(msg("receipt"), at(14), prefs, EVERYTHING, Usage())
    assert p.channels == ("email",)


def test_a_message_key_seen_before_is_not_planned_again():
    m = msg("low_balance_2")
    p = plan(m, at(14), DEFAULTS, EVERYTHING, Usage(seen_keys=frozenset({m.key})))
    assert p.decisions == () and [s.reason for s in p.skipped] == ["duplicate"]


def test_each_decision_has_a_delivery_key_unique_per_channel():
    p = plan(msg("low_balance_3", "alert:acct42:level3:crossing7"), at(14), DEFAULTS, EVERYTHING, Usage())
    assert [d.delivery_key for d in p.decisions] == [
        "alert:acct42:level3:crossing7:wechat_template",
        "alert:acct42:level3:crossing7:sms",
        "alert:acct42:level3:crossing7:voice",
    ]


def test_nothing_reachable_gives_an_empty_plan_that_says_why():
    p = plan(msg("low_balance_2"), at(14), DEFAULTS, Capabilities({}), Usage())
    assert p.decisions == () and {s.reason for s in p.skipped} == {"not_configured"}


def test_retries_back_off_30s_2m_10m_1h_then_fail():
    failed = at(14)
    waits = [next_attempt("wechat_template", "low_balance_2", n, failed, True, DEFAULTS) for n in range(1, 6)]
    assert waits[:4] == [failed + timedelta(seconds=s) for s in RETRY_DELAYS_S]
    assert RETRY_DELAYS_S == (30, 120, 600, 3600) and waits[4] is None


def test_a_permanent_failure_is_not_retried():
    assert next_attempt("sms", "low_balance_2", 1, at(14), False, DEFAULTS) is None


def test_a_retry_that_would_land_in_quiet_hours_waits_for_morning():
    assert next_attempt("sms", "low_balance_2", 4, at(21, 30), True, DEFAULTS) == at(8, day=27)
    assert next_attempt("sms", "low_balance_3", 4, at(21, 30), True, DEFAULTS) == at(22, 30)
    assert next_attempt("voice", "low_balance_3", 4, at(21, 30), True, DEFAULTS) == at(8, day=27)


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        plan(msg("low_balance_2"), datetime(2026, 11, 26, 14), DEFAULTS, EVERYTHING, Usage())


def test_every_template_kind_has_a_dispatch_rule():
    assert set(KIND_RULES) == set(KINDS)
