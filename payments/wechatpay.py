"""WeChat Pay API v3 adapter (JSAPI and Native QR), on aiohttp and ``payments.wechatpay_crypto``.

Implementation choice: a small in-project signer on ``cryptography`` rather than ``wechatpayv3``;
see ``payments/wechatpay_crypto.py`` and payments/README.md for why. wechatpy has no v3.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from billing.money import Money
from payments import wechatpay_crypto as crypto
from payments.provider import (
    Notice,
    NoticeMismatch,
    PayRequest,
    PayStart,
    ProviderError,
    ProviderRefused,
    SignatureError,
)

PRODUCTION_GATEWAY = "https://api.mch.weixin.qq.com"
REPLAY_WINDOW_S = 300
USER_AGENT = "meterpay-wechatpay/1"

# trade_state -> Notice.status
STATUSES = {
    "SUCCESS": "paid",
    "REFUND": "refunded",
    "NOTPAY": "pending",
    "USERPAYING": "pending",
    "CLOSED": "closed",
    "REVOKED": "closed",
    "PAYERROR": "failed",
}
REFUND_STATUSES = {"SUCCESS": "success", "PROCESSING": "processing", "CLOSED": "closed",
                   "ABNORMAL": "abnormal"}
TRANSIENT_CODES = frozenset({"SYSTEM_ERROR", "FREQUENCY_LIMITED", "BANK_ERROR", "SYSTEMERROR"})
# channel -> (API path, field of the answer that the buyer needs)
CHANNELS = {
    "jsapi": ("/v3/pay/transactions/jsapi", "prepay_id"),
    "qr": ("/v3/pay/transactions/native", "code_url"),
}

ACK_OK = b'{"code":"SUCCESS"}'
ACK_FAIL = b'{"code":"FAIL","message":"not processed, please retry"}'


@dataclass(frozen=True)
class WechatPayConfig:
    """Merchant id and keys; ``platform_keys`` maps Wechatpay-Serial -> PEM (key or cert)."""

    mchid: str
    appid: str
    serial_no: str  # the merchant API certificate's serial number
    private_key: str = field(repr=False)
    apiv3_key: str = field(repr=False)
    platform_keys: Mapping[str, str] = field(repr=False)
    gateway: str = PRODUCTION_GATEWAY
    timeout_s: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WechatPayConfig:
        """WECHATPAY_MCHID, _APPID, _SERIAL_NO, _PRIVATE_KEY (path), _APIV3_KEY,
        _PUBLIC_KEY (path; WeChat Pay public key or platform certificate), _PUBLIC_KEY_ID,
        _GATEWAY."""
        return cls(
            mchid=env["WECHATPAY_MCHID"],
            appid=env["WECHATPAY_APPID"],
            serial_no=env["WECHATPAY_SERIAL_NO"],
            private_key=Path(env["WECHATPAY_PRIVATE_KEY"]).read_text(),
            apiv3_key=env["WECHATPAY_APIV3_KEY"],
            platform_keys={env["WECHATPAY_PUBLIC_KEY_ID"]:
                           Path(env["WECHATPAY_PUBLIC_KEY"]).read_text()},
            gateway=env.get("WECHATPAY_GATEWAY") or PRODUCTION_GATEWAY,
        )


class WechatPayProvider:
    """PaymentProvider for WeChat Pay v3: JSAPI / Native create, notify, query, refund."""

    name = "wechatpay"

    def __init__(self, config: WechatPayConfig, session: aiohttp.ClientSession, *,
                 clock: Callable[[], float] = time.time) -> None:
        if len(config.apiv3_key.encode()) != 32:
            raise ValueError("the APIv3 key must be 32 bytes")
        self._config = config
        self._session = session
        self._clock = clock
        self._key = crypto.load_private_key(config.private_key)
        self._platform = {serial: crypto.load_public_key(pem)
                          for serial, pem in config.platform_keys.items()}

    # -- create -------------------------------------------------------------------------
    async def create(self, req: PayRequest) -> PayStart:
        """JSAPI (inside WeChat, needs ``openid``) or Native QR (cashier desk)."""
        if req.channel not in CHANNELS:
            raise ValueError(f"WeChat Pay has no {req.channel!r} channel (use 'jsapi' or 'qr')")
        if req.channel == "jsapi" and not req.openid:
            raise ValueError("a JSAPI payment needs the payer's openid")
        path, answer_field = CHANNELS[req.channel]
        status, answer = await self._call("POST", path, self._order_body(req))
        _raise_unless_ok(status, answer)
        if req.channel == "qr":
            return PayStart(req.out_trade_no, req.channel, qr_code=answer[answer_field])
        return PayStart(req.out_trade_no, req.channel,
                        jsapi_params=self.jsapi_params(answer[answer_field]))

    def jsapi_params(self, prepay_id: str) -> dict[str, str]:
        """The object the page passes to WeixinJSBridge 'getBrandWCPayRequest'."""
        timestamp, nonce = str(int(self._clock())), secrets.token_hex(16)
        package = f"prepay_id={prepay_id}"
        pay_sign = crypto.sign(self._key, crypto.lines(self._config.appid, timestamp, nonce,
                                                       package))
        return {"appId": self._config.appid, "timeStamp": timestamp, "nonceStr": nonce,
                "package": package, "signType": "RSA", "paySign": pay_sign}

    def _order_body(self, req: PayRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "appid": self._config.appid, "mchid": self._config.mchid,
            "description": req.subject[:127], "out_trade_no": req.out_trade_no,
            "notify_url": req.notify_url, "amount": {"total": req.amount.fen, "currency": "CNY"},
        }
        if req.openid:
            body["payer"] = {"openid": req.openid}
        return body

    # -- notify -------------------------------------------------------------------------
    def parse_notify(self, headers: Mapping[str, str], body: bytes) -> Notice:
        """Verify the platform signature and freshness, decrypt the resource, check ownership."""
        self._authenticate(headers, body, replay_window_s=REPLAY_WINDOW_S)
        try:
            event = json.loads(body)
            plain = json.loads(crypto.decrypt_resource(self._config.apiv3_key.encode(),
                                                       event["resource"]))
            notice = self._notice(plain)
        except (crypto.DecryptError, ValueError, KeyError, TypeError) as ex:
            raise SignatureError(f"wechatpay notify: unreadable resource ({ex})") from ex
        self._check_owner(notice, plain)
        return notice

    def ack(self, ok: bool) -> tuple[int, str, bytes]:
        """HTTP 200 {"code":"SUCCESS"}; a 500 with code FAIL makes WeChat Pay retry."""
        return (200, "application/json", ACK_OK) if ok else (500, "application/json", ACK_FAIL)

    def _authenticate(self, headers: Mapping[str, str], body: bytes, *,
                      replay_window_s: float | None) -> None:
        h = {k.lower(): v for k, v in headers.items()}
        timestamp, nonce = h.get("wechatpay-timestamp", ""), h.get("wechatpay-nonce", "")
        signature, serial = h.get("wechatpay-signature", ""), h.get("wechatpay-serial", "")
        key = self._platform.get(serial)
        if key is None:
            raise SignatureError(f"wechatpay: unknown or missing Wechatpay-Serial {serial!r}")
        if not crypto.verify(key, crypto.lines(timestamp, nonce, body), signature):
            raise SignatureError("wechatpay: signature does not verify")
        if replay_window_s is not None:
            if not timestamp.isdigit() or abs(self._clock() - int(timestamp)) > replay_window_s:
                raise SignatureError("wechatpay: timestamp outside the replay window")

    def _check_owner(self, notice: Notice, plain: Mapping[str, Any]) -> None:
        expected = {"mchid": self._config.mchid, "appid": self._config.appid,
                    "currency": "CNY"}
        actual = {"mchid": plain.get("mchid"), "appid": plain.get("appid"),
                  "currency": plain.get("amount", {}).get("currency")}
        for name, value in actual.items():
            if value is not None and value != expected[name]:
                raise NoticeMismatch(notice, name, expected[name], str(value))

    # -- query / refund -----------------------------------------------------------------
    async def query(self, out_trade_no: str) -> Notice | None:
        """GET the transaction by out_trade_no; None on 404 ORDER_NOT_EXIST."""
        path = (f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}"
                f"?mchid={quote(self._config.mchid)}")
        status, answer = await self._call("GET", path, None)
        if status == 404 and answer.get("code") in ("ORDER_NOT_EXIST", "RESOURCE_NOT_EXISTS"):
            return None
        _raise_unless_ok(status, answer)
        try:
            return self._notice(answer)
        except (KeyError, ValueError, TypeError) as ex:
            raise ProviderError(f"wechatpay query answer is incomplete: {ex!r}") from ex

    async def refund(self, out_trade_no: str, out_refund_no: str, amount: Money,
                     total: Money) -> str:
        """POST /v3/refund/domestic/refunds; usually 'processing', final state comes by notify."""
        status, answer = await self._call("POST", "/v3/refund/domestic/refunds", {
            "out_trade_no": out_trade_no, "out_refund_no": out_refund_no,
            "amount": {"refund": amount.fen, "total": total.fen, "currency": "CNY"},
        })
        _raise_unless_ok(status, answer)
        return REFUND_STATUSES.get(str(answer.get("status")), "abnormal")

    # -- wire ---------------------------------------------------------------------------
    async def _call(self, method: str, path: str,
                    payload: Mapping[str, Any] | None) -> tuple[int, dict[str, Any]]:
        body = b"" if payload is None else json.dumps(payload, ensure_ascii=False,
                                                      separators=(",", ":")).encode()
        auth = crypto.authorization(mchid=self._config.mchid, serial_no=self._config.serial_no,
                                    key=self._key, method=method, url=path, body=body,
                                    timestamp=str(int(self._clock())),
                                    nonce=secrets.token_hex(16))
        headers = {"Authorization": auth, "Accept": "application/json",
                   "User-Agent": USER_AGENT}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        timeout = aiohttp.ClientTimeout(total=self._config.timeout_s)
        try:
            url = URL(self._config.gateway + path, encoded=True)  # signed as sent, not requoted
            async with self._session.request(method, url, data=body or None,
                                             headers=headers, timeout=timeout) as resp:
                raw, status, resp_headers = await resp.read(), resp.status, resp.headers
        except (aiohttp.ClientError, TimeoutError) as ex:
            raise ProviderError(f"wechatpay {method} {path}: {type(ex).__name__}") from ex
        if status >= 500 or status == 429:
            raise ProviderError(f"wechatpay {method} {path}: HTTP {status}")
        if status < 300 or "wechatpay-signature" in {k.lower() for k in resp_headers}:
            self._authenticate(resp_headers, raw, replay_window_s=None)
        try:
            return status, dict(json.loads(raw)) if raw else {}
        except ValueError as ex:
            raise ProviderError(f"wechatpay {method} {path}: answer is not JSON") from ex

    def _notice(self, plain: Mapping[str, Any]) -> Notice:
        """A transaction (payment notify / query) or a refund notice."""
        amount = plain["amount"]
        if "refund_status" in plain:  # a REFUND.* event carries the refund, not the trade
            status = "refunded" if plain["refund_status"] == "SUCCESS" else "paid"
            refunded = _fen(amount["refund"]) if status == "refunded" else Money(0)
        else:
            status, refunded = STATUSES[plain["trade_state"]], Money(0)
        paid_at = plain.get("success_time")
        return Notice(
            provider=self.name,
            out_trade_no=plain["out_trade_no"],
            trade_no=plain.get("transaction_id", ""),
            amount=_fen(amount["total"]),
            status=status,
            app_id=plain.get("appid", ""),
            merchant_id=plain.get("mchid"),
            paid_at=datetime.fromisoformat(paid_at) if paid_at and status == "paid" else None,
            raw=dict(plain),
            refunded=refunded,
        )


def _fen(value: object) -> Money:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"amount is not whole fen: {value!r}")
    return Money(value)


def _raise_unless_ok(status: int, answer: Mapping[str, Any]) -> None:
    if 200 <= status < 300:
        return
    code, message = str(answer.get("code", f"HTTP_{status}")), str(answer.get("message", ""))
    if code in TRANSIENT_CODES:
        raise ProviderError(f"wechatpay {code}: {message}")
    raise ProviderRefused(code, message)
