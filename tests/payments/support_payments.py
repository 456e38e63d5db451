"""Helpers shared by the payment tests: configs from the sandbox keys, a merchant endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from payments.alipay import AlipayConfig
from payments.provider import Notice, NoticeMismatch, PaymentProvider, SignatureError
from payments.sandbox import SandboxKeys
from payments.sandbox.delivery import serve
from payments.wechatpay import WechatPayConfig


def alipay_config(keys: SandboxKeys, gateway: str, **changes: str) -> AlipayConfig:
    fields = dict(app_id=keys.alipay.app_id, app_private_key=keys.alipay.app_private_pem,
                  alipay_public_key=keys.alipay.alipay_public_pem, gateway=gateway,
                  seller_id=keys.alipay.seller_id)
    return AlipayConfig(**{**fields, **changes})


def wechat_config(keys: SandboxKeys, gateway: str, **changes: str) -> WechatPayConfig:
    k = keys.wechatpay
    fields = dict(mchid=k.mchid, appid=k.appid, serial_no=k.merchant_serial,
                  private_key=k.merchant_private_pem, apiv3_key=k.apiv3_key,
                  platform_keys={k.platform_serial: k.platform_public_pem}, gateway=gateway)
    return WechatPayConfig(**{**fields, **changes})


@dataclass
class Merchant:
    """Our side of the notify: parse with the provider, record, answer with its ack."""

    provider: PaymentProvider
    url: str = ""
    notices: list[Notice] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            self.notices.append(self.provider.parse_notify(request.headers, await request.read()))
            ok = True
        except (SignatureError, NoticeMismatch) as ex:
            self.errors.append(ex)
            ok = False
        status, content_type, body = self.provider.ack(ok)
        return web.Response(status=status, body=body, content_type=content_type)


async def merchant_endpoint(provider: PaymentProvider) -> AsyncIterator[Merchant]:
    """Serve a Merchant on a free loopback port for as long as the generator runs."""
    merchant = Merchant(provider)
    app = web.Application()
    app.router.add_post("/notify", merchant.handle)
    runner, base = await serve(app, "127.0.0.1", 0)
    merchant.url = base + "/notify"
    yield merchant
    await runner.cleanup()
