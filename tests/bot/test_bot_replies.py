"""Formatting of money, quantities and days left in replies."""

from __future__ import annotations

import pytest

from billing.money import Money
from bot import replies


@pytest.mark.parametrize(("fen", "shown"), [
    (1234, "¥12.34"), (0, "¥0.00"), (5, "¥0.05"), (-500, "-¥5.00"), (-1, "-¥0.01"),
    (123456789, "¥1234567.89"),
])
def test_money_is_shown_in_yuan_with_two_decimals(fen: int, shown: str):
    assert replies.money(Money(fen)) == shown


@pytest.mark.parametrize(("amount", "utility", "lang", "shown"), [
    (123_456, "electricity", "zh", "123.46度"), (123_454, "electricity", "en", "123.45 kWh"),
    (5, "electricity", "zh", "0.01度"), (0, "electricity", "en", "0.00 kWh"),
    (3_250, "water", "zh", "3.250吨"), (1, "water", "en", "0.001 m³"),
])
def test_quantities_are_shown_in_kwh_and_cubic_metres(amount: int, utility: str, lang: str,
                                                       shown: str):
    assert replies.quantity(amount, utility, lang) == shown  # type: ignore[arg-type]


@pytest.mark.parametrize(("days", "lang", "shown"), [
    (None, "zh", ""), (12, "zh", "，预计可用 12 天"), (0, "zh", "，余额不足一天，请尽快充值"),
    (3, "en", ", about 3 days left"), (0, "en", ", less than a day left, please top up"),
])
def test_days_left_is_omitted_when_unknown_and_warns_below_one_day(days: int | None, lang: str,
                                                                    shown: str):
    assert replies.days(days, lang) == shown  # type: ignore[arg-type]


def test_phone_numbers_are_masked_in_replies():
    assert replies.mask_phone("13800138000") == "138****8000"
    assert replies.mask_phone("123") == "****"


def test_every_text_has_both_languages():
    assert all(set(row) == {"zh", "en"} for row in replies.TEXTS.values())
    assert all(set(row) == {"zh", "en"} for row in replies.WORDS.values())
