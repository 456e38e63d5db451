"""The tenant JSON API for the mini-program: thin views that parse, ask the port, and answer JSON."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from api import tokens
from api.context import TenantContext, ctx
from api.errors import ApiError, int_param, json_body, text_field
from api.starter import CHANNELS, MAX_AMOUNT, MIN_AMOUNT
from api.wechat_login import LoginRefused, WeChatDown, code2session
from billing.money import Money, MoneyError
from bot.port import BalanceView, BillView, OrderView, RoomView, UsageView
from services.bill_payments import PayableBill, bill_by_number, bills_by_number
from services.tenant import pay_signature

SPANS = ("today", "month", "last_month")
UNITS = {"electricity": "Wh", "water": "L"}
MAX_ID = 2**63 - 1


def _openid(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "log in first: send Authorization: Bearer <token>")
    try:
        return tokens.verify(ctx(request).secret_key, token.strip())
    except tokens.BadToken as ex:
        raise ApiError(401, str(ex)) from ex


def _money(prefix: str, m: Money) -> dict[str, Any]:
    return {f"{prefix}_fen": m.fen, prefix: m.to_yuan_str()}


def room_json(r: RoomView) -> dict[str, Any]:
    return {"account_id": int(r.account_id), "site_code": r.site_code, "site_name": r.site_name,
            "room_no": r.room_no, "label": r.label}


def _balance_json(v: BalanceView) -> dict[str, Any]:
    return {"room": room_json(v.room), "utility": v.utility, **_money("balance", v.balance),
            "days_left": v.days_left}


def _usage_json(v: UsageView) -> dict[str, Any]:
    tou = None if v.tou is None else {"sharp": v.tou.sharp_wh, "peak": v.tou.peak_wh,
                                      "flat": v.tou.flat_wh, "valley": v.tou.valley_wh}
    return {"room": room_json(v.room), "utility": v.utility, "span": v.span, "quantity": v.quantity,
            "unit": UNITS[v.utility], **_money("cost", v.cost), "tou": tou}


def order_json(o: OrderView) -> dict[str, Any]:
    return {"order_no": o.order_no, "room": room_json(o.room), "kind": o.kind, **_money("amount", o.amount),
            "status": o.status, "channel": o.channel, "created_at": o.created_at.isoformat()}


def _bill_json(b: BillView, payable: PayableBill | None = None, pay_url: str | None = None) -> dict[str, Any]:
    out = {"bill_no": b.bill_no, "room": room_json(b.room), "period_start": b.period_start.isoformat(),
           "period_end": b.period_end.isoformat(), **_money("amount", b.amount), "status": b.status}
    if payable is not None:
        out |= {"bill_id": payable.id, **_money("outstanding", payable.outstanding), "payable": payable.payable,
                "pay_url": pay_url if payable.payable else None}
    return out


def parse_amount(raw: object) -> Money:
    """A yuan amount as a string ("50" or "50.00"), within the recharge bounds."""
    if not isinstance(raw, str) or len(raw) > 12:
        raise ApiError(400, "`amount` must be a yuan amount as a string, e.g. \"50.00\"")
    try:
        amount = Money.yuan(raw)
    except MoneyError as ex:
        raise ApiError(400, f"`amount`: {ex}") from ex
    if not MIN_AMOUNT <= amount <= MAX_AMOUNT:
        raise ApiError(400, f"`amount` must be from {MIN_AMOUNT.to_yuan_str()} to {MAX_AMOUNT.to_yuan_str()}")
    return amount


async def login(request: web.Request) -> web.Response:
    """Exchange a wx.login code for a session token."""
    c = ctx(request)
    code = text_field(await json_body(request), "code", 128)
    if c.miniapp is None or c.http is None:
        raise ApiError(503, "mini-program login is not configured")
    try:
        openid = await code2session(c.http, c.miniapp, code)
    except LoginRefused as ex:
        raise ApiError(401, f"WeChat refused the login code ({ex})") from ex
    except WeChatDown as ex:
        raise ApiError(502, str(ex)) from ex
    rooms = await c.port.bindings(openid)
    return web.json_response({"token": tokens.issue(c.secret_key, openid, c.session_ttl_s),
                              "expires_in": c.session_ttl_s, "bound": bool(rooms)})


async def rooms(request: web.Request) -> web.Response:
    views = await ctx(request).port.bindings(_openid(request))
    return web.json_response({"rooms": [room_json(r) for r in views]})


async def bind_phone(request: web.Request) -> web.Response:
    openid = _openid(request)
    phone = text_field(await json_body(request), "phone", 20)
    status = await ctx(request).port.start_binding_by_phone(openid, phone)
    if status == "too_many_requests":
        return web.json_response({"status": status, "error": "too many codes asked for; try again in an hour"},
                                 status=429)
    return web.json_response({"status": status})


async def bind_code(request: web.Request) -> web.Response:
    openid = _openid(request)
    code = text_field(await json_body(request), "code", 12)
    result = await ctx(request).port.confirm_binding(openid, code)
    return web.json_response({"status": result.status, "rooms": [room_json(r) for r in result.rooms]})


async def bind_room(request: web.Request) -> web.Response:
    openid = _openid(request)
    body = await json_body(request)
    site, room_no = text_field(body, "site", 100), text_field(body, "room_no", 40)
    last4 = text_field(body, "phone_last4", 4)
    if len(last4) != 4 or not last4.isascii() or not last4.isdigit():
        raise ApiError(400, "`phone_last4` must be the last 4 digits of the registered phone")
    result = await ctx(request).port.bind_by_room(openid, site, room_no, last4)
    return web.json_response({"status": result.status, "rooms": [room_json(r) for r in result.rooms]})


async def unbind(request: web.Request) -> web.Response:
    openid = _openid(request)
    account_id = int_param(request.match_info["account_id"], "account_id", 1, MAX_ID)
    if not await ctx(request).port.unbind(openid, str(account_id)):
        raise ApiError(404, "no such room among your bindings")
    return web.json_response({"status": "unbound"})


async def balance(request: web.Request) -> web.Response:
    views = await ctx(request).port.balance(_openid(request))
    return web.json_response({"balances": [_balance_json(v) for v in views]})


async def usage(request: web.Request) -> web.Response:
    openid = _openid(request)
    span = request.query.get("span", "month")
    if span not in SPANS:
        raise ApiError(400, f"`span` must be one of {', '.join(SPANS)}")
    views = await ctx(request).port.usage(openid, span)  # type: ignore[arg-type]
    return web.json_response({"usage": [_usage_json(v) for v in views]})


async def usage_series(request: web.Request) -> web.Response:
    openid = _openid(request)
    account_id = int_param(request.query.get("account_id"), "account_id", 1, MAX_ID)
    days = int_param(request.query.get("days", "30"), "days", 1, 366)
    points = await ctx(request).port.usage_series(openid, account_id, days)
    if points is None:
        raise ApiError(404, "no such room among your bindings")
    return web.json_response({"account_id": account_id, "days": days, "points": [
        {"date": p.day.isoformat(), "utility": p.utility, "quantity": p.quantity, "unit": UNITS[p.utility],
         **_money("cost", p.cost)} for p in points]})


async def orders(request: web.Request) -> web.Response:
    openid = _openid(request)
    limit = int_param(request.query.get("limit", "20"), "limit", 1, 100)
    views = await ctx(request).port.orders(openid, limit)
    return web.json_response({"orders": [order_json(o) for o in views]})


async def order(request: web.Request) -> web.Response:
    openid = _openid(request)
    view = await ctx(request).port.order_of(openid, request.match_info["order_no"][:64])
    if view is None:
        raise ApiError(404, "no such order among your rooms")
    return web.json_response(order_json(view))


async def bills(request: web.Request) -> web.Response:
    """The tenant's bills, each with what is still outstanding and, while it can be paid, a pay page link."""
    c = ctx(request)
    views = await c.port.bills(_openid(request))
    async with c.port.sessions() as session:
        found = await bills_by_number(session, [(int(b.room.account_id), b.bill_no) for b in views])
    out = []
    for b in views:
        payable = found.get((int(b.room.account_id), b.bill_no))
        out.append(_bill_json(b, payable, bill_pay_link(c, payable) if payable else None))
    return web.json_response({"bills": out})


def bill_pay_link(c: TenantContext, bill: PayableBill) -> str:
    """The signed pay page link that pays `bill` (the pay page's bill form)."""
    query = urlencode({"account": bill.account_id, "sig": pay_signature(c.secret_key, bill.account_id),
                       "bill": bill.id})
    return f"{c.public_url}/pay/?{query}"


async def _bill_payment(request: web.Request, body: dict[str, Any], openid: str, channel: str) -> web.Response:
    """Start paying one of the tenant's bills: `bill_no`, `amount` optional (all that is outstanding)."""
    c = ctx(request)
    number = text_field(body, "bill_no", 60)
    amount = parse_amount(body["amount"]) if body.get("amount") is not None else None
    accounts = [int(r.account_id) for r in await c.port.bindings(openid)]
    async with c.port.sessions() as session:
        bill = await bill_by_number(session, number, accounts)
    if bill is None:
        raise ApiError(404, "no such bill among your rooms")
    if not bill.payable:
        raise ApiError(409, f"bill {bill.number} is {bill.status}: nothing to pay")
    if amount is not None and amount > bill.outstanding:
        raise ApiError(400, f"`amount` is more than the {bill.outstanding.to_yuan_str()} outstanding")
    started = await c.starter.start(bill.account_id, amount, channel, openid if channel == "wechatpay_jsapi" else None,
                                    bill_id=bill.id)
    return web.json_response({"channel": channel, "bill_no": bill.number,
                              **_money("amount", amount or bill.outstanding), **started}, status=201)


async def create_payment(request: web.Request) -> web.Response:
    """Start a recharge of a bound account, or with `bill_no` the payment of a bill; the answer carries
    what the client needs to pay."""
    openid, c = _openid(request), ctx(request)
    body = await json_body(request)
    channel = body.get("channel", "wechatpay_jsapi")
    if channel not in CHANNELS:
        raise ApiError(400, f"`channel` must be one of {', '.join(CHANNELS)}")
    if body.get("bill_no") is not None:
        return await _bill_payment(request, body, openid, channel)
    account_id = int_param(body.get("account_id"), "account_id", 1, MAX_ID)
    amount = parse_amount(body.get("amount"))
    if await c.port.account(account_id, openid) is None:
        raise ApiError(404, "no such room among your bindings")
    started = await c.starter.start(account_id, amount, channel, openid if channel == "wechatpay_jsapi" else None)
    return web.json_response({"channel": channel, **_money("amount", amount), **started}, status=201)


async def openapi(request: web.Request) -> web.Response:
    from api.openapi import document

    return web.json_response(document(ctx(request).public_url))
