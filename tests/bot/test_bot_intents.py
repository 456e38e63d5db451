"""Intent recognition: forgiving of wording, Chinese first, English too."""

from __future__ import annotations

import pytest

from billing.money import Money
from bot.intents import Intent, Kind, from_event, language_of, normalise, recognise

PHRASES: list[tuple[str, Kind]] = [
    # balance
    ("余额", Kind.BALANCE), ("查余额", Kind.BALANCE), ("还剩多少钱", Kind.BALANCE),
    ("查电费", Kind.BALANCE), ("电费还有多少", Kind.BALANCE), ("我的余额是多少？", Kind.BALANCE),
    ("水费还剩多少", Kind.BALANCE), ("剩余金额", Kind.BALANCE), ("欠费了吗", Kind.BALANCE),
    ("查询", Kind.BALANCE), ("  余额！ ", Kind.BALANCE), ("balance", Kind.BALANCE),
    ("Balance?", Kind.BALANCE), ("what's my balance", Kind.BALANCE),
    ("how much money is left", Kind.BALANCE), ("credit", Kind.BALANCE),
    # usage
    ("今天用了多少电", Kind.USAGE), ("本月用电", Kind.USAGE), ("上个月", Kind.USAGE),
    ("上月用了多少", Kind.USAGE), ("这个月用了几度电", Kind.USAGE), ("用水量", Kind.USAGE),
    ("本月电费多少", Kind.USAGE), ("usage", Kind.USAGE), ("usage today", Kind.USAGE),
    ("how much did I use last month", Kind.USAGE), ("consumption this month", Kind.USAGE),
    # recharge
    ("充值", Kind.RECHARGE), ("缴费", Kind.RECHARGE), ("交电费", Kind.RECHARGE),
    ("我要充值100元", Kind.RECHARGE), ("买电", Kind.RECHARGE), ("top up", Kind.RECHARGE),
    ("Top-up 50", Kind.RECHARGE), ("recharge", Kind.RECHARGE), ("pay", Kind.RECHARGE),
    # bills and orders
    ("账单", Kind.BILLS), ("查账单", Kind.BILLS), ("bills", Kind.BILLS), ("my bill", Kind.BILLS),
    ("订单", Kind.ORDERS), ("缴费记录", Kind.ORDERS), ("充值记录", Kind.ORDERS),
    ("orders", Kind.ORDERS), ("payment history", Kind.ORDERS),
    # binding
    ("绑定 13800138000", Kind.BIND_PHONE), ("13800138000", Kind.BIND_PHONE),
    ("绑定手机号：138 0013 8000", Kind.BIND_PHONE), ("bind +86 13800138000", Kind.BIND_PHONE),
    ("绑定 A栋 101 1234", Kind.BIND_ROOM), ("绑定A栋101 1234", Kind.BIND_ROOM),
    ("bind A-101 1234", Kind.BIND_ROOM), ("绑定", Kind.BIND_HELP), ("怎么绑定房间", Kind.BIND_HELP),
    ("bind", Kind.BIND_HELP), ("绑定 12345", Kind.BIND_HELP),
    ("解绑", Kind.UNBIND), ("解除绑定 A栋 101", Kind.UNBIND), ("unbind", Kind.UNBIND),
    ("123456", Kind.CODE), ("验证码 654321", Kind.CODE), ("验证码是：１２３４５６", Kind.CODE),
    ("code 123456", Kind.CODE),
    # help and the rest
    ("帮助", Kind.HELP), ("?", Kind.HELP), ("？", Kind.HELP), ("help", Kind.HELP), ("", Kind.HELP),
    ("你好", Kind.HELP), ("菜单", Kind.HELP), ("hello", Kind.HELP),
    ("天气", Kind.UNKNOWN), ("lol", Kind.UNKNOWN),
    ("12345", Kind.UNKNOWN), ("1234567", Kind.UNKNOWN),
]


@pytest.mark.parametrize(("text", "kind"), PHRASES)
def test_phrasings_are_recognised(text: str, kind: Kind):
    assert recognise(text).kind is kind


@pytest.mark.parametrize(("text", "span"), [
    ("今天用了多少电", "today"), ("今日用电", "today"), ("本月用电", "month"), ("用了多少电", "month"),
    ("上个月", "last_month"), ("上月用水", "last_month"), ("usage today", "today"),
    ("usage last month", "last_month"), ("usage this month", "month"), ("usage", "month"),
])
def test_usage_span_is_read_from_the_words(text: str, span: str):
    assert recognise(text) == Intent(Kind.USAGE, language_of(text), span=span)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "amount"), [
    ("充值", None), ("充值100", Money.yuan(100)), ("充值 50 元", Money.yuan(50)),
    ("我要充值¥20.5", Money.yuan("20.50")), ("top up 100 yuan", Money.yuan(100)),
    ("充值0", None), ("充值 1.234", None),
])
def test_recharge_reads_an_optional_amount(text: str, amount: Money | None):
    assert recognise(text).amount == amount


def test_a_phone_number_is_read_without_separators():
    assert recognise("绑定 138-0013-8000").phone == "13800138000"


@pytest.mark.parametrize("text", ["绑定 A栋 101 1234", "绑定A栋101 1234", "绑定 A栋101 1234"])
def test_bind_by_room_reads_site_room_and_last_four_digits(text: str):
    intent = recognise(text)
    assert (intent.site, intent.room_no, intent.phone_last4) == ("A栋", "101", "1234")


def test_bind_by_room_keeps_the_case_of_site_and_room():
    intent = recognise("bind Sunrise B12 0000")
    assert (intent.site, intent.room_no, intent.lang) == ("Sunrise", "B12", "en")


def test_unbind_reads_an_optional_target():
    assert recognise("解绑").target is None
    assert recognise("解绑 A栋 101").target == "A栋 101"


@pytest.mark.parametrize(("text", "lang"), [
    ("余额", "zh"), ("balance", "en"), ("查balance", "zh"), ("123456", "zh"), ("?", "zh"),
    ("HELP", "en"),
])
def test_language_is_english_only_for_latin_text_without_chinese(text: str, lang: str):
    assert recognise(text).lang == lang


def test_normalise_folds_full_width_and_trims_punctuation():
    assert normalise("　余额？！") == "余额"
    assert normalise("ＢＡＬＡＮＣＥ") == "BALANCE"
    assert normalise("？") == "?"


@pytest.mark.parametrize(("key", "intent"), [
    ("BALANCE", Intent(Kind.BALANCE)), ("balance", Intent(Kind.BALANCE)),
    ("USAGE", Intent(Kind.USAGE, span="month")),
    ("USAGE_TODAY", Intent(Kind.USAGE, span="today")),
    ("USAGE_LAST_MONTH", Intent(Kind.USAGE, span="last_month")),
    ("RECHARGE", Intent(Kind.RECHARGE)), ("BILLS", Intent(Kind.BILLS)),
    ("ORDERS", Intent(Kind.ORDERS)), ("HELP", Intent(Kind.HELP)), ("BIND", Intent(Kind.BIND_HELP)),
    ("SOMETHING_ELSE", Intent(Kind.UNKNOWN)),
])
def test_menu_clicks_map_by_event_key(key: str, intent: Intent):
    assert from_event("CLICK", key) == intent


@pytest.mark.parametrize(("event", "kind"), [
    ("subscribe", Kind.SUBSCRIBE), ("SUBSCRIBE", Kind.SUBSCRIBE), ("unsubscribe", Kind.IGNORE),
    ("VIEW", Kind.IGNORE), ("LOCATION", Kind.IGNORE),
])
def test_events_other_than_clicks_greet_or_are_ignored(event: str, kind: Kind):
    assert from_event(event).kind is kind
