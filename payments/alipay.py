"""Alipay (open platform, RSA2) adapter: python-alipay-sdk builds and signs, aiohttp sends.

The SDK's own HTTP calls are sync ``urlopen`` to a hard-coded gateway, so only its request
building (``build_body``), signing (``sign_data``) and notify check (``verify``) are used; the
request goes to ``AlipayConfig.gateway`` with aiohttp, and the signed JSON answer is checked here.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import aiohttp
from alipay import AliPay
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from billing.money import Money, MoneyError
from payments.provider import (
    Notice,
    NoticeMismatch,
    PayRequest,
    PayStart,
    ProviderError,
    ProviderRefused,
    SignatureError,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
PRODUCTION_GATEWAY = "https://openapi.alipay.com/gateway.do"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# trade_status -> Notice.status (a TRADE_CLOSED that carries a refund_fee becomes "refunded")
STATUSES = {
    "WAIT_BUYER_PAY": "pending",
    "TRADE_SUCCESS": "paid",
    "TRADE_FINISHED": "paid",
    "TRADE_CLOSED": "closed",
}
TRANSIENT_SUB_CODES = frozenset({"ACQ.SYSTEM_ERROR", "aop.ACQ.SYSTEM_ERROR", "isp.unknow-error"})
TRANSIENT_CODES = frozenset({"20000"})


@dataclass(frozen=True)
class AlipayConfig:
    """Everything the adapter needs; keys are PEM text (PKCS#1 or PKCS#8)."""

    app_id: str
    app_private_key: str = field(repr=False)
    alipay_public_key: str = field(repr=False)
    gateway: str = PRODUCTION_GATEWAY
    seller_id: str | None = None  # when set, notices from another seller are a mismatch
    timeout_s: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AlipayConfig:
        """ALIPAY_APPID, ALIPAY_PRIVATE_KEY (path), ALIPAY_PUBLIC_KEY (path), ALIPAY_GATEWAY."""
        return cls(
            app_id=env["ALIPAY_APPID"],
            app_private_key=Path(env["ALIPAY_PRIVATE_KEY"]).read_text(),
            alipay_public_key=Path(env["ALIPAY_PUBLIC_KEY"]).read_text(),
            gateway=env.get("ALIPAY_GATEWAY") or PRODUCTION_GATEWAY,
            seller_id=env.get("ALIPAY_SELLER_ID") or None,
        )


class AlipayProvider:
    """PaymentProvider for Alipay: precreate (QR) and wap pay, notify, query, refund."""

    name = "alipay"

    def __init__(self, config: AlipayConfig, session: aiohttp.ClientSession) -> None:
        self._config = config
        self._session = session
        self._sdk = AliPay(appid=config.app_id, app_private_key_string=config.app_private_key,
                           alipay_public_key_string=config.alipay_public_key, sign_type="RSA2")
        public_key = serialization.load_pem_public_key(config.alipay_public_key.encode())
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise ValueError("the Alipay public key must be RSA")
        self._alipay_key = public_key

    # -- create -------------------------------------------------------------------------
    async def create(self, req: PayRequest) -> PayStart:
        """QR (precreate, a server call) or wap (a signed URL the phone opens)."""
        if req.channel == "qr":
            return await self._precreate(req)
        if req.channel == "wap":
            return self._wap(req)
        raise ValueError(f"Alipay has no {req.channel!r} channel (use 'qr' or 'wap')")

    async def _precreate(self, req: PayRequest) -> PayStart:
        result = await self._call("alipay.trade.precreate", _order_biz(req),
                                  notify_url=req.notify_url)
        _raise_unless_ok(result)
        return PayStart(req.out_trade_no, req.channel, qr_code=result["qr_code"])

    def _wap(self, req: PayRequest) -> PayStart:
        biz = {**_order_biz(req), "product_code": "QUICK_WAP_WAY"}
        signed = self._signed("alipay.trade.wap.pay", biz, notify_url=req.notify_url,
                              return_url=req.return_url)
        return PayStart(req.out_trade_no, req.channel, pay_url=f"{self._config.gateway}?{signed}")

    # -- notify -------------------------------------------------------------------------
    def parse_notify(self, headers: Mapping[str, str], body: bytes) -> Notice:
        """Verify the RSA2 signature with Alipay's key, then app id and seller."""
        fields = _form(body)
        signature = fields.pop("sign", "")
        if fields.pop("sign_type", "RSA2") != "RSA2" or not signature:
            raise SignatureError("alipay notify: missing signature or not RSA2")
        # what Alipay signs: the non-empty fields, sorted, as k=v joined by & (the SDK's `verify`,
        # checked here with OpenSSL: the SDK's pure-Python RSA took a tenth of a notify's CPU)
        message = "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if v != "")
        try:
            raw_signature = base64.decodebytes(signature.encode())
        except (binascii.Error, ValueError) as ex:
            raise SignatureError("alipay notify: unreadable signature") from ex
        try:
            self._alipay_key.verify(raw_signature, message.encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise SignatureError("alipay notify: signature does not verify") from None
        notice = self._notice(fields, app_id=fields.get("app_id", ""),
                              merchant_id=fields.get("seller_id"), paid_at="gmt_payment",
                              error=SignatureError)
        self._check_owner(notice)
        return notice

    def ack(self, ok: bool) -> tuple[int, str, bytes]:
        """Alipay stops retrying only on the exact body ``success``."""
        return 200, "text/plain", b"success" if ok else b"fail"

    def _check_owner(self, notice: Notice) -> None:
        if notice.app_id != self._config.app_id:
            raise NoticeMismatch(notice, "app_id", self._config.app_id, notice.app_id)
        seller = self._config.seller_id
        if seller and notice.merchant_id != seller:
            raise NoticeMismatch(notice, "seller_id", seller, notice.merchant_id or "")

    # -- query / refund -----------------------------------------------------------------
    async def query(self, out_trade_no: str) -> Notice | None:
        """alipay.trade.query; None on ACQ.TRADE_NOT_EXIST (also: a QR nobody scanned yet)."""
        result = await self._call("alipay.trade.query", {"out_trade_no": out_trade_no})
        if result.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
            return None
        _raise_unless_ok(result)
        return self._notice(result, app_id=self._config.app_id, merchant_id=None,
                            paid_at="send_pay_date")

    async def refund(self, out_trade_no: str, out_refund_no: str, amount: Money,
                     total: Money) -> str:
        """alipay.trade.refund (synchronous: a 10000 answer means the money is back)."""
        result = await self._call("alipay.trade.refund", {
            "out_trade_no": out_trade_no,
            "out_request_no": out_refund_no,
            "refund_amount": amount.to_yuan_str(),
        })
        _raise_unless_ok(result)
        return "success"

    # -- wire ---------------------------------------------------------------------------
    def _signed(self, method: str, biz: dict[str, Any], **extra: str | None) -> str:
        timestamp = datetime.now(SHANGHAI).strftime(TIME_FORMAT)
        data = self._sdk.build_body(method, biz, timestamp=timestamp, **extra)
        return str(self._sdk.sign_data(data))

    async def _call(self, method: str, biz: dict[str, Any], **extra: str | None) -> dict[str, Any]:
        body = self._signed(method, biz, **extra)
        headers = {"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"}
        timeout = aiohttp.ClientTimeout(total=self._config.timeout_s)
        try:
            async with self._session.post(self._config.gateway, data=body.encode(),
                                          headers=headers, timeout=timeout) as resp:
                raw = await resp.text(encoding="utf-8")
                if resp.status >= 500:
                    raise ProviderError(f"alipay {method}: HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as ex:
            raise ProviderError(f"alipay {method}: {type(ex).__name__}") from ex
        return self._verified(raw, method.replace(".", "_") + "_response")

    def _verified(self, raw: str, key: str) -> dict[str, Any]:
        """The response object, after checking Alipay's signature over its exact text."""
        try:
            document = json.loads(raw)
        except ValueError as ex:
            raise ProviderError("alipay answered something that is not JSON") from ex
        if key not in document:
            key = "error_response"
        result = document.get(key)
        if not isinstance(result, dict):
            raise ProviderError("alipay answer has no response object")
        if "sign" not in document:
            if result.get("code") == "10000":
                raise SignatureError("alipay answered success without a signature")
            return result  # Alipay does not sign some gateway-level errors
        if not self._verify_text(_signed_text(raw, key), document["sign"]):
            raise SignatureError("alipay answer signature does not verify")
        return result

    def _verify_text(self, text: str, signature: str) -> bool:
        try:
            self._alipay_key.verify(base64.b64decode(signature), text.encode(),
                                    padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True

    def _notice(self, fields: Mapping[str, Any], *, app_id: str, merchant_id: str | None,
                paid_at: str, error: type[Exception] = ProviderError) -> Notice:
        try:
            refunded = Money.yuan(fields.get("refund_fee") or "0")
            notice = Notice(
                provider=self.name,
                out_trade_no=fields["out_trade_no"],
                trade_no=fields.get("trade_no", ""),
                amount=Money.yuan(fields["total_amount"]),
                status=_status(fields["trade_status"], refunded),
                app_id=app_id,
                merchant_id=merchant_id,
                paid_at=_shanghai_time(fields.get(paid_at)),
                raw=dict(fields),
                refunded=refunded,
            )
        except (KeyError, MoneyError, ValueError) as ex:
            raise error(f"alipay described an order incompletely: {ex!r}") from ex
        return notice


def _order_biz(req: PayRequest) -> dict[str, Any]:
    return {"out_trade_no": req.out_trade_no, "total_amount": req.amount.to_yuan_str(),
            "subject": req.subject}


def _status(trade_status: str, refunded: Money) -> str:
    if refunded.is_positive:
        return "refunded"
    return STATUSES[trade_status]


def _shanghai_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=SHANGHAI)


def _form(body: bytes) -> dict[str, str]:
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
    except (UnicodeDecodeError, ValueError) as ex:
        raise SignatureError("alipay notify: body is not a form") from ex


def _signed_text(raw: str, key: str) -> str:
    """The exact characters Alipay signed: the value of ``key`` as it appears in ``raw``."""
    start = raw.index(":", raw.index(f'"{key}"') + len(key) + 2) + 1
    while raw[start].isspace():
        start += 1
    _, end = json.JSONDecoder().raw_decode(raw, start)
    return raw[start:end]


def _raise_unless_ok(result: Mapping[str, Any]) -> None:
    if result.get("code") == "10000":
        return
    code, sub_code = str(result.get("code", "")), str(result.get("sub_code", ""))
    message = str(result.get("sub_msg") or result.get("msg") or "")
    if code in TRANSIENT_CODES or sub_code in TRANSIENT_SUB_CODES:
        raise ProviderError(f"alipay {code} {sub_code}: {message}")
    raise ProviderRefused(sub_code or code, message)
