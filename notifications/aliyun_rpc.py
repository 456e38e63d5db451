"""Aliyun RPC-style API calls (SMS, voice): signature v1 with HMAC-SHA1, as Aliyun documents it.

StringToSign = METHOD & percent("/") & percent(canonical query), where the canonical query is
the sorted `percent(name)=percent(value)` pairs joined by '&', and percent-encoding keeps only
A-Z a-z 0-9 - _ . ~ (space is %20, '*' is %2A, '~' stays). The HMAC key is secret + "&".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

import aiohttp

from notifications.channel import SendResult
from notifications.transport import TransportError, exchange

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")

# Codes worth another attempt later: flow control, throttling and Aliyun-side faults.
RETRYABLE_CODES = frozenset({
    "isv.BUSINESS_LIMIT_CONTROL",
    "isv.AMOUNT_NOT_ENOUGH",
    "Throttling",
    "Throttling.User",
    "Throttling.Api",
    "ServiceUnavailable",
    "InternalError",
    "isp.SYSTEM_ERROR",
    "SignatureNonceUsed",
})


@dataclass(frozen=True)
class AliyunKeys:
    """An endpoint and access key pair; the secret never appears in repr."""

    endpoint: str  # e.g. "https://dysmsapi.aliyuncs.com/" or a local sandbox URL
    access_key_id: str
    access_key_secret: str = field(repr=False)
    region_id: str = "cn-hangzhou"
    timeout_s: float = 10.0


def percent_encode(text: str) -> str:
    """Aliyun's percent-encoding: RFC 3986 unreserved characters only, upper-case hex."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in text.encode("utf-8"))


def compact_json(values: Mapping[str, str]) -> str:
    """Template params as Aliyun shows them: compact JSON, non-ASCII kept as is."""
    return json.dumps(values, ensure_ascii=False, separators=(",", ":"))


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """The documented StringToSign for an RPC request (Signature itself excluded)."""
    canonical = "&".join(
        f"{percent_encode(k)}={percent_encode(v)}"
        for k, v in sorted(params.items())
        if k != "Signature"
    )
    return f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonical)}"


def sign(method: str, params: Mapping[str, str], secret: str) -> str:
    """Base64(HMAC-SHA1(secret + '&', StringToSign))."""
    digest = hmac.new(
        f"{secret}&".encode(), string_to_sign(method, params).encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_params(
    keys: AliyunKeys, action: str, version: str, business: Mapping[str, str], *,
    method: str = "POST", now: datetime | None = None, nonce: str | None = None,
) -> dict[str, str]:
    """Common + business parameters with SignatureNonce, Timestamp and Signature filled in."""
    moment = now or datetime.now(timezone.utc)
    params = {
        "AccessKeyId": keys.access_key_id,
        "Action": action,
        "Format": "JSON",
        "RegionId": keys.region_id,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": nonce or uuid.uuid4().hex,
        "SignatureVersion": "1.0",
        "Timestamp": moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Version": version,
        **business,
    }
    params["Signature"] = sign(method, params, keys.access_key_secret)
    return params


async def call(
    session: aiohttp.ClientSession, keys: AliyunKeys, action: str, version: str,
    business: Mapping[str, str], id_field: str, clock: Callable[[], datetime] | None = None,
) -> SendResult:
    """POST one signed RPC request (form-encoded) and translate the answer into a SendResult."""
    params = signed_params(keys, action, version, business, now=clock() if clock else None)
    body = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in params.items())
    try:
        reply = await exchange(
            session, "POST", keys.endpoint, timeout_s=keys.timeout_s, data=body.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
    except TransportError as ex:
        return SendResult.failed(f"{action}: {ex}", retryable=ex.retryable)
    code = str(reply.body.get("Code", ""))
    if reply.status < 300 and code == "OK":
        return SendResult.sent(reply.body.get(id_field) or reply.body.get("RequestId"))
    detail = f"{action}: HTTP {reply.status} {code or '-'}: {reply.body.get('Message', '')}"
    return SendResult.failed(detail, retryable=reply.status >= 500 or code in RETRYABLE_CODES)
