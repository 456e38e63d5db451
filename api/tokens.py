"""Signed, expiring session tokens for the mini-program: the openid, without a server-side session."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time


class BadToken(Exception):
    """Missing, forged, malformed or expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), f"api-session:{payload}".encode(), hashlib.sha256).digest())


def issue(secret: str, openid: str, ttl_s: int, now: float | None = None) -> str:
    """A token naming `openid`, valid for `ttl_s` seconds."""
    expires = int((now if now is not None else time.time()) + ttl_s)
    payload = _b64(json.dumps({"o": openid, "e": expires}, separators=(",", ":")).encode())
    return f"{payload}.{_mac(secret, payload)}"


def verify(secret: str, token: str, now: float | None = None) -> str:
    """The openid of a valid token; raises BadToken otherwise (signature checked first)."""
    payload, _, mac = token.partition(".")
    if not payload or not hmac.compare_digest(mac.encode(), _mac(secret, payload).encode()):
        raise BadToken("invalid session token")
    try:
        body = json.loads(_unb64(payload))
        openid, expires = str(body["o"]), int(body["e"])
    except (ValueError, KeyError, TypeError) as ex:
        raise BadToken("malformed session token") from ex
    if expires < (now if now is not None else time.time()):
        raise BadToken("session token expired")
    return openid
