"""Open and seal WeChat callback envelopes: signatures, AES (safe/compatible mode), XML.

Pure functions over bytes and query strings; wechatpy does the parsing and the AES work,
the signatures are compared here in constant time before anything is decrypted.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from xml.parsers.expat import ExpatError

import xmltodict
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.replies import TextReply

SUCCESS = "success"  # WeChat's "received, nothing to say" answer


class EnvelopeError(Exception):
    """A callback that cannot be accepted."""


class Forged(EnvelopeError):
    """The signature, timestamp or app id does not check out."""


class Malformed(EnvelopeError):
    """The body is not a WeChat message we can read."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One incoming message or event, decrypted and parsed."""

    openid: str
    account: str  # ToUserName: the official account's own id, the reply's sender
    msg_type: str
    content: str | None
    event: str | None
    event_key: str | None
    dedup_key: str
    encrypted: bool


def signature(*parts: str) -> str:
    """WeChat's signature: SHA-1 of the parts sorted and joined."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


def check_query(token: str, query: Mapping[str, str], now_s: float, max_skew_s: float) -> None:
    """Check `signature` over token/timestamp/nonce and that the timestamp is recent."""
    timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
    if not _same(signature(token, timestamp, nonce), query.get("signature", "")):
        raise Forged("bad signature")
    try:
        skew = abs(now_s - int(timestamp))
    except ValueError as ex:
        raise Forged("bad timestamp") from ex
    if skew > max_skew_s:
        raise Forged("stale timestamp")


def _utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as ex:
        raise Malformed("body is not UTF-8") from ex


def _xml_root(body: bytes) -> dict[str, object]:
    try:
        root = xmltodict.parse(_utf8(body))["xml"]
    except (ExpatError, ValueError, KeyError, TypeError) as ex:
        raise Malformed("not a WeChat XML message") from ex
    if not isinstance(root, dict):
        raise Malformed("empty <xml> element")
    return root


def _decrypt(root: dict[str, object], query: Mapping[str, str], crypto: WeChatCrypto) -> str:
    encrypted = root.get("Encrypt")
    if not isinstance(encrypted, str):
        raise Malformed("encrypt_type=aes without an <Encrypt> element")
    timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
    given = query.get("msg_signature", "")
    if not _same(signature(crypto.token, timestamp, nonce, encrypted), given):
        raise Forged("bad msg_signature")
    try:
        return str(crypto.decrypt_message(root, given, timestamp, nonce))
    except (InvalidAppIdException, InvalidSignatureException) as ex:
        raise Forged("message for another app") from ex
    except Exception as ex:  # wechatpy surfaces bad base64/padding as assorted errors
        raise Malformed("cannot decrypt <Encrypt>") from ex


def _dedup_key(msg_id: int, openid: str, created: str, event: str | None) -> str:
    if msg_id:
        return f"msg:{msg_id}"
    return f"evt:{openid}:{created}:{event or ''}"


def _delivery(xml: str, encrypted: bool) -> Delivery:
    try:
        message = parse_message(xml)
        openid, created = str(message.source or ""), str(message.time or "")
        event = str(message.event) if message.type == "event" else None
        key = getattr(message, "key", None)
        delivery = Delivery(
            openid=openid,
            account=str(message.target or ""),
            msg_type=str(message.type),
            content=getattr(message, "content", None) or getattr(message, "recognition", None),
            event=event,
            event_key=str(key) if key is not None else None,
            dedup_key=_dedup_key(int(message.id or 0), openid, created, event),
            encrypted=encrypted,
        )
    except (ExpatError, ValueError, KeyError, TypeError, AttributeError) as ex:
        raise Malformed("not a WeChat message") from ex
    if not delivery.openid or not created:
        raise Malformed("message without FromUserName or CreateTime")
    return delivery


def open_delivery(
    body: bytes, query: Mapping[str, str], crypto: WeChatCrypto | None
) -> Delivery:
    """Parse (and in AES mode verify and decrypt) a POSTed callback body."""
    if not body.strip():
        raise Malformed("empty body")
    if b"<!DOCTYPE" in body.upper():
        raise Malformed("DTDs are not accepted")
    if query.get("encrypt_type", "raw").lower() != "aes":
        return _delivery(_utf8(body), encrypted=False)
    if crypto is None:
        raise Malformed("encrypted message but no EncodingAESKey configured")
    return _delivery(_decrypt(_xml_root(body), query, crypto), encrypted=True)


def seal(
    text: str, delivery: Delivery, crypto: WeChatCrypto | None, now_s: float
) -> tuple[str, str]:
    """The HTTP body and content type answering `delivery` with `text` (or "success")."""
    if text == SUCCESS:
        return SUCCESS, "text/plain"
    xml = TextReply(source=delivery.account, target=delivery.openid, content=text,
                    time=int(now_s)).render()
    if delivery.encrypted and crypto is not None:
        xml = crypto.encrypt_message(xml, secrets.token_hex(8), str(int(now_s)))
    return xml, "application/xml"
