"""Open and seal WeChat callback envelopes: signatures, AES (safe/compatible mode), XML.

Pure functions over bytes and query strings. Signatures are compared in constant time before
anything is decrypted. A callback is a flat `<xml>` of CDATA fields, so it is read with the
C-accelerated ElementTree (DTDs refused first, so no entity tricks) rather than through
xmltodict + wechatpy's message classes, which cost ten times as much per message; the wire
format is still checked against wechatpy in the tests, which build and read every message
with it.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from xml.etree.ElementTree import ParseError, XMLParser

from bot.aes import CipherError, MessageCipher, WrongApp, signature

SUCCESS = "success"  # WeChat's "received, nothing to say" answer

TEXT_REPLY = ("<xml><ToUserName><![CDATA[{to}]]></ToUserName><FromUserName><![CDATA[{sender}]]></FromUserName>"
              "<CreateTime>{time}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
              "<Content><![CDATA[{content}]]></Content></xml>")




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


def fields(body: bytes | str) -> dict[str, str]:
    """The child elements of a WeChat `<xml>` root as tag -> text; Malformed for anything else."""
    if isinstance(body, str):
        body = body.encode()
    if b"<!DOCTYPE" in body.upper():
        raise Malformed("DTDs are not accepted")
    parser = XMLParser()
    try:
        parser.feed(body)
        root = parser.close()
    except (ParseError, ValueError) as ex:
        raise Malformed("not a WeChat XML message") from ex
    if root.tag != "xml" or len(root) == 0:
        raise Malformed("not a WeChat <xml> message")
    return {child.tag: child.text or "" for child in root}


def _decrypt(root: dict[str, str], query: Mapping[str, str], crypto: MessageCipher) -> dict[str, str]:
    encrypted = root.get("Encrypt")
    if not encrypted:
        raise Malformed("encrypt_type=aes without an <Encrypt> element")
    timestamp, nonce = query.get("timestamp", ""), query.get("nonce", "")
    given = query.get("msg_signature", "")
    if not _same(signature(crypto.token, timestamp, nonce, encrypted), given):
        raise Forged("bad msg_signature")
    try:
        return fields(crypto.decrypt(encrypted))
    except WrongApp as ex:
        raise Forged("message for another app") from ex
    except CipherError as ex:
        raise Malformed("cannot decrypt <Encrypt>") from ex


def _delivery(message: dict[str, str], encrypted: bool) -> Delivery:
    openid, created = message.get("FromUserName", ""), message.get("CreateTime", "")
    msg_type = message.get("MsgType", "").lower()
    msg_id = message.get("MsgId", "")
    if not openid or not created.isdigit() or not msg_type:
        raise Malformed("message without FromUserName, CreateTime or MsgType")
    if msg_id and not msg_id.isdigit():
        raise Malformed("MsgId is not a number")
    event = message.get("Event", "").lower() if msg_type == "event" else None
    content = message.get("Content") if msg_type == "text" else \
        message.get("Recognition") if msg_type == "voice" else None
    return Delivery(
        openid=openid,
        account=message.get("ToUserName", ""),
        msg_type=msg_type,
        content=content or None,
        event=event,
        event_key=message.get("EventKey") if event is not None else None,
        dedup_key=f"msg:{int(msg_id)}" if msg_id and int(msg_id) else f"evt:{openid}:{created}:{event or ''}",
        encrypted=encrypted,
    )


def open_delivery(body: bytes, query: Mapping[str, str], crypto: MessageCipher | None) -> Delivery:
    """Parse (and in AES mode verify and decrypt) a POSTed callback body."""
    if not body.strip():
        raise Malformed("empty body")
    root = fields(body)
    if query.get("encrypt_type", "raw").lower() != "aes":
        return _delivery(root, encrypted=False)
    if crypto is None:
        raise Malformed("encrypted message but no EncodingAESKey configured")
    return _delivery(_decrypt(root, query, crypto), encrypted=True)


def _cdata(text: str) -> str:
    return text.replace("]]>", "]]]]><![CDATA[>")


def seal(text: str, delivery: Delivery, crypto: MessageCipher | None, now_s: float) -> tuple[str, str]:
    """The HTTP body and content type answering `delivery` with `text` (or "success")."""
    if text == SUCCESS:
        return SUCCESS, "text/plain"
    timestamp = str(int(now_s))
    xml = TEXT_REPLY.format(to=_cdata(delivery.openid), sender=_cdata(delivery.account), time=timestamp,
                            content=_cdata(text))
    if delivery.encrypted and crypto is not None:
        xml = crypto.seal(xml, secrets.token_hex(8), timestamp)
    return xml, "application/xml"
