"""A local Alipay gateway: verifies the app's RSA2 requests, keeps orders, sends signed notifies.

Written from Alipay's documented wire format, independently of the SDK the adapter uses, so a
signing mistake on either side shows up as a failed test:
- requests: form or query parameters; signature = RSA2 over ``k=v`` pairs sorted by key, joined
  by ``&``, without ``sign`` and without empty values; ``timestamp`` in Beijing time.
- answers: ``{"<method>_response": {...}, "sign": "..."}``, signature over the exact JSON text.
- notifies: a form POST; signature over the sorted pairs without ``sign``, ``sign_type``.

Usage::

    sandbox = await start_alipay_sandbox(keys.alipay)   # sandbox.url is the gateway
    ...  adapter creates an order against sandbox.url  ...
    deliveries = await sandbox.pay(out_trade_no)         # POSTs the notify to its notify_url
    await sandbox.stop()
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from billing.money import Money
from payments.sandbox.alipay_orders import (
    AlipayFault,
    AlipayOrder,
    AlipayOrderBook,
    business,
    now,
    parse_amount,
)
from payments.sandbox.delivery import Delivery, deliver, serve
from payments.sandbox.keys import AlipayKeys

SHANGHAI = ZoneInfo("Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
GATEWAY_PATH = "/gateway.do"

Answer = dict[str, Any]


def _private(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _public(pem: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    return key


@cache
def _impostor_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _rsa2(key: rsa.RSAPrivateKey, text: str) -> str:
    return base64.b64encode(key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def _pairs(params: Mapping[str, str], skip: frozenset[str]) -> str:
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in skip and params[k] != "")


class AlipaySandbox:
    """The running sandbox: ``url`` is the gateway to configure as ALIPAY_GATEWAY."""

    def __init__(self, keys: AlipayKeys, *, time_window_s: float = 900.0) -> None:
        self.keys = keys
        self.url = ""
        self.book = AlipayOrderBook()
        self.orders = self.book.orders
        self.deliveries: list[Delivery] = []
        self.requests: list[dict[str, str]] = []  # parameters of every authenticated request
        self._time_window = timedelta(seconds=time_window_s)
        self._alipay_key = _private(keys.alipay_private_pem)
        self._app_key = _public(keys.app_public_pem)
        self._failures_left = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._methods: dict[str, Callable[[dict[str, str], dict[str, Any]], Answer]] = {
            "alipay.trade.precreate": self._precreate,
            "alipay.trade.query": self._query,
            "alipay.trade.refund": self._refund,
        }

    # -- control API for tests and benchmarks -------------------------------------------
    def add_order(self, out_trade_no: str, amount: Money, notify_url: str,
                  subject: str = "recharge") -> AlipayOrder:
        """Put an order in directly, as if the buyer had opened it (for 'unknown order' cases)."""
        order = self.book.new_order(out_trade_no, amount, subject, notify_url)
        order.seen_by_buyer = True
        return order

    def scan(self, out_trade_no: str) -> None:
        """The buyer scanned the QR: from now on trade.query knows the trade."""
        self.orders[out_trade_no].seen_by_buyer = True

    def fail_requests(self, count: int) -> None:
        """Answer the next ``count`` gateway calls with 20000 (service unavailable)."""
        self._failures_left = count

    async def pay(self, out_trade_no: str, **notify_options: Any) -> list[Delivery]:
        """The buyer pays: the trade becomes TRADE_SUCCESS and the notify is sent."""
        order = self.orders[out_trade_no]
        if order.status == "WAIT_BUYER_PAY":
            order.status, order.paid_at, order.seen_by_buyer = "TRADE_SUCCESS", now(), True
        return await self.notify(out_trade_no, **notify_options)

    async def notify(self, out_trade_no: str, *, times: int = 1, concurrently: bool = False,
                     delay_s: float = 0.0, **build_options: Any) -> list[Delivery]:
        """POST the notify for the trade's current state to its notify_url."""
        order = self.orders[out_trade_no]
        if not order.notify_url:
            raise ValueError(f"{out_trade_no} has no notify_url")
        headers, body = self.build_notify(out_trade_no, **build_options)
        assert self._session is not None, "sandbox not started"
        sent = await deliver(self._session, order.notify_url, headers, body, times=times,
                             concurrently=concurrently, delay_s=delay_s)
        self.deliveries.extend(sent)
        return sent

    def build_notify(self, out_trade_no: str, *, overrides: Mapping[str, str] | None = None,
                     tamper: Mapping[str, str] | None = None,
                     forge: bool = False) -> tuple[dict[str, str], bytes]:
        """(headers, body) of a notify; ``overrides`` are signed, ``tamper`` is applied after
        signing, ``forge`` signs with a key that is not Alipay's."""
        fields = {**self._notify_fields(self.orders[out_trade_no]), **(overrides or {})}
        key = _impostor_key() if forge else self._alipay_key
        fields["sign"] = _rsa2(key, _pairs(fields, frozenset({"sign", "sign_type"})))
        fields.update(tamper or {})
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        return headers, urlencode(fields).encode()

    async def stop(self) -> None:
        """Stop serving and close the notify client."""
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> AlipaySandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_route("*", GATEWAY_PATH, self._gateway)
        self._runner, base = await serve(app, host, port)
        self.url = base + GATEWAY_PATH
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    # -- the gateway --------------------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        params = {**request.query, **(await request.post())}
        params = {k: str(v) for k, v in params.items()}
        method = params.get("method", "")
        if method == "alipay.trade.wap.pay":
            return await self._wap_page(params)
        known = method in self._methods
        key = method.replace(".", "_") + "_response" if known else "error_response"
        try:
            biz = self._authenticate(params)
            if not known:
                raise AlipayFault("40002", "Invalid Arguments", "isv.invalid-method", "不存在的方法名")
            if self._failures_left > 0:
                self._failures_left -= 1
                raise AlipayFault("20000", "Service Currently Unavailable", "isp.unknow-error",
                                  "系统繁忙")
            answer = {"code": "10000", "msg": "Success", **self._methods[method](params, biz)}
            signed = True
        except AlipayFault as fault:
            answer, signed = fault.answer, fault.signed
        return self._answer(key, answer, signed)

    def _answer(self, key: str, answer: Answer, signed: bool) -> web.Response:
        text = json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
        document = f'{{"{key}":{text}'
        if signed:
            document += f',"sign":"{_rsa2(self._alipay_key, text)}"'
        return web.Response(text=document + "}", content_type="application/json", charset="utf-8")

    def _authenticate(self, params: dict[str, str]) -> dict[str, Any]:
        """Check app id, RSA2 signature and timestamp exactly as the gateway does."""
        if params.get("app_id") != self.keys.app_id:
            raise AlipayFault("40002", "Invalid Arguments", "isv.invalid-app-id", "无效的AppID参数",
                              signed=False)
        if params.get("sign_type") != "RSA2":
            raise AlipayFault("40002", "Invalid Arguments", "isv.invalid-signature-type",
                              "无效的签名类型", signed=False)
        try:
            self._app_key.verify(base64.b64decode(params.get("sign", "")),
                                 _pairs(params, frozenset({"sign"})).encode(),
                                 padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError) as ex:
            raise AlipayFault("40002", "Invalid Arguments", "isv.invalid-signature", "验签出错",
                              signed=False) from ex
        self._check_timestamp(params.get("timestamp", ""))
        self.requests.append(dict(params))
        try:
            return dict(json.loads(params.get("biz_content") or "{}"))
        except ValueError as ex:
            raise AlipayFault("40002", "Invalid Arguments", "isv.invalid-biz-content",
                              "biz_content 不是 JSON") from ex

    def _check_timestamp(self, text: str) -> None:
        try:
            sent = datetime.strptime(text, TIME_FORMAT).replace(tzinfo=SHANGHAI)
        except ValueError as ex:
            raise AlipayFault("40002", "Invalid Arguments", "isv.invalid-timestamp",
                              "非法的时间戳参数") from ex
        if abs(now() - sent) > self._time_window:
            raise AlipayFault("40002", "Invalid Arguments", "isv.invalid-timestamp",
                              "时间戳参数超过有效时间 (Beijing time expected)")

    async def _wap_page(self, params: dict[str, str]) -> web.Response:
        try:
            biz = self._authenticate(params)
            order = self.book.open(biz, params.get("notify_url"))
        except AlipayFault as fault:
            return web.Response(status=400, text=json.dumps(fault.answer, ensure_ascii=False))
        order.seen_by_buyer = True
        return web.Response(text=f"<html><body>支付宝收银台 {order.out_trade_no} "
                                 f"¥{order.total.to_yuan_str()}</body></html>",
                            content_type="text/html")

    # -- methods ------------------------------------------------------------------------
    def _precreate(self, params: dict[str, str], biz: dict[str, Any]) -> Answer:
        order = self.book.open(biz, params.get("notify_url"))
        return {"out_trade_no": order.out_trade_no,
                "qr_code": f"https://qr.alipay.com/sandbox{order.trade_no[-12:]}"}

    def _query(self, params: dict[str, str], biz: dict[str, Any]) -> Answer:
        order = self.orders.get(str(biz.get("out_trade_no")))
        if order is None or not order.seen_by_buyer:
            raise business("ACQ.TRADE_NOT_EXIST", "交易不存在")
        answer = {"trade_no": order.trade_no, "out_trade_no": order.out_trade_no,
                  "buyer_logon_id": "tenant***@example.com", "trade_status": order.status,
                  "total_amount": order.total.to_yuan_str()}
        if order.paid_at:
            answer["send_pay_date"] = order.paid_at.strftime(TIME_FORMAT)
            answer["buyer_pay_amount"] = order.total.to_yuan_str()
        return answer

    def _refund(self, params: dict[str, str], biz: dict[str, Any]) -> Answer:
        order = self.orders.get(str(biz.get("out_trade_no")))
        if order is None:
            raise business("ACQ.TRADE_NOT_EXIST", "交易不存在")
        request_no = str(biz.get("out_request_no") or order.out_trade_no)
        fund_change = "N"
        if request_no not in order.refunds:
            self.book.apply_refund(order, request_no, parse_amount(biz.get("refund_amount")))
            fund_change = "Y"
        return {"trade_no": order.trade_no, "out_trade_no": order.out_trade_no,
                "buyer_logon_id": "tenant***@example.com", "fund_change": fund_change,
                "refund_fee": order.refunded.to_yuan_str(),
                "gmt_refund_pay": now().strftime(TIME_FORMAT)}

    def _notify_fields(self, order: AlipayOrder) -> dict[str, str]:
        fields = {
            "notify_time": now().strftime(TIME_FORMAT), "notify_type": "trade_status_sync",
            "notify_id": secrets.token_hex(16), "app_id": self.keys.app_id,
            "auth_app_id": self.keys.app_id, "charset": "utf-8", "version": "1.0",
            "sign_type": "RSA2", "trade_no": order.trade_no, "out_trade_no": order.out_trade_no,
            "trade_status": order.status, "total_amount": order.total.to_yuan_str(),
            "subject": order.subject, "seller_id": self.keys.seller_id,
            "buyer_id": "2088102177846880", "gmt_create": order.created_at.strftime(TIME_FORMAT),
        }
        if order.paid_at:
            paid = order.total.to_yuan_str()
            fields.update(gmt_payment=order.paid_at.strftime(TIME_FORMAT), receipt_amount=paid,
                          buyer_pay_amount=paid, invoice_amount=paid)
        if order.refunds:
            fields.update(refund_fee=order.refunded.to_yuan_str(),
                          out_biz_no=list(order.refunds)[-1],
                          gmt_refund=now().strftime(TIME_FORMAT))
        return fields


async def start_alipay_sandbox(keys: AlipayKeys, *, host: str = "127.0.0.1", port: int = 0,
                               time_window_s: float = 900.0) -> AlipaySandbox:
    """Start a local Alipay gateway on ``host:port`` (0 = a free port)."""
    sandbox = AlipaySandbox(keys, time_window_s=time_window_s)
    await sandbox._start(host, port)
    return sandbox


__all__ = ["AlipayOrder", "AlipaySandbox", "Delivery", "start_alipay_sandbox"]
