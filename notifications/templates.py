"""Message templates per kind in zh-CN and English, kept as one table, and their rendering."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass

from notifications.channel import Rendered

ZH = "zh-CN"
EN = "en"
LOCALES = (ZH, EN)
DEFAULT_LOCALE = ZH


class TemplateError(ValueError):
    """Raised for an unknown kind or a missing template parameter."""


@dataclass(frozen=True)
class Template:
    """One kind's wording; `params` are declared in the order positional providers need."""

    params: tuple[str, ...]
    subject: Mapping[str, str]
    text: Mapping[str, str]


TEMPLATES: dict[str, Template] = {
    "low_balance_1": Template(
        ("account", "balance", "threshold"),
        {ZH: "余额提醒", EN: "Balance reminder"},
        {
            ZH: "您的账户 {account} 余额为 {balance} 元，已低于 {threshold} 元，请及时充值。",
            EN: "Account {account} has a balance of {balance} yuan, below {threshold} yuan. "
            "Please top up soon.",
        },
    ),
    "low_balance_2": Template(
        ("account", "balance", "threshold"),
        {ZH: "余额不足警告", EN: "Low balance warning"},
        {
            ZH: "您的账户 {account} 余额仅剩 {balance} 元，已低于 {threshold} 元，请尽快充值以免停止供应。",
            EN: "Account {account} has only {balance} yuan left, below {threshold} yuan. "
            "Top up now to avoid a cut-off.",
        },
    ),
    "low_balance_3": Template(
        ("account", "balance", "threshold"),
        {ZH: "停止供应预告", EN: "Cut-off notice"},
        {
            ZH: "您的账户 {account} 余额为 {balance} 元，已低于 {threshold} 元，即将停止供电/供水。"
            "充值后自动恢复。",
            EN: "Account {account} is at {balance} yuan, below {threshold} yuan: supply will be "
            "cut off shortly. It is restored automatically after a top-up.",
        },
    ),
    "cutoff_done": Template(
        ("account", "balance"),
        {ZH: "已停止供应", EN: "Supply cut off"},
        {
            ZH: "您的账户 {account} 余额为 {balance} 元，已停止供电/供水。充值后自动恢复。",
            EN: "Supply to account {account} has been cut off at a balance of {balance} yuan. "
            "It is restored automatically after a top-up.",
        },
    ),
    "restored": Template(
        ("account", "balance"),
        {ZH: "已恢复供应", EN: "Supply restored"},
        {
            ZH: "您的账户 {account} 已恢复供电/供水，当前余额 {balance} 元。",
            EN: "Supply to account {account} is restored. The balance is now {balance} yuan.",
        },
    ),
    "receipt": Template(
        ("account", "amount", "balance", "paid_at"),
        {ZH: "充值成功", EN: "Payment received"},
        {
            ZH: "您的账户 {account} 于 {paid_at} 充值 {amount} 元成功，当前余额 {balance} 元。",
            EN: "Account {account} received {amount} yuan at {paid_at}. "
            "The balance is now {balance} yuan.",
        },
    ),
    "meter_lost": Template(
        ("meter", "since"),
        {ZH: "表计离线", EN: "Meter offline"},
        {
            ZH: "表计 {meter} 自 {since} 起失去联系，请检查表计或网关。",
            EN: "Meter {meter} has not reported since {since}. Please check the meter or gateway.",
        },
    ),
    "gateway_lost": Template(
        ("gateway", "since"),
        {ZH: "网关离线", EN: "Gateway offline"},
        {
            ZH: "网关 {gateway} 自 {since} 起失去联系，其下表计均无法抄读，请检查网络或供电。",
            EN: "Gateway {gateway} has been unreachable since {since}; none of its meters can be "
            "read. Please check its network and power.",
        },
    ),
    "abnormal_load": Template(
        ("meter", "power_w", "at"),
        {ZH: "异常负载", EN: "Abnormal load"},
        {
            ZH: "表计 {meter} 于 {at} 检测到异常负载 {power_w} W，疑似违规电器，请注意用电安全。",
            EN: "Meter {meter} saw an abnormal load of {power_w} W at {at}, typical of a forbidden "
            "appliance. Please check.",
        },
    ),
    "verify_code": Template(
        ("code", "minutes"),
        {ZH: "验证码", EN: "Verification code"},
        {
            ZH: "您的验证码为 {code}，{minutes} 分钟内有效，请勿告诉他人。",
            EN: "Your verification code is {code}. It is valid for {minutes} minutes; "
            "do not share it.",
        },
    ),
    "staff_digest": Template(
        ("site", "date", "arrears_count", "arrears_total", "lost_count"),
        {ZH: "每日汇总", EN: "Daily digest"},
        {
            ZH: "{site} {date}：欠费账户 {arrears_count} 户，合计 {arrears_total} 元；"
            "离线表计 {lost_count} 块。",
            EN: "{site} {date}: {arrears_count} accounts in arrears, {arrears_total} yuan in "
            "total; {lost_count} meters offline.",
        },
    ),
}

KINDS = frozenset(TEMPLATES)


def normalise_locale(locale: str) -> str:
    """Map 'en-US', 'en_GB', 'zh', '' ... onto a locale we have; zh-CN when unsure."""
    return EN if locale.lower().replace("_", "-").split("-")[0] == "en" else ZH


def render(kind: str, locale: str, params: Mapping[str, str]) -> Rendered:
    """Render a kind in a locale; every declared param must be present."""
    template = TEMPLATES.get(kind)
    if template is None:
        raise TemplateError(f"unknown message kind {kind!r}")
    missing = [name for name in template.params if name not in params]
    if missing:
        raise TemplateError(f"{kind}: missing params {', '.join(missing)}")
    loc = normalise_locale(locale)
    values = {name: str(params[name]) for name in template.params}
    text = template.text[loc].format_map(values)
    subject = template.subject[loc]
    return Rendered(
        kind=kind,
        locale=loc,
        subject=subject,
        text=text,
        html=_html(subject, text, loc),
        fields=tuple(values.items()),
    )


def _html(subject: str, text: str, locale: str) -> str:
    paragraphs = "".join(f"<p>{html.escape(line)}</p>" for line in text.splitlines() if line)
    return (
        f'<!doctype html><html lang="{locale}"><head><meta charset="utf-8">'
        f"<title>{html.escape(subject)}</title></head>"
        f"<body><h1>{html.escape(subject)}</h1>{paragraphs}</body></html>"
    )


def parse_template_codes(spec: str) -> dict[str, str]:
    """Parse 'low_balance_1=SMS_1,receipt=SMS_2' (an env value) into kind -> provider code."""
    codes: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        kind, sep, code = item.partition("=")
        kind, code = kind.strip(), code.strip()
        if not sep or not code:
            raise TemplateError(f"template code entry {item!r} is not kind=code")
        if kind not in KINDS:
            raise TemplateError(f"template code for unknown kind {kind!r}")
        codes[kind] = code
    return codes
