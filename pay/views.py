"""Server-rendered pay page views: a signed link opens the page; the result page polls the order."""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from api import tokens
from api.context import TenantContext, ctx
from api.errors import ApiError
from api.starter import CHANNELS, MAX_AMOUNT, MIN_AMOUNT
from api.wechat_login import LoginRefused, WeChatDown, oauth_openid
from billing.money import Money, MoneyError
from services.bill_payments import PayableBill, payable_bill
from services.tenant import pay_signature

PRESETS = (Money.yuan(20), Money.yuan(50), Money.yuan(100), Money.yuan(200))
OPENID_COOKIE = "mp_pay_openid"
ENV = jinja2.Environment(loader=jinja2.PackageLoader("pay", "templates"), autoescape=True)


def _page(name: str, status: int = 200, **values: Any) -> web.Response:
    return web.Response(text=ENV.get_template(name).render(**values), status=status, content_type="text/html")


def _link_query(account_id: int, sig: str, **extra: str) -> str:
    return urlencode({"account": account_id, "sig": sig, **extra})


async def _account(request: web.Request, data: Any) -> tuple[int, str, Any]:
    """The account a signed link names, or a 403/404 page; (id, sig, (Mine, balance))."""
    raw, sig = str(data.get("account", "")), str(data.get("sig", ""))
    account_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else 0
    c = ctx(request)
    if not account_id or not hmac.compare_digest(sig, pay_signature(c.secret_key, account_id)):
        raise web.HTTPForbidden(text=ENV.get_template("error.html").render(
            message="链接无效，请从公众号重新获取充值链接。"), content_type="text/html")
    found = await c.port.account(account_id)
    if found is None:
        raise web.HTTPNotFound(text=ENV.get_template("error.html").render(
            message="该账户不存在或已销户。"), content_type="text/html")
    return account_id, sig, found


def _amount(raw: str) -> Money | str:
    try:
        amount = Money.yuan(raw) if raw and len(raw) <= 12 else None
    except MoneyError:
        amount = None
    if amount is None or not MIN_AMOUNT <= amount <= MAX_AMOUNT:
        return f"请输入 {MIN_AMOUNT.to_yuan_str()} 至 {MAX_AMOUNT.to_yuan_str()} 元之间的金额（最多两位小数）"
    return amount


def _form(request: web.Request, account_id: int, sig: str, found: Any, amount: str = "", channel: str = "",
          error: str = "", status: int = 200) -> web.Response:
    mine, balance = found
    in_wechat = "MicroMessenger" in request.headers.get("User-Agent", "")
    return _page("pay.html", status, room=mine.room.label, balance=balance.to_yuan_str(), account=account_id,
                 sig=sig, presets=[p.to_yuan_str() for p in PRESETS], amount=amount, error=error,
                 channel=channel or ("wechatpay_jsapi" if in_wechat else "alipay_wap"))


async def _bill(request: web.Request, account_id: int, raw: str) -> PayableBill:
    """The account's bill a link or form names, or a 404 page."""
    bill_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else 0
    async with ctx(request).port.sessions() as session:
        bill = await payable_bill(session, bill_id, account_id) if bill_id else None
    if bill is None:
        raise web.HTTPNotFound(text=ENV.get_template("error.html").render(message="该账单不存在。"),
                               content_type="text/html")
    return bill


def _bill_amount(raw: str, bill: PayableBill) -> Money | str:
    """Empty: all that is outstanding; else a part of it."""
    if not raw:
        return bill.outstanding
    amount = _amount(raw)
    if isinstance(amount, Money) and amount > bill.outstanding:
        return f"金额不能超过待缴的 {bill.outstanding.to_yuan_str()} 元"
    return amount


def _bill_form(request: web.Request, account_id: int, sig: str, found: Any, bill: PayableBill, amount: str = "",
               channel: str = "", error: str = "", status: int = 200) -> web.Response:
    mine, _ = found
    in_wechat = "MicroMessenger" in request.headers.get("User-Agent", "")
    return _page("bill.html", status, room=mine.room.label, account=account_id, sig=sig, bill=bill,
                 amount=amount or bill.outstanding.to_yuan_str(), error=error or ("" if bill.payable else "该账单无需支付"),
                 channel=channel or ("wechatpay_jsapi" if in_wechat else "alipay_wap"))


async def pay_form(request: web.Request) -> web.Response:
    """The amount and method picker for one account (with `bill`: for paying that bill)."""
    account_id, sig, found = await _account(request, request.query)
    if request.query.get("bill"):
        bill = await _bill(request, account_id, request.query["bill"])
        return _bill_form(request, account_id, sig, found, bill, request.query.get("amount", "")[:12])
    preset = request.query.get("amount", "")
    return _form(request, account_id, sig, found, preset if not isinstance(_amount(preset), str) else "")


async def start(request: web.Request) -> web.StreamResponse:
    """Start the payment and hand the phone to the provider (Alipay page or WeChat's JS bridge)."""
    form = await request.post()
    account_id, sig, found = await _account(request, form)
    if form.get("bill"):
        return await _start_bill(request, form, account_id, sig, found)
    raw, channel = str(form.get("amount", "")).strip(), str(form.get("channel", ""))
    amount = _amount(raw)
    if channel not in CHANNELS:
        return _form(request, account_id, sig, found, raw, error="请选择支付方式", status=400)
    if isinstance(amount, str):
        return _form(request, account_id, sig, found, raw, channel, error=amount, status=400)
    c = ctx(request)
    openid = _openid(request, c)
    if channel == "wechatpay_jsapi" and openid is None and c.official is not None:
        raise _oauth_redirect(c, f"/pay/?{_link_query(account_id, sig, amount=amount.to_yuan_str())}")
    result_url = f"{c.public_url}/pay/result?"
    started = await c.starter.start(account_id, amount, channel, openid, return_url=result_url + _link_query(
        account_id, sig))
    result = f"/pay/result?{_link_query(account_id, sig, order=str(started['out_trade_no']))}"
    if started.get("pay_url"):
        raise web.HTTPSeeOther(str(started["pay_url"]))
    if started.get("jsapi_params"):
        return _page("jsapi.html", params=started["jsapi_params"], result=result)
    raise web.HTTPSeeOther(result)


async def _start_bill(request: web.Request, form: Any, account_id: int, sig: str, found: Any) -> web.StreamResponse:
    """Start paying a bill (all that is outstanding, or the part typed in)."""
    bill = await _bill(request, account_id, str(form.get("bill", "")))
    raw, channel = str(form.get("amount", "")).strip(), str(form.get("channel", ""))
    if not bill.payable:
        return _bill_form(request, account_id, sig, found, bill, raw, channel, status=409)
    if channel not in CHANNELS:
        return _bill_form(request, account_id, sig, found, bill, raw, error="请选择支付方式", status=400)
    amount = _bill_amount(raw, bill)
    if isinstance(amount, str):
        return _bill_form(request, account_id, sig, found, bill, raw, channel, error=amount, status=400)
    c = ctx(request)
    openid = _openid(request, c)
    link = _link_query(account_id, sig, bill=str(bill.id))
    if channel == "wechatpay_jsapi" and openid is None and c.official is not None:
        raise _oauth_redirect(c, f"/pay/?{_link_query(account_id, sig, bill=str(bill.id), amount=raw)}")
    started = await c.starter.start(account_id, amount, channel, openid, return_url=f"{c.public_url}/pay/result?{link}",
                                    bill_id=bill.id)
    result = f"/pay/result?{link}&{urlencode({'order': str(started['out_trade_no'])})}"
    if started.get("pay_url"):
        raise web.HTTPSeeOther(str(started["pay_url"]))
    if started.get("jsapi_params"):
        return _page("jsapi.html", params=started["jsapi_params"], result=result)
    raise web.HTTPSeeOther(result)


async def result(request: web.Request) -> web.Response:
    """The page that waits for the provider's notice and shows the new balance."""
    account_id, sig, (mine, balance) = await _account(request, request.query)
    order = (request.query.get("order") or request.query.get("out_trade_no") or "")[:64]  # Alipay appends out_trade_no
    status_url = f"/pay/status?{_link_query(account_id, sig, order=order)}" if order else ""
    bill = request.query.get("bill", "")
    if bill:  # a bill payment: back to that bill, which shows what is left to pay
        await _bill(request, account_id, bill)
        return _page("result.html", room=mine.room.label, balance=balance.to_yuan_str(), status_url=status_url,
                     again=f"/pay/?{_link_query(account_id, sig, bill=bill)}", done="缴费成功", again_text="查看账单")
    return _page("result.html", room=mine.room.label, balance=balance.to_yuan_str(), status_url=status_url,
                 again=f"/pay/?{_link_query(account_id, sig)}", done="充值成功", again_text="继续充值")


async def status(request: web.Request) -> web.Response:
    """JSON for the result page's polling: the order's state and the balance now."""
    raw, sig = request.query.get("account", ""), request.query.get("sig", "")
    account_id = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else 0
    c = ctx(request)
    if not account_id or not hmac.compare_digest(sig, pay_signature(c.secret_key, account_id)):
        raise ApiError(403, "invalid link")
    state = await c.port.order_state(account_id, request.query.get("order", "")[:64])
    found = await c.port.account(account_id)
    if state is None or found is None:
        raise ApiError(404, "no such order")
    return web.json_response({"state": state, "credited": state in ("credited", "refunded"),
                              "failed": state in ("closed", "failed"), "balance": found[1].to_yuan_str(),
                              "balance_fen": found[1].fen})


def _openid(request: web.Request, c: TenantContext) -> str | None:
    cookie = request.cookies.get(OPENID_COOKIE)
    if not cookie:
        return None
    try:
        return tokens.verify(c.secret_key, cookie)
    except tokens.BadToken:
        return None


def _oauth_redirect(c: TenantContext, back: str) -> web.HTTPSeeOther:
    assert c.official is not None
    query = urlencode({"appid": c.official.appid, "redirect_uri": f"{c.public_url}/pay/oauth",
                       "response_type": "code", "scope": "snsapi_base", "state": back[:600]})
    return web.HTTPSeeOther(f"https://open.weixin.qq.com/connect/oauth2/authorize?{query}#wechat_redirect")


async def oauth(request: web.Request) -> web.Response:
    """WeChat's OAuth callback: remember the payer's openid in a signed cookie, then go back."""
    c = ctx(request)
    back = request.query.get("state", "")
    if not back.startswith("/pay/?") or c.official is None or c.http is None:
        raise web.HTTPBadRequest(text="bad OAuth callback")
    try:
        openid = await oauth_openid(c.http, c.official, request.query.get("code", "")[:128])
    except LoginRefused as ex:
        raise web.HTTPBadRequest(text="WeChat refused the OAuth code") from ex
    except WeChatDown as ex:
        raise web.HTTPBadGateway(text=str(ex)) from ex
    response = web.HTTPSeeOther(back)
    response.set_cookie(OPENID_COOKIE, tokens.issue(c.secret_key, openid, 86_400), max_age=86_400,
                        httponly=True, samesite="Lax", path="/pay/")
    raise response
