"""The sandbox key set writes files and env vars that both adapters accept as configuration."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from billing.money import Money
from payments.alipay import AlipayConfig, AlipayProvider
from payments.provider import PayRequest
from payments.sandbox import SandboxKeys, start_alipay_sandbox, start_wechatpay_sandbox
from payments.wechatpay import WechatPayConfig, WechatPayProvider


async def test_env_written_from_a_key_set_configures_working_providers(
        keys: SandboxKeys, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    async with await start_alipay_sandbox(keys.alipay) as ali, \
            await start_wechatpay_sandbox(keys.wechatpay) as wx:
        env = keys.write_env(tmp_path, alipay_gateway=ali.url, wechatpay_gateway=wx.url)
        alipay = AlipayProvider(AlipayConfig.from_env(env), http)
        wechat = WechatPayProvider(WechatPayConfig.from_env(env), http)

        await alipay.create(PayRequest("K1001", Money(1_00), "x", "qr", "http://127.0.0.1:1/n"))
        await wechat.create(PayRequest("K100001", Money(1_00), "x", "jsapi",
                                       "http://127.0.0.1:1/n", openid="o1"))

        assert "K1001" in ali.orders and "K100001" in wx.orders
    assert "PRIVATE" not in repr(AlipayConfig.from_env(env))
    assert keys.alipay.app_private_pem not in repr(keys)
