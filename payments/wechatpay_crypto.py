"""WeChat Pay API v3 signatures and AES-256-GCM, as small pure functions on ``cryptography``.

Why in-project and not ``wechatpayv3``: the v3 security scheme is four primitives (SHA256-RSA
sign, verify, a header format and AES-GCM), ~100 lines. ``wechatpayv3`` would bring a second HTTP
stack (``requests``, or ``httpx`` + ``aiofiles`` for its async variant) beside aiohttp, keeps the
gateway in a hard-coded private attribute (our tests point at a local server), does no replay
(timestamp) check on callbacks, and reports a bad callback as ``None`` or a bare ``Exception``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

AUTH_SCHEME = "WECHATPAY2-SHA256-RSA2048"


class DecryptError(ValueError):
    """The notification resource could not be decrypted with the APIv3 key."""


def load_private_key(pem: str | bytes) -> rsa.RSAPrivateKey:
    """Load the merchant's RSA private key (PKCS#8 or PKCS#1 PEM)."""
    key = serialization.load_pem_private_key(_b(pem), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("WeChat Pay keys are RSA")
    return key


def load_public_key(pem: str | bytes) -> rsa.RSAPublicKey:
    """Load WeChat Pay's public key from a PEM public key or a platform certificate."""
    data = _b(pem)
    if b"BEGIN CERTIFICATE" in data:
        key = x509.load_pem_x509_certificate(data).public_key()
    else:
        key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("WeChat Pay keys are RSA")
    return key


def sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    """SHA256withRSA (PKCS#1 v1.5), base64: the one signature v3 uses everywhere."""
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def verify(key: rsa.RSAPublicKey, message: bytes, signature_b64: str) -> bool:
    """True when ``signature_b64`` is a valid SHA256withRSA signature of ``message``."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def lines(*parts: str | bytes) -> bytes:
    """The v3 message format: every part followed by a newline."""
    return b"".join(_b(p) + b"\n" for p in parts)


def authorization(*, mchid: str, serial_no: str, key: rsa.RSAPrivateKey, method: str,
                  url: str, body: bytes, timestamp: str, nonce: str) -> str:
    """The Authorization header for one request (``url`` is path plus query string)."""
    signature = sign(key, lines(method.upper(), url, timestamp, nonce, body))
    return (f'{AUTH_SCHEME} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
            f'timestamp="{timestamp}",serial_no="{serial_no}"')


_AUTH_PARAM = re.compile(r'(\w+)="([^"]*)"')


def parse_authorization(header: str) -> dict[str, str]:
    """Split an Authorization header into its parameters; {} when the scheme is not v3."""
    scheme, _, params = header.partition(" ")
    if scheme != AUTH_SCHEME:
        return {}
    return dict(_AUTH_PARAM.findall(params))


def decrypt_resource(apiv3_key: bytes, resource: Mapping[str, str]) -> bytes:
    """Decrypt a notify ``resource`` (AEAD_AES_256_GCM: nonce, associated_data, ciphertext)."""
    if resource.get("algorithm") != "AEAD_AES_256_GCM":
        raise DecryptError(f"unsupported algorithm {resource.get('algorithm')!r}")
    try:
        return AESGCM(apiv3_key).decrypt(
            _b(resource["nonce"]),
            base64.b64decode(resource["ciphertext"], validate=True),
            _b(resource.get("associated_data") or ""),
        )
    except (InvalidTag, KeyError, binascii.Error, ValueError, TypeError) as ex:
        raise DecryptError("notify resource does not decrypt with the APIv3 key") from ex


def _b(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value
