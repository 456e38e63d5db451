"""A generic signed webhook (for an app-push gateway), and the check its receivers run.

Wire format (stable; receivers rely on it):
  POST <url>, Content-Type: application/json, body = UTF-8 JSON
    {"key", "kind", "locale", "to", "subject", "text", "params"}
  X-Meterpay-Timestamp:       Unix time in whole seconds when the request was signed
  X-Meterpay-Signature:       "v1=" + lower-case hex HMAC-SHA256(secret, timestamp + "." + body)
                              (several comma-separated v1= values may appear during key rotation)
  X-Meterpay-Idempotency-Key: the message key; a receiver should act on each key once
A receiver must compare in constant time and refuse timestamps older or newer than 5 minutes.
2xx means delivered; 408, 429 and 5xx are retried; other 4xx are permanent failures.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from notifications.channel import Message, Rendered, SendResult
from notifications.templates import KINDS
from notifications.transport import TransportError, exchange

TIMESTAMP_HEADER = "X-Meterpay-Timestamp"
SIGNATURE_HEADER = "X-Meterpay-Signature"
IDEMPOTENCY_HEADER = "X-Meterpay-Idempotency-Key"
TOLERANCE_S = 300
RETRYABLE_STATUS = frozenset({408, 429})


@dataclass(frozen=True)
class WebhookConfig:
    """The receiver's URL and the shared secret; the secret never appears in repr."""

    url: str
    secret: str = field(repr=False)
    timeout_s: float = 10.0


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The header value for a body signed at `timestamp`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def verify_webhook(
    secret: str, timestamp: str, signature_header: str, body: bytes, *,
    now: float | None = None, tolerance_s: int = TOLERANCE_S,
) -> bool:
    """True when a v1 signature matches the body and the timestamp is within the window."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent_at) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body)
    offered = [part.strip() for part in signature_header.split(",")]
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)


class WebhookPush:
    """POSTs the rendered message to a push gateway with an HMAC signature."""

    name = "push"
    provider = "webhook"
    kinds = KINDS

    def __init__(
        self, session: aiohttp.ClientSession, config: WebhookConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session, self._config, self._clock = session, config, clock

    def request(self, msg: Message, rendered: Rendered) -> tuple[dict[str, str], bytes]:
        """The signed headers and body for one delivery."""
        body = json.dumps({
            "key": msg.key, "kind": msg.kind, "locale": rendered.locale, "to": msg.to,
            "subject": rendered.subject, "text": rendered.text, "params": rendered.field_map,
        }, ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(self._config.secret, timestamp, body),
            IDEMPOTENCY_HEADER: msg.key,
        }
        return headers, body

    async def send(self, msg: Message, rendered: Rendered) -> SendResult:
        """Deliver once; the provider id is the receiver's "id" field, if it returns one."""
        headers, body = self.request(msg, rendered)
        try:
            reply = await exchange(
                self._session, "POST", self._config.url, timeout_s=self._config.timeout_s,
                data=body, headers=headers,
            )
        except TransportError as ex:
            return SendResult.failed(f"webhook: {ex}", retryable=ex.retryable)
        if 200 <= reply.status < 300:
            found = reply.body.get("id")
            return SendResult.sent(None if found is None else str(found))
        retryable = reply.status >= 500 or reply.status in RETRYABLE_STATUS
        return SendResult.failed(f"webhook: HTTP {reply.status}", retryable=retryable)
