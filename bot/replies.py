"""Reply texts (zh-CN by default, English when the tenant writes English) and their formatting.

Every sentence lives in the TEXTS table, one row per message, one column per language.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal

from billing.money import Money
from bot.intents import Lang
from bot.port import (
    BalanceView,
    BillView,
    BindResult,
    BindStartStatus,
    OrderView,
    RoomView,
    UsageSpan,
    UsageView,
    Utility,
)

PRESET_AMOUNTS = (Money.yuan(50), Money.yuan(100), Money.yuan(200))

TEXTS: dict[str, dict[Lang, str]] = {
    "help": {
        "zh": "您可以回复：\n· 余额 — 查询余额和预计可用天数\n· 今天用电 / 本月用电 / 上月用电\n"
              "· 充值 — 获取缴费链接（如：充值 100）\n· 账单 / 缴费记录\n"
              "· 绑定 手机号 — 绑定房间\n· 解绑 — 解除绑定",
        "en": "You can reply:\n· balance — balance and days left\n· usage today / usage this month / "
              "usage last month\n· top up — a payment link (e.g. top up 100)\n· bills / orders\n"
              "· bind <phone> — link your room\n· unbind — unlink a room",
    },
    "welcome": {"zh": "欢迎关注！在这里可以查余额、查用量、在线充值。",
                "en": "Welcome! Here you can check your balance and usage, and top up online."},
    "unknown": {"zh": "抱歉，没有听懂您的意思。", "en": "Sorry, I did not understand that."},
    "busy": {"zh": "系统繁忙，请稍后再试。", "en": "The system is busy, please try again later."},
    "unbound": {
        "zh": "您还没有绑定房间。请回复“绑定 手机号”（如：绑定 13800138000），我们会发送短信验证码；"
              "或回复“绑定 楼栋 房号 手机后四位”（如：绑定 A栋 101 1234）。",
        "en": "You have not linked a room yet. Reply \"bind <phone>\" (e.g. bind 13800138000) and we "
              "will text you a code, or \"bind <building> <room> <last 4 digits of phone>\" "
              "(e.g. bind A 101 1234).",
    },
    "balance_line": {"zh": "【{room}】{utility}余额 {money}{days}",
                     "en": "[{room}] {utility} balance {money}{days}"},
    "days_left": {"zh": "，预计可用 {days} 天", "en": ", about {days} days left"},
    "days_out": {"zh": "，余额不足一天，请尽快充值", "en": ", less than a day left, please top up"},
    "balance_tail": {"zh": "回复“充值”获取缴费链接。", "en": "Reply \"top up\" for a payment link."},
    "no_data": {"zh": "暂无数据。", "en": "No data yet."},
    "usage_line": {"zh": "【{room}】{span}{utility} {quantity}，费用 {money}",
                   "en": "[{room}] {utility} {span}: {quantity}, cost {money}"},
    "tou_line": {"zh": "  尖 {sharp} / 峰 {peak} / 平 {flat} / 谷 {valley} 度",
                 "en": "  sharp {sharp} / peak {peak} / flat {flat} / valley {valley} kWh"},
    "no_usage": {"zh": "{span}暂无用量记录。", "en": "No usage recorded {span}."},
    "pay_line": {"zh": "【{room}】点此充值：{link}", "en": "[{room}] top up here: {link}"},
    "pay_amount": {"zh": "已预填金额 {money}。", "en": "Amount preset to {money}."},
    "pay_presets": {"zh": "常用金额：{amounts}，回复“充值 100”可预填金额。",
                    "en": "Common amounts: {amounts}. Reply \"top up 100\" to preset one."},
    "bill_line": {"zh": "【{room}】{start}~{end} {money} {status}",
                  "en": "[{room}] {start} to {end} {money} {status}"},
    "no_bills": {"zh": "暂无账单。", "en": "No bills."},
    "order_line": {"zh": "{time} 【{room}】{kind} {money} {status}",
                   "en": "{time} [{room}] {kind} {money} {status}"},
    "no_orders": {"zh": "暂无缴费记录。", "en": "No orders yet."},
    "code_sent": {"zh": "验证码已发送至 {phone}，请直接回复 6 位验证码完成绑定。",
                  "en": "A code was sent to {phone}. Reply with the 6 digits to finish."},
    "unknown_phone": {"zh": "未找到使用该手机号登记的房间，请核对号码或联系物业。",
                      "en": "No room is registered with that phone number. Please check it or "
                            "contact the property office."},
    "too_many_requests": {"zh": "验证码发送过于频繁，请稍后再试。",
                          "en": "Too many codes requested, please try again later."},
    "bound": {"zh": "绑定成功！已绑定：{rooms}。回复“余额”查询余额。",
              "en": "Linked! Your rooms: {rooms}. Reply \"balance\" to check your balance."},
    "bad_code": {"zh": "验证码不正确，请重新输入。", "en": "That code is not right, please try again."},
    "expired": {"zh": "验证码已失效，请重新回复“绑定 手机号”。",
                "en": "The code has expired. Reply \"bind <phone>\" again."},
    "no_pending": {"zh": "请先回复“绑定 手机号”获取验证码。",
                   "en": "Reply \"bind <phone>\" first to get a code."},
    "no_match": {"zh": "房号与手机后四位不匹配，请核对后重试。",
                 "en": "The room and phone digits do not match, please check and try again."},
    "not_allowed": {"zh": "该小区不支持按房号绑定，请回复“绑定 手机号”。",
                    "en": "This site does not allow linking by room. Reply \"bind <phone>\"."},
    "unbound_room": {"zh": "已解绑 {room}。", "en": "Unlinked {room}."},
    "unbind_which": {"zh": "您绑定了多个房间，请回复“解绑 房号”，如：解绑 {example}\n{rooms}",
                     "en": "You have several rooms. Reply \"unbind <room>\", e.g. unbind {example}\n"
                           "{rooms}"},
    "unbind_unknown": {"zh": "未找到已绑定的房间“{target}”。\n{rooms}",
                       "en": "No linked room matches \"{target}\".\n{rooms}"},
}

WORDS: dict[str, dict[Lang, str]] = {
    "electricity": {"zh": "电费", "en": "electricity"},
    "water": {"zh": "水费", "en": "water"},
    "use:electricity": {"zh": "用电", "en": "electricity"},
    "use:water": {"zh": "用水", "en": "water"},
    "today": {"zh": "今天", "en": "today"},
    "month": {"zh": "本月", "en": "this month"},
    "last_month": {"zh": "上月", "en": "last month"},
    "recharge": {"zh": "充值", "en": "top-up"},
    "refund": {"zh": "退款", "en": "refund"},
    "bill": {"zh": "缴账单", "en": "bill payment"},
    "pending": {"zh": "处理中", "en": "pending"},
    "paid": {"zh": "已到账", "en": "paid"},
    "failed": {"zh": "失败", "en": "failed"},
    "refunded": {"zh": "已退款", "en": "refunded"},
    "unpaid": {"zh": "待缴", "en": "unpaid"},
    "overdue": {"zh": "已逾期", "en": "overdue"},
    "sep": {"zh": "、", "en": ", "},
}

UNITS: dict[Utility, dict[Lang, tuple[str, Decimal]]] = {
    "electricity": {"zh": ("度", Decimal("0.01")), "en": ("kWh", Decimal("0.01"))},
    "water": {"zh": ("吨", Decimal("0.001")), "en": ("m³", Decimal("0.001"))},
}


def text(key: str, lang: Lang, **values: object) -> str:
    """One row of TEXTS in the tenant's language, filled in."""
    return TEXTS[key][lang].format(**values)


def word(key: str, lang: Lang) -> str:
    return WORDS[key][lang]


def money(amount: Money) -> str:
    """¥12.34, or -¥5.00 when in debt."""
    sign = "-" if amount.is_negative else ""
    return f"{sign}¥{abs(amount.fen) // 100}.{abs(amount.fen) % 100:02d}"


def kilo(base_units: int, step: Decimal) -> str:
    """Wh as kWh, litres as m³, rounded half up for display only."""
    return str((Decimal(base_units) / 1000).quantize(step, rounding=ROUND_HALF_UP))


def quantity(amount: int, utility: Utility, lang: Lang) -> str:
    unit, step = UNITS[utility][lang]
    return f"{kilo(amount, step)} {unit}" if lang == "en" else f"{kilo(amount, step)}{unit}"


def days(days_left: int | None, lang: Lang) -> str:
    if days_left is None:
        return ""
    return text("days_out", lang) if days_left < 1 else text("days_left", lang, days=days_left)


def mask_phone(phone: str) -> str:
    return f"{phone[:3]}****{phone[-4:]}" if len(phone) >= 8 else "****"


def room_list(rooms: Iterable[RoomView], lang: Lang) -> str:
    return word("sep", lang).join(r.label for r in rooms)


def balance(views: list[BalanceView], lang: Lang) -> str:
    lines = [text("balance_line", lang, room=v.room.label, utility=word(v.utility, lang),
                  money=money(v.balance), days=days(v.days_left, lang)) for v in views]
    return "\n".join([*lines, text("balance_tail", lang)])


def usage(views: list[UsageView], span: UsageSpan, lang: Lang) -> str:
    if not views:
        return text("no_usage", lang, span=word(span, lang))
    lines: list[str] = []
    for v in views:
        lines.append(text("usage_line", lang, room=v.room.label, span=word(v.span, lang),
                          utility=word(f"use:{v.utility}", lang),
                          quantity=quantity(v.quantity, v.utility, lang), money=money(v.cost)))
        if v.tou is not None:
            step = Decimal("0.01")
            lines.append(text("tou_line", lang, sharp=kilo(v.tou.sharp_wh, step),
                              peak=kilo(v.tou.peak_wh, step), flat=kilo(v.tou.flat_wh, step),
                              valley=kilo(v.tou.valley_wh, step)))
    return "\n".join(lines)


def pay_links(links: list[tuple[RoomView, str]], amount: Money | None, lang: Lang) -> str:
    lines = [text("pay_line", lang, room=room.label, link=link) for room, link in links]
    if amount is not None:
        lines.append(text("pay_amount", lang, money=money(amount)))
    else:
        presets = " / ".join(money(m) for m in PRESET_AMOUNTS)
        lines.append(text("pay_presets", lang, amounts=presets))
    return "\n".join(lines)


def bills(views: list[BillView], lang: Lang) -> str:
    if not views:
        return text("no_bills", lang)
    return "\n".join(text("bill_line", lang, room=b.room.label, start=b.period_start.isoformat(),
                          end=b.period_end.isoformat(), money=money(b.amount),
                          status=word(b.status, lang)) for b in views)


def orders(views: list[OrderView], lang: Lang) -> str:
    if not views:
        return text("no_orders", lang)
    return "\n".join(text("order_line", lang, time=o.created_at.strftime("%m-%d %H:%M"),
                          room=o.room.label, kind=word(o.kind, lang), money=money(o.amount),
                          status=word(o.status, lang)) for o in views)


def bind_started(status: BindStartStatus, phone: str, lang: Lang) -> str:
    return text(status, lang, phone=mask_phone(phone))


def bind_result(result: BindResult, lang: Lang) -> str:
    return text(result.status, lang, rooms=room_list(result.rooms, lang))


def help_text(lang: Lang, prefix: str | None = None) -> str:
    return "\n".join(p for p in (prefix, text("help", lang)) if p)
