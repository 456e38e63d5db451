"""The WeChat Pay v3 primitives: header signing, verification and AES-256-GCM decryption."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from payments import wechatpay_crypto as crypto
from payments.sandbox import SandboxKeys

APIV3_KEY = b"0123456789abcdef0123456789ABCDEF"


def seal(plaintext: bytes, *, key: bytes = APIV3_KEY, nonce: str = "a1b2c3d4e5f6",
         associated: str = "transaction") -> dict[str, str]:
    ciphertext = AESGCM(key).encrypt(nonce.encode(), plaintext, associated.encode())
    return {"algorithm": "AEAD_AES_256_GCM", "nonce": nonce, "associated_data": associated,
            "ciphertext": base64.b64encode(ciphertext).decode()}


def test_resource_decrypts_with_the_apiv3_key() -> None:
    assert crypto.decrypt_resource(APIV3_KEY, seal(b'{"trade_state":"SUCCESS"}')) == \
        b'{"trade_state":"SUCCESS"}'


@pytest.mark.parametrize("change", [
    {"nonce": "ffffffffffff"},
    {"associated_data": "refund"},
    {"algorithm": "AEAD_AES_128_GCM"},
    {"ciphertext": "not base64!"},
], ids=["other-nonce", "other-associated-data", "other-algorithm", "garbage"])
def test_resource_that_was_altered_does_not_decrypt(change: dict[str, str]) -> None:
    with pytest.raises(crypto.DecryptError):
        crypto.decrypt_resource(APIV3_KEY, {**seal(b"{}"), **change})


def test_resource_sealed_with_another_key_does_not_decrypt() -> None:
    with pytest.raises(crypto.DecryptError):
        crypto.decrypt_resource(APIV3_KEY, seal(b"{}", key=os.urandom(32)))


def test_authorization_header_signs_method_url_time_nonce_and_body(keys: SandboxKeys) -> None:
    k = keys.wechatpay
    header = crypto.authorization(mchid=k.mchid, serial_no=k.merchant_serial,
                                  key=crypto.load_private_key(k.merchant_private_pem),
                                  method="post", url="/v3/pay/transactions/jsapi?x=1",
                                  body=b'{"a":1}', timestamp="1700000000", nonce="n0nce")
    params = crypto.parse_authorization(header)
    assert {k2: params[k2] for k2 in ("mchid", "serial_no", "timestamp", "nonce_str")} == \
        {"mchid": k.mchid, "serial_no": k.merchant_serial, "timestamp": "1700000000",
         "nonce_str": "n0nce"}
    public = serialization.load_pem_public_key(k.merchant_public_pem.encode())
    assert isinstance(public, rsa.RSAPublicKey)
    message = b'POST\n/v3/pay/transactions/jsapi?x=1\n1700000000\nn0nce\n{"a":1}\n'
    public.verify(base64.b64decode(params["signature"]), message, padding.PKCS1v15(),
                  hashes.SHA256())


def test_verify_accepts_the_platform_signature_and_nothing_else(keys: SandboxKeys) -> None:
    platform = crypto.load_private_key(keys.wechatpay.platform_private_pem)
    public = crypto.load_public_key(keys.wechatpay.platform_public_pem)
    message = crypto.lines("1700000000", "nonce", b'{"id":"1"}')
    signature = crypto.sign(platform, message)
    assert crypto.verify(public, message, signature)
    assert not crypto.verify(public, message.replace(b"1", b"2"), signature)
    assert not crypto.verify(public, message, "not-base64")


def test_a_header_of_another_scheme_has_no_parameters() -> None:
    assert crypto.parse_authorization('Bearer mchid="1"') == {}
