"""Throwaway key sets for the local provider sandboxes: real RSA keys, generated per run."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def _rsa_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public.decode()


@dataclass(frozen=True)
class AlipayKeys:
    """The app's key pair (merchant side) and Alipay's key pair (the sandbox signs with it)."""

    app_id: str
    seller_id: str
    app_private_pem: str = field(repr=False)
    app_public_pem: str = field(repr=False)
    alipay_private_pem: str = field(repr=False)
    alipay_public_pem: str = field(repr=False)

    @classmethod
    def generate(cls, app_id: str = "2021000000000001",
                 seller_id: str = "2088000000000001") -> AlipayKeys:
        app_private, app_public = _rsa_pair()
        alipay_private, alipay_public = _rsa_pair()
        return cls(app_id, seller_id, app_private, app_public, alipay_private, alipay_public)


@dataclass(frozen=True)
class WechatPayKeys:
    """Merchant API key pair + serial, WeChat Pay's platform key pair + id, the APIv3 key."""

    mchid: str
    appid: str
    merchant_serial: str
    platform_serial: str
    merchant_private_pem: str = field(repr=False)
    merchant_public_pem: str = field(repr=False)
    platform_private_pem: str = field(repr=False)
    platform_public_pem: str = field(repr=False)
    apiv3_key: str = field(repr=False)  # 32 ASCII characters, used as the raw AES-256 key

    @classmethod
    def generate(cls, mchid: str = "1900000001",
                 appid: str = "wx0000000000000001") -> WechatPayKeys:
        merchant_private, merchant_public = _rsa_pair()
        platform_private, platform_public = _rsa_pair()
        return cls(
            mchid=mchid, appid=appid,
            merchant_serial=secrets.token_hex(20).upper(),
            platform_serial="PUB_KEY_ID_" + secrets.token_hex(12).upper(),
            merchant_private_pem=merchant_private, merchant_public_pem=merchant_public,
            platform_private_pem=platform_private, platform_public_pem=platform_public,
            apiv3_key=secrets.token_hex(16),
        )


@dataclass(frozen=True)
class SandboxKeys:
    """A full key set for both providers, writable as files plus environment variables."""

    alipay: AlipayKeys
    wechatpay: WechatPayKeys

    def write_env(self, directory: Path, *, alipay_gateway: str = "",
                  wechatpay_gateway: str = "") -> dict[str, str]:
        """Write the PEM files into ``directory``; return the env vars the app reads."""
        files = {
            "alipay_app_private.pem": self.alipay.app_private_pem,
            "alipay_public.pem": self.alipay.alipay_public_pem,
            "wechatpay_private.pem": self.wechatpay.merchant_private_pem,
            "wechatpay_public.pem": self.wechatpay.platform_public_pem,
        }
        for name, text in files.items():
            (directory / name).write_text(text)
        return {
            "ALIPAY_APPID": self.alipay.app_id,
            "ALIPAY_PRIVATE_KEY": str(directory / "alipay_app_private.pem"),
            "ALIPAY_PUBLIC_KEY": str(directory / "alipay_public.pem"),
            "ALIPAY_GATEWAY": alipay_gateway,
            "ALIPAY_SELLER_ID": self.alipay.seller_id,
            "WECHATPAY_MCHID": self.wechatpay.mchid,
            "WECHATPAY_APPID": self.wechatpay.appid,
            "WECHATPAY_SERIAL_NO": self.wechatpay.merchant_serial,
            "WECHATPAY_PRIVATE_KEY": str(directory / "wechatpay_private.pem"),
            "WECHATPAY_APIV3_KEY": self.wechatpay.apiv3_key,
            "WECHATPAY_PUBLIC_KEY": str(directory / "wechatpay_public.pem"),
            "WECHATPAY_PUBLIC_KEY_ID": self.wechatpay.platform_serial,
            "WECHATPAY_GATEWAY": wechatpay_gateway,
        }


def generate_keyset() -> SandboxKeys:
    """Fresh keys for both sandboxes (four RSA-2048 pairs, ~0.2 s)."""
    return SandboxKeys(AlipayKeys.generate(), WechatPayKeys.generate())
