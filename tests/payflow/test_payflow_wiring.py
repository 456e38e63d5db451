"""Providers from settings, the PaymentStarter the pay page calls, and the job bodies."""

from __future__ import annotations

from datetime import timedelta

import aiohttp
import pytest

from billing.money import Money
from meterpay.settings import Settings
from payments.jobs import payments_query_pending
from payments.registry import PaymentConfigError, ProviderPaymentStarter, build_providers, notify_url
from tests.payflow.test_payflow_notify import acked


async def test_providers_are_built_from_the_documented_settings(keys, tmp_path):
    env = keys.write_env(tmp_path, alipay_gateway="http://127.0.0.1:1/gateway.do",
                         wechatpay_gateway="http://127.0.0.1:1")
    async with aiohttp.ClientSession() as http:
        providers = build_providers(Settings.from_env(env, dotenv=None), http)
        assert set(providers) == {"alipay", "wechatpay"}
        assert build_providers(Settings.from_env({}, dotenv=None), http) == {}
        broken = {**env, "WECHATPAY_PRIVATE_KEY": str(tmp_path / "missing.pem")}
        with pytest.raises(PaymentConfigError, match="missing.pem"):
            build_providers(Settings.from_env(broken, dotenv=None), http)
        with pytest.raises(PaymentConfigError, match="ALIPAY_PRIVATE_KEY"):
            build_providers(Settings.from_env({"ALIPAY_APPID": "1"}, dotenv=None), http)
    assert notify_url("https://pay.example.cn/", "alipay") == "https://pay.example.cn/payments/alipay/notify"


async def test_the_starter_opens_wechat_jsapi_and_alipay_wap_for_the_pay_page(shop, account):
    starter = ProviderPaymentStarter(shop.sessions, shop.providers, shop.url)

    wx = await starter.start(account, Money.yuan("30"), "wechatpay_jsapi", "o_tenant_1")
    ali = await starter.start(account, Money.yuan("30"), "alipay_wap", None, return_url="https://x/back")

    assert shop.wechat.jsapi_order(wx["jsapi_params"]).out_trade_no == wx["out_trade_no"]
    assert ali["pay_url"].startswith(shop.alipay.url) and ali["provider"] == "alipay"
    assert shop.wechat.orders[wx["out_trade_no"]].notify_url == shop.notify_url("wechatpay")
    assert acked(await shop.wechat.pay(wx["out_trade_no"]))
    assert await shop.balance(account) == Money.yuan("30")


async def test_the_cron_job_body_queries_with_the_worker_context(shop, account):
    order = await shop.open(account, Money.yuan("9"), "wechatpay", "qr")
    shop.wechat.book.mark_paid(shop.wechat.orders[order.out_trade_no])
    ctx = {"sessions": shop.sessions, "payment_providers": shop.providers,
           "clock": lambda: order.created_at + timedelta(minutes=2)}
    assert await payments_query_pending(ctx) == 1
    assert await shop.balance(account) == Money.yuan("9")
