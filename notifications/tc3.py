"""Tencent Cloud API 3.0 request signing (TC3-HMAC-SHA256), as Tencent documents it.

CanonicalRequest = METHOD, URI, QUERY, CanonicalHeaders, SignedHeaders, hex(sha256(body))
joined by newlines;
CanonicalHeaders = 'name:value\\n' per signed header, both lower-cased and trimmed, sorted by name.
StringToSign = 'TC3-HMAC-SHA256', timestamp, '<UTC date>/<service>/tc3_request', hex(sha256(CR))
joined by newlines.
Signing key = HMAC chain: ('TC3' + secret, date) -> service -> 'tc3_request'.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timezone

ALGORITHM = "TC3-HMAC-SHA256"


def canonical_request(
    method: str, uri: str, query: str, headers: Mapping[str, str], payload: bytes
) -> tuple[str, str]:
    """The canonical request and the SignedHeaders list for the given headers to sign."""
    lowered = sorted((k.lower().strip(), v.lower().strip()) for k, v in headers.items())
    canonical_headers = "".join(f"{k}:{v}\n" for k, v in lowered)
    signed = ";".join(k for k, _ in lowered)
    body_hash = hashlib.sha256(payload).hexdigest()
    return f"{method.upper()}\n{uri}\n{query}\n{canonical_headers}\n{signed}\n{body_hash}", signed


def utc_date(timestamp: int) -> str:
    """The credential-scope date: the UTC day of the request timestamp."""
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d")


def string_to_sign(timestamp: int, service: str, canonical: str) -> str:
    """The documented StringToSign."""
    scope = f"{utc_date(timestamp)}/{service}/tc3_request"
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{digest}"


def signature(secret_key: str, timestamp: int, service: str, canonical: str) -> str:
    """Hex HMAC-SHA256 of StringToSign with the derived signing key."""
    key = _hmac(f"TC3{secret_key}".encode(), utc_date(timestamp))
    key = _hmac(_hmac(key, service), "tc3_request")
    to_sign = string_to_sign(timestamp, service, canonical).encode()
    return hmac.new(key, to_sign, hashlib.sha256).hexdigest()


def authorization(
    secret_id: str, secret_key: str, service: str, timestamp: int,
    method: str, headers_to_sign: Mapping[str, str], payload: bytes,
) -> str:
    """The Authorization header value for a request to '/' with no query string."""
    canonical, signed = canonical_request(method, "/", "", headers_to_sign, payload)
    scope = f"{utc_date(timestamp)}/{service}/tc3_request"
    sig = signature(secret_key, timestamp, service, canonical)
    return f"{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders={signed}, Signature={sig}"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()
