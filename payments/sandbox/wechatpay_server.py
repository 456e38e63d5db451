"""A local WeChat Pay API v3 server: checks the merchant's signatures, signs its answers,
keeps orders, and sends AES-256-GCM encrypted, platform-signed notifies.

Written from the documented v3 wire format, independently of ``payments.wechatpay_crypto``:
- request: ``Authorization: WECHATPAY2-SHA256-RSA2048 mchid=..,nonce_str=..,signature=..,
  timestamp=..,serial_no=..``; signed message ``METHOD\\nURL\\nTIMESTAMP\\nNONCE\\nBODY\\n``.
- answers and notifies: ``Wechatpay-Timestamp/-Nonce/-Signature/-Serial`` headers; signed message
  ``TIMESTAMP\\nNONCE\\nBODY\\n`` with the platform key.
- notify resource: AEAD_AES_256_GCM with the APIv3 key, base64 ciphertext (tag appended).

Usage::

    sandbox = await start_wechatpay_sandbox(keys.wechatpay)   # sandbox.url is the gateway
    deliveries = await sandbox.pay(out_trade_no)
    deliveries = await sandbox.complete_refund(out_refund_no)
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from payments.sandbox.delivery import Delivery, deliver, serve
from payments.sandbox.keys import WechatPayKeys
from payments.sandbox.wechatpay_orders import (
    WechatFault,
    WechatOrder,
    WechatOrderBook,
    WechatRefund,
    now,
)

SIGNATURE_WINDOW_S = 300
AUTH = re.compile(r'^WECHATPAY2-SHA256-RSA2048 (.*)$')
AUTH_PARAM = re.compile(r'(\w+)="([^"]*)"')

Answer = tuple[int, dict[str, Any] | None]


def _rsa_sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


@cache
def _impostor_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class WechatPaySandbox:
    """The running sandbox: ``url`` is the gateway to configure as WECHATPAY_GATEWAY."""

    def __init__(self, keys: WechatPayKeys) -> None:
        self.keys = keys
        self.url = ""
        self.book = WechatOrderBook(keys)
        self.orders = self.book.orders
        self.deliveries: list[Delivery] = []
        self.forge_answers = False  # sign answers with a key that is not the platform's
        platform = serialization.load_pem_private_key(keys.platform_private_pem.encode(), None)
        merchant = serialization.load_pem_public_key(keys.merchant_public_pem.encode())
        assert isinstance(platform, rsa.RSAPrivateKey) and isinstance(merchant, rsa.RSAPublicKey)
        self._platform_key, self._merchant_key = platform, merchant
        self._failures_left = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- control API for tests and benchmarks -------------------------------------------
    @property
    def refund_status_on_create(self) -> str:
        """PROCESSING (default, as WeChat usually answers) or SUCCESS for an instant refund."""
        return self.book.refund_status_on_create

    @refund_status_on_create.setter
    def refund_status_on_create(self, status: str) -> None:
        self.book.refund_status_on_create = status

    def add_order(self, out_trade_no: str, total_fen: int, notify_url: str,
                  openid: str = "o_sandbox_openid") -> WechatOrder:
        """Put an order in directly, as if the merchant had created it."""
        return self.book.new_order(out_trade_no, total_fen, "recharge", notify_url, "JSAPI", openid)

    def fail_requests(self, count: int) -> None:
        """Answer the next ``count`` API calls with 500 SYSTEM_ERROR."""
        self._failures_left = count

    def jsapi_order(self, params: Mapping[str, str]) -> WechatOrder | None:
        """What the WeChat client does with the page's pay params: check paySign, find order."""
        message = "".join(f"{params.get(k, '')}\n" for k in ("appId", "timeStamp", "nonceStr",
                                                              "package")).encode()
        try:
            self._merchant_key.verify(base64.b64decode(params.get("paySign", "")), message,
                                      padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            return None
        prepay_id = params.get("package", "").removeprefix("prepay_id=")
        if params.get("appId") != self.keys.appid:
            return None
        return next((o for o in self.orders.values() if o.prepay_id == prepay_id), None)

    async def pay(self, out_trade_no: str, **notify_options: Any) -> list[Delivery]:
        """The buyer pays: trade_state SUCCESS, then TRANSACTION.SUCCESS is sent."""
        order = self.orders[out_trade_no]
        if order.trade_state in ("NOTPAY", "USERPAYING"):
            self.book.mark_paid(order)
        return await self.notify(out_trade_no, **notify_options)

    async def notify(self, out_trade_no: str, *, times: int = 1, concurrently: bool = False,
                     delay_s: float = 0.0, **build_options: Any) -> list[Delivery]:
        """POST the transaction notify for the order's current state."""
        headers, body = self.build_notify(out_trade_no, **build_options)
        return await self._send(self.orders[out_trade_no].notify_url, headers, body,
                                times, concurrently, delay_s)

    async def complete_refund(self, out_refund_no: str, *, status: str = "SUCCESS",
                              times: int = 1, concurrently: bool = False, delay_s: float = 0.0,
                              **build_options: Any) -> list[Delivery]:
        """Settle a refund (SUCCESS / CLOSED / ABNORMAL) and send the REFUND.* notify."""
        order, refund = self.book.refund_by_no(out_refund_no)
        refund.status = status
        refund.success_time = now() if status == "SUCCESS" else None
        headers, body = self.build_refund_notify(out_refund_no, **build_options)
        return await self._send(refund.notify_url or order.notify_url, headers, body,
                                times, concurrently, delay_s)

    def build_notify(self, out_trade_no: str, **options: Any) -> tuple[dict[str, str], bytes]:
        """(headers, body) of a TRANSACTION.* notify; see ``_event`` for the options."""
        order = self.orders[out_trade_no]
        event = "TRANSACTION.SUCCESS" if order.trade_state == "SUCCESS" else "TRANSACTION.CLOSED"
        return self._event(event, "支付成功", "transaction", self.book.transaction(order), **options)

    def build_refund_notify(self, out_refund_no: str,
                            **options: Any) -> tuple[dict[str, str], bytes]:
        """(headers, body) of a REFUND.* notify."""
        order, refund = self.book.refund_by_no(out_refund_no)
        plain = {
            "mchid": self.keys.mchid, "out_trade_no": order.out_trade_no,
            "transaction_id": order.transaction_id, "out_refund_no": refund.out_refund_no,
            "refund_id": refund.refund_id, "refund_status": refund.status,
            "user_received_account": "支付用户零钱",
            "amount": {"total": order.total, "refund": refund.amount,
                       "payer_total": order.total, "payer_refund": refund.amount},
        }
        if refund.success_time:
            plain["success_time"] = refund.success_time.isoformat()
        return self._event(f"REFUND.{refund.status}", "退款结果", "refund", plain, **options)

    async def stop(self) -> None:
        """Stop serving and close the notify client."""
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> WechatPaySandbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _start(self, host: str, port: int) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/v3/pay/transactions/jsapi", self._jsapi)
        app.router.add_post("/v3/pay/transactions/native", self._native)
        app.router.add_get("/v3/pay/transactions/out-trade-no/{no}", self._query)
        app.router.add_post("/v3/pay/transactions/out-trade-no/{no}/close", self._close)
        app.router.add_post("/v3/refund/domestic/refunds", self._refund)
        app.router.add_get("/v3/refund/domestic/refunds/{no}", self._refund_query)
        self._runner, self.url = await serve(app, host, port)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def _send(self, url: str, headers: dict[str, str], body: bytes, times: int,
                    concurrently: bool, delay_s: float) -> list[Delivery]:
        assert self._session is not None, "sandbox not started"
        sent = await deliver(self._session, url, headers, body, times=times,
                             concurrently=concurrently, delay_s=delay_s)
        self.deliveries.extend(sent)
        return sent

    def _event(self, event_type: str, summary: str, original_type: str,
               plain: dict[str, Any], *, overrides: Mapping[str, Any] | None = None,
               tamper: Mapping[str, Any] | None = None, forge: bool = False,
               timestamp_offset_s: int = 0, apiv3_key: str | None = None,
               serial: str | None = None) -> tuple[dict[str, str], bytes]:
        """A signed, encrypted notify. ``overrides``: plaintext fields changed before signing;
        ``tamper``: plaintext fields changed after signing (re-encrypted); ``forge``: signed
        by an impostor; ``timestamp_offset_s``: shifts Wechatpay-Timestamp (stale replays);
        ``apiv3_key``: encrypt with another key; ``serial``: another Wechatpay-Serial."""
        key = (apiv3_key or self.keys.apiv3_key).encode()
        nonce = secrets.token_hex(6)
        event = {"id": str(uuid.uuid4()), "create_time": now().isoformat(),
                 "resource_type": "encrypt-resource", "event_type": event_type,
                 "summary": summary, "resource": self._encrypt(key, {**plain, **(overrides or {})},
                                                               original_type, nonce)}
        body = _json(event)
        headers = self._signature_headers(body, forge=forge, offset_s=timestamp_offset_s)
        if serial is not None:
            headers["Wechatpay-Serial"] = serial
        if tamper:
            event["resource"] = self._encrypt(key, {**plain, **(overrides or {}), **tamper},
                                              original_type, nonce)
            body = _json(event)
        return {**headers, "Content-Type": "application/json"}, body

    @staticmethod
    def _encrypt(key: bytes, plain: Mapping[str, Any], associated: str,
                 nonce: str) -> dict[str, str]:
        sealed = AESGCM(key).encrypt(nonce.encode(), _json(plain), associated.encode())
        return {"original_type": associated, "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(sealed).decode(), "associated_data": associated,
                "nonce": nonce}

    def _signature_headers(self, body: bytes, *, forge: bool = False,
                           offset_s: int = 0) -> dict[str, str]:
        timestamp, nonce = str(int(time.time()) + offset_s), secrets.token_hex(16)
        key = _impostor_key() if forge else self._platform_key
        return {"Wechatpay-Timestamp": timestamp, "Wechatpay-Nonce": nonce,
                "Wechatpay-Signature": _rsa_sign(key, f"{timestamp}\n{nonce}\n".encode()
                                                 + body + b"\n"),
                "Wechatpay-Serial": self.keys.platform_serial,
                "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"}

    # -- the API ------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request,
                          handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        body = await request.read()
        try:
            self._authenticate(request, body)
            if self._failures_left > 0:
                self._failures_left -= 1
                raise WechatFault(500, "SYSTEM_ERROR", "系统错误")
            status, answer = await handler(request)
        except WechatFault as fault:
            status, answer = fault.status, {"code": fault.code, "message": fault.message}
        except ValueError:
            status, answer = 400, {"code": "PARAM_ERROR", "message": "请求体不是 JSON"}
        payload = b"" if answer is None else _json(answer)
        headers = self._signature_headers(payload, forge=self.forge_answers)
        headers["Request-ID"] = str(uuid.uuid4())
        return web.Response(status=status, body=payload, headers=headers,
                            content_type="application/json" if payload else None)

    def _authenticate(self, request: web.Request, body: bytes) -> None:
        match = AUTH.match(request.headers.get("Authorization", ""))
        params = dict(AUTH_PARAM.findall(match.group(1))) if match else {}
        if params.get("mchid") != self.keys.mchid or \
                params.get("serial_no") != self.keys.merchant_serial:
            raise WechatFault(401, "SIGN_ERROR", "商户号或证书序列号不正确")
        timestamp, nonce = params.get("timestamp", ""), params.get("nonce_str", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > SIGNATURE_WINDOW_S:
            raise WechatFault(401, "SIGN_ERROR", "请求时间戳超出有效期")
        message = (f"{request.method}\n{request.raw_path}\n{timestamp}\n{nonce}\n".encode()
                   + body + b"\n")
        try:
            self._merchant_key.verify(base64.b64decode(params.get("signature", "")), message,
                                      padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError) as ex:
            raise WechatFault(401, "SIGN_ERROR", "签名错误") from ex

    async def _jsapi(self, request: web.Request) -> Answer:
        order = self.book.open(await _json_body(request), "JSAPI")
        return 200, {"prepay_id": order.prepay_id}

    async def _native(self, request: web.Request) -> Answer:
        order = self.book.open(await _json_body(request), "NATIVE")
        return 200, {"code_url": f"weixin://wxpay/bizpayurl?pr={order.prepay_id[-8:]}"}

    async def _query(self, request: web.Request) -> Answer:
        if request.query.get("mchid") != self.keys.mchid:
            raise WechatFault(400, "PARAM_ERROR", "mchid 不正确")
        order = self.orders.get(request.match_info["no"])
        if order is None:
            raise WechatFault(404, "ORDER_NOT_EXIST", "订单不存在")
        return 200, self.book.transaction(order)

    async def _close(self, request: web.Request) -> Answer:
        order = self.orders.get(request.match_info["no"])
        if order is None:
            raise WechatFault(404, "ORDER_NOT_EXIST", "订单不存在")
        if order.trade_state == "SUCCESS":
            raise WechatFault(400, "ORDER_PAID", "订单已支付")
        order.trade_state = "CLOSED"
        return 204, None

    async def _refund(self, request: web.Request) -> Answer:
        req = await _json_body(request)
        order = self.orders.get(str(req.get("out_trade_no")))
        if order is None:
            raise WechatFault(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        out_refund_no = str(req.get("out_refund_no") or "")
        refund = order.refunds.get(out_refund_no) or self.book.new_refund(order, req, out_refund_no)
        return 200, self.book.refund_answer(order, refund)

    async def _refund_query(self, request: web.Request) -> Answer:
        order, refund = self.book.refund_by_no(request.match_info["no"])
        return 200, self.book.refund_answer(order, refund)

async def _json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (aiohttp caches the body the middleware already read)."""
    value = json.loads(await request.read() or b"{}")
    if not isinstance(value, dict):
        raise WechatFault(400, "PARAM_ERROR", "请求体不是 JSON 对象")
    return value


async def start_wechatpay_sandbox(keys: WechatPayKeys, *, host: str = "127.0.0.1",
                                  port: int = 0) -> WechatPaySandbox:
    """Start a local WeChat Pay v3 server on ``host:port`` (0 = a free port)."""
    sandbox = WechatPaySandbox(keys)
    await sandbox._start(host, port)
    return sandbox


__all__ = ["Delivery", "WechatOrder", "WechatPaySandbox", "WechatRefund",
           "start_wechatpay_sandbox"]
