"""Message templates: every kind renders in zh-CN and English from one table."""

from __future__ import annotations

import re

import pytest

from notifications.templates import (
    EN, KINDS, TEMPLATES, ZH, TemplateError, normalise_locale, parse_template_codes, render,
)

SAMPLE = {
    "account": "A-101", "balance": "12.30", "threshold": "20.00", "amount": "50.00",
    "paid_at": "2026-11-26 10:00", "meter": "M-0007", "since": "2026-11-26 03:00", "power_w": "1850",
    "at": "2026-11-26 21:14", "code": "482913", "minutes": "5", "site": "Garden Flats",
    "date": "2026-11-26", "arrears_count": "3", "arrears_total": "412.50", "lost_count": "2", "gateway": "GW-3",
}


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("locale", [ZH, EN])
def test_every_kind_renders_in_both_languages_with_every_param_filled(kind, locale):
    rendered = render(kind, locale, SAMPLE)
    assert rendered.subject and rendered.text and rendered.locale == locale
    assert not re.search(r"[{}]", rendered.text)
    for name in TEMPLATES[kind].params:
        assert SAMPLE[name] in rendered.text
    assert rendered.fields == tuple((n, SAMPLE[n]) for n in TEMPLATES[kind].params)


def test_the_chinese_and_english_texts_differ_and_are_in_their_language():
    zh, en = render("cutoff_done", ZH, SAMPLE), render("cutoff_done", EN, SAMPLE)
    assert "停止供电" in zh.text and "cut off" in en.text
    assert re.search(r"[\u4e00-\u9fff]", en.text) is None


def test_the_html_part_escapes_params_and_declares_the_language():
    rendered = render("meter_lost", EN, {"meter": "<b>M&1</b>", "since": "03:00"})
    assert "&lt;b&gt;M&amp;1&lt;/b&gt;" in rendered.html and "<b>M" not in rendered.html
    assert '<html lang="en">' in rendered.html and "<title>Meter offline</title>" in rendered.html


def test_a_missing_param_is_an_error_naming_it():
    with pytest.raises(TemplateError, match="threshold"):
        render("low_balance_1", ZH, {"account": "A", "balance": "1.00"})


def test_an_unknown_kind_is_an_error():
    with pytest.raises(TemplateError, match="unknown"):
        render("birthday", ZH, {})


@pytest.mark.parametrize(("given", "expected"), [
    ("en", EN), ("en-US", EN), ("EN_gb", EN), ("zh-CN", ZH), ("zh", ZH), ("", ZH), ("fr", ZH),
])
def test_locales_fall_back_to_chinese(given, expected):
    assert normalise_locale(given) == expected


def test_sms_template_codes_are_read_from_a_config_value():
    codes = parse_template_codes(" low_balance_1=SMS_1, cutoff_done = SMS_9 ,")
    assert codes == {"low_balance_1": "SMS_1", "cutoff_done": "SMS_9"}


@pytest.mark.parametrize("spec", ["low_balance_1", "low_balance_1=", "birthday=SMS_1"])
def test_bad_template_code_config_is_refused(spec):
    with pytest.raises(TemplateError):
        parse_template_codes(spec)
