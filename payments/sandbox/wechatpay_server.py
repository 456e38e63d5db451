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
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from payments.sandbox.delivery import Delivery, deliver, serve
from payments.sandbox.keys import WechatPayKeys

SHANGHAI = ZoneInfo("Asia/Shanghai")
SIGNATURE_WINDOW_S = 300
AUTH = re.compile(r'^WECHATPAY2-SHA256-RSA2048 (.*)$')
AUTH_PARAM = re.compile(r'(\w+)="([^"]*)"')

Answer = tuple[int, dict[str, Any] | None]


class WechatFault(Exception):
    """A documented v3 error answer: HTTP status plus {"code", "message"}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code)
        self.status, self.code, self.message = status, code, message


@dataclass
class WechatRefund:
    """One refund request, keyed by out_refund_no."""

    out_refund_no: str
    refund_id: str
    amount: int
    status: str
    notify_url: str | None
    created_at: datetime
    success_time: datetime | None = None


@dataclass
class WechatOrder:
    """One transaction as the sandbox holds it (amounts in fen, as on the wire)."""

    out_trade_no: str
    total: int
    description: str
    notify_url: str
    trade_type: str  # JSAPI | NATIVE
    prepay_id: str
    openid: str | None
    created_at: datetime
    trade_state: str = "NOTPAY"
    transaction_id: str | None = None
    success_time: datetime | None = None
    refunds: dict[str, WechatRefund] = field(default_factory=dict)

    @property
    def refunded(self) -> int:
        return sum(r.amount for r in self.refunds.values() if r.status != "CLOSED")


def _rsa_sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


@cache
def _impostor_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _now() -> datetime:
    return datetime.now(SHANGHAI).replace(microsecond=0)


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class WechatPaySandbox:
    """The running sandbox: ``url`` is the gateway to configure as WECHATPAY_GATEWAY."""

    def __init__(self, keys: WechatPayKeys) -> None:
        self.keys = keys
        self.url = ""
        self.orders: dict[str, WechatOrder] = {}
        self.deliveries: list[Delivery] = []
        self.refund_status_on_create = "PROCESSING"  # WeChat usually settles refunds later
        self.forge_answers = False  # sign answers with a key that is not the platform's
        platform = serialization.load_pem_private_key(keys.platform_private_pem.encode(), None)
        merchant = serialization.load_pem_public_key(keys.merchant_public_pem.encode())
        assert isinstance(platform, rsa.RSAPrivateKey) and isinstance(merchant, rsa.RSAPublicKey)
        self._platform_key, self._merchant_key = platform, merchant
        self._failures_left = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- control API for tests and benchmarks -------------------------------------------
    def add_order(self, out_trade_no: str, total_fen: int, notify_url: str,
                  openid: str = "o_sandbox_openid") -> WechatOrder:
        """Put an order in directly, as if the merchant had created it."""
        return self._new_order(out_trade_no, total_fen, "recharge", notify_url, "JSAPI", openid)

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
            order.trade_state, order.success_time = "SUCCESS", _now()
            order.transaction_id = "4200" + _now().strftime("%Y%m%d") + f"{secrets.randbelow(10**16):016d}"
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
        order, refund = self._refund_by_no(out_refund_no)
        refund.status = status
        refund.success_time = _now() if status == "SUCCESS" else None
        headers, body = self.build_refund_notify(out_refund_no, **build_options)
        return await self._send(refund.notify_url or order.notify_url, headers, body,
                                times, concurrently, delay_s)

    def build_notify(self, out_trade_no: str, **options: Any) -> tuple[dict[str, str], bytes]:
        """(headers, body) of a TRANSACTION.* notify; see ``_event`` for the options."""
        order = self.orders[out_trade_no]
        event = "TRANSACTION.SUCCESS" if order.trade_state == "SUCCESS" else "TRANSACTION.CLOSED"
        return self._event(event, "支付成功", "transaction", self._transaction(order), **options)

    def build_refund_notify(self, out_refund_no: str,
                            **options: Any) -> tuple[dict[str, str], bytes]:
        """(headers, body) of a REFUND.* notify."""
        order, refund = self._refund_by_no(out_refund_no)
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
        event = {"id": str(uuid.uuid4()), "create_time": _now().isoformat(),
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
            request["json"] = json.loads(body) if body else {}
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
        order = self._open(request["json"], "JSAPI")
        return 200, {"prepay_id": order.prepay_id}

    async def _native(self, request: web.Request) -> Answer:
        order = self._open(request["json"], "NATIVE")
        return 200, {"code_url": f"weixin://wxpay/bizpayurl?pr={order.prepay_id[-8:]}"}

    async def _query(self, request: web.Request) -> Answer:
        if request.query.get("mchid") != self.keys.mchid:
            raise WechatFault(400, "PARAM_ERROR", "mchid 不正确")
        order = self.orders.get(request.match_info["no"])
        if order is None:
            raise WechatFault(404, "ORDER_NOT_EXIST", "订单不存在")
        return 200, self._transaction(order)

    async def _close(self, request: web.Request) -> Answer:
        order = self.orders.get(request.match_info["no"])
        if order is None:
            raise WechatFault(404, "ORDER_NOT_EXIST", "订单不存在")
        if order.trade_state == "SUCCESS":
            raise WechatFault(400, "ORDER_PAID", "订单已支付")
        order.trade_state = "CLOSED"
        return 204, None

    async def _refund(self, request: web.Request) -> Answer:
        req = request["json"]
        order = self.orders.get(str(req.get("out_trade_no")))
        if order is None:
            raise WechatFault(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        out_refund_no = str(req.get("out_refund_no") or "")
        refund = order.refunds.get(out_refund_no) or self._new_refund(order, req, out_refund_no)
        return 200, self._refund_answer(order, refund)

    async def _refund_query(self, request: web.Request) -> Answer:
        order, refund = self._refund_by_no(request.match_info["no"])
        return 200, self._refund_answer(order, refund)

    # -- state --------------------------------------------------------------------------
    def _open(self, req: Mapping[str, Any], trade_type: str) -> WechatOrder:
        if req.get("appid") != self.keys.appid or req.get("mchid") != self.keys.mchid:
            raise WechatFault(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        amount, out_trade_no = req.get("amount") or {}, str(req.get("out_trade_no") or "")
        total = amount.get("total")
        if not 6 <= len(out_trade_no) <= 32 or not isinstance(total, int) or total <= 0 \
                or amount.get("currency", "CNY") != "CNY" or not req.get("notify_url"):
            raise WechatFault(400, "PARAM_ERROR", "参数错误")
        openid = (req.get("payer") or {}).get("openid")
        if trade_type == "JSAPI" and not openid:
            raise WechatFault(400, "PARAM_ERROR", "JSAPI 下单需要 payer.openid")
        order = self.orders.get(out_trade_no)
        if order is None:
            return self._new_order(out_trade_no, total, str(req.get("description", "")),
                                   str(req["notify_url"]), trade_type, openid)
        if order.total != total or order.trade_type != trade_type:
            raise WechatFault(400, "INVALID_REQUEST", "201 商户订单号重复")
        if order.trade_state == "SUCCESS":
            raise WechatFault(400, "ORDER_PAID", "订单已支付")
        if order.trade_state == "CLOSED":
            raise WechatFault(400, "ORDER_CLOSED", "订单已关闭")
        return order

    def _new_order(self, out_trade_no: str, total: int, description: str, notify_url: str,
                   trade_type: str, openid: str | None) -> WechatOrder:
        order = WechatOrder(out_trade_no, total, description, notify_url, trade_type,
                            "wx" + secrets.token_hex(15), openid, _now())
        self.orders[out_trade_no] = order
        return order

    def _new_refund(self, order: WechatOrder, req: Mapping[str, Any],
                    out_refund_no: str) -> WechatRefund:
        amount = req.get("amount") or {}
        refund, total = amount.get("refund"), amount.get("total")
        if not out_refund_no or not isinstance(refund, int) or refund <= 0:
            raise WechatFault(400, "PARAM_ERROR", "参数错误")
        if order.trade_state not in ("SUCCESS", "REFUND"):
            raise WechatFault(400, "INVALID_REQUEST", "订单未支付")
        if total != order.total:
            raise WechatFault(400, "INVALID_REQUEST", "订单金额与实际不符")
        if order.refunded + refund > order.total:
            raise WechatFault(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        created = WechatRefund(out_refund_no, "5030" + secrets.token_hex(12), refund,
                               self.refund_status_on_create, req.get("notify_url"), _now())
        if created.status == "SUCCESS":
            created.success_time = created.created_at
        order.refunds[out_refund_no] = created
        order.trade_state = "REFUND"
        return created

    def _refund_by_no(self, out_refund_no: str) -> tuple[WechatOrder, WechatRefund]:
        for order in self.orders.values():
            if out_refund_no in order.refunds:
                return order, order.refunds[out_refund_no]
        raise WechatFault(404, "RESOURCE_NOT_EXISTS", "退款单不存在")

    def _refund_answer(self, order: WechatOrder, refund: WechatRefund) -> dict[str, Any]:
        answer = {
            "refund_id": refund.refund_id, "out_refund_no": refund.out_refund_no,
            "transaction_id": order.transaction_id, "out_trade_no": order.out_trade_no,
            "channel": "ORIGINAL", "user_received_account": "支付用户零钱",
            "create_time": refund.created_at.isoformat(), "status": refund.status,
            "amount": {"total": order.total, "refund": refund.amount, "payer_total": order.total,
                       "payer_refund": refund.amount, "currency": "CNY"},
        }
        if refund.success_time:
            answer["success_time"] = refund.success_time.isoformat()
        return answer

    def _transaction(self, order: WechatOrder) -> dict[str, Any]:
        plain: dict[str, Any] = {
            "appid": self.keys.appid, "mchid": self.keys.mchid,
            "out_trade_no": order.out_trade_no, "trade_type": order.trade_type,
            "trade_state": order.trade_state, "trade_state_desc": order.trade_state,
            "attach": "", "amount": {"total": order.total, "currency": "CNY"},
        }
        if order.openid:
            plain["payer"] = {"openid": order.openid}
        if order.transaction_id and order.success_time:
            plain.update(transaction_id=order.transaction_id, bank_type="OTHERS",
                         success_time=order.success_time.isoformat())
            plain["amount"].update(payer_total=order.total, payer_currency="CNY")
        return plain


async def start_wechatpay_sandbox(keys: WechatPayKeys, *, host: str = "127.0.0.1",
                                  port: int = 0) -> WechatPaySandbox:
    """Start a local WeChat Pay v3 server on ``host:port`` (0 = a free port)."""
    sandbox = WechatPaySandbox(keys)
    await sandbox._start(host, port)
    return sandbox


__all__ = ["Delivery", "WechatOrder", "WechatPaySandbox", "WechatRefund",
           "start_wechatpay_sandbox"]
