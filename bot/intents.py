"""Turn what a tenant types (Chinese first, English too) or clicks into an Intent.

Pure: no I/O. Recognition is an ordered table of patterns; the first rule that matches wins,
so the more specific rules (codes, phone numbers, records) come before the broad ones.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from billing.money import Money, MoneyError
from bot.port import UsageSpan

Lang = Literal["zh", "en"]


class Kind(StrEnum):
    BALANCE = "balance"
    USAGE = "usage"
    RECHARGE = "recharge"
    BILLS = "bills"
    ORDERS = "orders"
    BIND_HELP = "bind_help"
    BIND_PHONE = "bind_phone"
    BIND_ROOM = "bind_room"
    CODE = "code"
    UNBIND = "unbind"
    HELP = "help"
    SUBSCRIBE = "subscribe"
    IGNORE = "ignore"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Intent:
    """What the tenant wants, with the arguments found in the message."""

    kind: Kind
    lang: Lang = "zh"
    span: UsageSpan | None = None
    phone: str | None = None
    code: str | None = None
    site: str | None = None
    room_no: str | None = None
    phone_last4: str | None = None
    amount: Money | None = None
    target: str | None = None


Build = Callable[[re.Match[str], str, Lang], Intent]


@dataclass(frozen=True, slots=True)
class Rule:
    kind: Kind
    pattern: re.Pattern[str]
    build: Build | None = None


_CJK = re.compile(r"[\u3400-\u9fff]")
_LATIN = re.compile(r"[a-zA-Z]")
_EDGE_PUNCT = " \t\r\n.,;:!?~。，；：！？～、…"
_AMOUNT = re.compile(r"(?<![0-9.])([0-9]{1,5}(?:\.[0-9]{1,2})?)(?![0-9.])")
_SPANS: tuple[tuple[UsageSpan, re.Pattern[str]], ...] = (
    ("last_month", re.compile(r"上个?月|last\s*month|previous\s*month", re.I)),
    ("today", re.compile(r"今天|今日|当天|today", re.I)),
    ("month", re.compile(r"本月|这个?月|当月|本期|this\s*month|month", re.I)),
)
_ROOM_SPLIT = re.compile(r"^(.*?(?:栋|幢|座|号楼|单元|区|[a-z]))-?([0-9a-z][\w-]*)$", re.I)


def _span_of(text: str) -> UsageSpan | None:
    return next((span for span, pattern in _SPANS if pattern.search(text)), None)


def _build_code(m: re.Match[str], text: str, lang: Lang) -> Intent:
    return Intent(Kind.CODE, lang, code=m.group("code"))


def _build_phone(m: re.Match[str], text: str, lang: Lang) -> Intent:
    return Intent(Kind.BIND_PHONE, lang, phone=re.sub(r"[\s-]", "", m.group("phone")))


def _build_room(m: re.Match[str], text: str, lang: Lang) -> Intent:
    where, last4 = m.group("where").strip(), m.group("last4")
    tokens = where.split()
    if len(tokens) >= 2:
        return Intent(Kind.BIND_ROOM, lang, site=tokens[0], room_no=" ".join(tokens[1:]),
                      phone_last4=last4)
    split = _ROOM_SPLIT.match(where)
    if split is None:
        return Intent(Kind.BIND_HELP, lang)
    return Intent(Kind.BIND_ROOM, lang, site=split.group(1).rstrip("-"), room_no=split.group(2),
                  phone_last4=last4)


def _build_unbind(m: re.Match[str], text: str, lang: Lang) -> Intent:
    return Intent(Kind.UNBIND, lang, target=m.group("target").strip() or None)


def _build_recharge(m: re.Match[str], text: str, lang: Lang) -> Intent:
    rest = text[: m.start()] + " " + text[m.end():]
    found = _AMOUNT.search(rest)
    amount = None
    if found:
        try:
            amount = Money.yuan(found.group(1))
        except MoneyError:
            amount = None
    return Intent(Kind.RECHARGE, lang, amount=amount if amount and amount.is_positive else None)


def _build_usage(m: re.Match[str], text: str, lang: Lang) -> Intent:
    return Intent(Kind.USAGE, lang, span=_span_of(text) or "month")


def _rule(kind: Kind, pattern: str, build: Build | None = None) -> Rule:
    return Rule(kind, re.compile(pattern, re.IGNORECASE), build)


RULES: tuple[Rule, ...] = (
    _rule(Kind.CODE, r"^(?:验证码|校验码|code|verification\s*code)?[\s:：是为]*(?P<code>[0-9]{6})$",
          _build_code),
    _rule(Kind.BIND_PHONE,
          r"^(?:绑定|绑|bind|link)?\s*(?:我的)?(?:手机号码|手机号|手机|电话|号码|phone|mobile)?"
          r"\s*[:：]?\s*(?:\+?86[\s-]?)?(?P<phone>1[3-9][0-9](?:[\s-]?[0-9]){8})$", _build_phone),
    _rule(Kind.UNBIND, r"^(?:解绑|解除绑定|取消绑定|unbind|unlink)\s*(?P<target>.*)$", _build_unbind),
    _rule(Kind.BIND_ROOM, r"^(?:绑定|bind)\s*(?P<where>.+?)\s+(?P<last4>[0-9]{4})$", _build_room),
    _rule(Kind.BIND_HELP, r"绑定|怎么绑|^bind|^link|how\s+(?:do\s+i\s+|to\s+)?(?:bind|link)"),
    _rule(Kind.ORDERS, r"订单|(?:缴费|交费|充值|交易|支付|付款)(?:记录|明细|历史)|orders?\b|history"
                       r"|payments\b|transactions?"),
    _rule(Kind.BILLS, r"账单|bills?\b|invoices?|statements?"),
    _rule(Kind.RECHARGE, r"充值|缴费|交费|交钱|交电费|交水费|充电费|充水费|买电|购电|买水|续费"
                         r"|top[\s-]?up|recharge|\bpay\b|add\s+(?:money|credit)", _build_recharge),
    _rule(Kind.BALANCE, r"余额|还剩|剩余|剩下|剩多少|还有多少|欠费|balance|credit|how\s+much.*left"),
    _rule(Kind.USAGE, r"用了|用电|用水|用量|耗电|电量|水量|度数|几度|多少度|多少吨|上个?月|今天|今日"
                      r"|本月|这个?月|usage|used|use\b|consum|kwh|last\s*month|today|this\s*month",
          _build_usage),
    _rule(Kind.BALANCE, r"电费|水费|多少钱|查询|^查|money|how\s+much"),
    _rule(Kind.HELP, r"^$|^\?+$|帮助|help|菜单|menu|功能|怎么用|使用说明|说明|你好|您好|在吗|^hi\b|^hello|^hey"
                     r"|^start$|what\s+can"),
)

MENU_KEYS: dict[str, Intent] = {
    "BALANCE": Intent(Kind.BALANCE),
    "USAGE": Intent(Kind.USAGE, span="month"),
    "USAGE_TODAY": Intent(Kind.USAGE, span="today"),
    "USAGE_MONTH": Intent(Kind.USAGE, span="month"),
    "USAGE_LAST_MONTH": Intent(Kind.USAGE, span="last_month"),
    "RECHARGE": Intent(Kind.RECHARGE),
    "BILLS": Intent(Kind.BILLS),
    "ORDERS": Intent(Kind.ORDERS),
    "BIND": Intent(Kind.BIND_HELP),
    "UNBIND": Intent(Kind.UNBIND),
    "HELP": Intent(Kind.HELP),
}

EVENTS: dict[str, Kind] = {"subscribe": Kind.SUBSCRIBE, "subscribe_scan": Kind.SUBSCRIBE}


def normalise(text: str) -> str:
    """Full-width to half-width, collapsed spaces, no punctuation at the ends; case is kept."""
    collapsed = " ".join(unicodedata.normalize("NFKC", text).split())
    stripped = collapsed.strip(_EDGE_PUNCT)
    return stripped if stripped or not collapsed else "?"


def language_of(text: str) -> Lang:
    """English only when the message has Latin letters and no Chinese characters."""
    return "en" if _LATIN.search(text) and not _CJK.search(text) else "zh"


def recognise(text: str) -> Intent:
    """The intent of a text message; UNKNOWN when nothing matches."""
    clean = normalise(text)
    lang = language_of(clean)
    for rule in RULES:
        found = rule.pattern.search(clean)
        if found:
            return rule.build(found, clean, lang) if rule.build else Intent(rule.kind, lang)
    return Intent(Kind.UNKNOWN, lang)


def from_event(event: str, key: str | None = None) -> Intent:
    """The intent of an event: subscribe greets, a menu click maps by its EventKey."""
    event = event.casefold()
    if event == "click" and key:
        return MENU_KEYS.get(key.strip().upper(), Intent(Kind.UNKNOWN))
    return Intent(EVENTS.get(event, Kind.IGNORE))
