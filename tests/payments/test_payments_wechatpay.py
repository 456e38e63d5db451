"""The WeChat Pay v3 adapter against the local v3 server, over real sockets and real keys."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import aiohttp
import pytest

from billing.money import Money
from payments.provider import (
    NoticeMismatch,
    PayRequest,
    ProviderError,
    ProviderRefused,
    SignatureError,
)
from payments.sandbox import SandboxKeys, WechatPaySandbox
from payments.wechatpay import WechatPayProvider

from tests.payments.support_payments import Merchant, wechat_config

OPENID = "o_tenant_301"


def jsapi(out_trade_no: str, fen: int, notify_url: str) -> PayRequest:
    return PayRequest(out_trade_no, Money(fen), "电费充值 301", "jsapi", notify_url, openid=OPENID)


async def test_jsapi_order_paid_in_wechat_arrives_as_a_paid_notice(
        wechat: WechatPayProvider, wechat_sandbox: WechatPaySandbox,
        wechat_merchant: Merchant) -> None:
    start = await wechat.create(jsapi("W100001", 12_34, wechat_merchant.url))
    assert start.jsapi_params is not None
    assert wechat_sandbox.jsapi_order(start.jsapi_params) is wechat_sandbox.orders["W100001"]

    deliveries = await wechat_sandbox.pay("W100001")

    assert [(d.status, d.body) for d in deliveries] == [(200, b'{"code":"SUCCESS"}')]
    [notice] = wechat_merchant.notices
    order = wechat_sandbox.orders["W100001"]
    assert (notice.provider, notice.out_trade_no, notice.trade_no, notice.amount, notice.status) \
        == ("wechatpay", "W100001", order.transaction_id, Money(12_34), "paid")
    assert (notice.app_id, notice.merchant_id) == (wechat_sandbox.keys.appid,
                                                   wechat_sandbox.keys.mchid)
    assert notice.paid_at == order.success_time
    assert notice.paid_at.utcoffset() == timedelta(hours=8)  # type: ignore[union-attr]
    assert notice.raw["payer"] == {"openid": OPENID}


async def test_jsapi_pay_params_with_a_changed_package_do_not_verify(
        wechat: WechatPayProvider, wechat_sandbox: WechatPaySandbox) -> None:
    start = await wechat.create(jsapi("W100002", 100, "http://127.0.0.1:1/n"))
    assert start.jsapi_params is not None
    forged = {**start.jsapi_params, "package": "prepay_id=wx_someone_elses"}
    assert wechat_sandbox.jsapi_order(forged) is None
    assert start.jsapi_params["signType"] == "RSA"


async def test_native_order_returns_a_qr_code_url(
        wechat: WechatPayProvider, wechat_sandbox: WechatPaySandbox) -> None:
    start = await wechat.create(PayRequest("W100003", Money(5_00), "水费", "qr",
                                           "http://127.0.0.1:1/n"))
    assert start.qr_code and start.qr_code.startswith("weixin://wxpay/bizpayurl?pr=")
    assert wechat_sandbox.orders["W100003"].trade_type == "NATIVE"


async def test_jsapi_without_openid_is_a_programming_error(wechat: WechatPayProvider) -> None:
    with pytest.raises(ValueError, match="openid"):
        await wechat.create(PayRequest("W100004", Money(1), "x", "jsapi", "http://n"))


@pytest.mark.parametrize("option", [
    {"forge": True},
    {"serial": "PUB_KEY_ID_UNKNOWN"},
    {"tamper": {"amount": {"total": 1, "currency": "CNY"}}},
    {"apiv3_key": "0" * 32},
], ids=["forged-signature", "unknown-serial", "tampered-amount", "other-apiv3-key"])
async def test_notify_that_is_not_authentic_is_refused_with_a_fail_ack(
        wechat: WechatPayProvider, wechat_sandbox: WechatPaySandbox, wechat_merchant: Merchant,
        option: dict[str, object]) -> None:
    await wechat.create(jsapi("W100005", 10_00, wechat_merchant.url))
    deliveries = await wechat_sandbox.pay("W100005", **option)
    assert deliveries[0].status == 500
    assert json.loads(deliveries[0].body)["code"] == "FAIL"
    assert wechat_merchant.notices == []
    assert isinstance(wechat_merchant.errors[0], SignatureError)


@pytest.mark.parametrize(("offset_s", "accepted"), [(-360, False), (360, False), (-240, True)])
async def test_notify_timestamps_older_or_newer_than_five_minutes_are_replays(
        wechat: WechatPayProvider, wechat_sandbox: WechatPaySandbox, offset_s: int,
        accepted: bool) -> None:
    wechat_sandbox.add_order("W100006", 1_00, "http://127.0.0.1:1/n")
    headers, body = wechat_sandbox.build_notify("W100006", timestamp_offset_s=offset_s)
    if accepted:
        assert wechat.parse_notify(headers, body).out_trade_no == "W100006"
    else:
        with pytest.raises(SignatureError, match="replay"):
            wechat.parse_notify(headers, body)


@pytest.mark.parametrize(("field", "value"), [
    ("mchid", "1900000999"), ("appid", "wx_other_app"),
    ("amount", {"total": 100, "currency": "USD"}),
])
async def test_authentic_notify_for_another_merchant_app_or_currency_is_a_mismatch(
        wechat: WechatPayProvider, wechat_sandbox: WechatPaySandbox, field: str,
        value: object) -> None:
    wechat_sandbox.add_order("W100007", 1_00, "http://127.0.0.1:1/n")
    headers, body = wechat_sandbox.build_notify("W100007", overrides={field: value})
    with pytest.raises(NoticeMismatch) as caught:
        wechat.parse_notify(headers, body)
    assert caught.value.field in {"mchid", "appid", "currency"}
    assert caught.value.notice.out_trade_no == "W100007"


def test_notify_without_signature_headers_is_refused(wechat: WechatPayProvider) -> None:
    with pytest.raises(SignatureError):
        wechat.parse_notify({"Content-Type": "application/json"}, b'{"resource":{}}')


async def test_the_same_notify_five_times_at_once_parses_to_the_same_notice(
        wechat: WechatPayProvider, wechat_sandbox: WechatPaySandbox,
        wechat_merchant: Merchant) -> None:
    await wechat.create(jsapi("W100008", 8_88, wechat_merchant.url))
    deliveries = await wechat_sandbox.pay("W100008", times=5, concurrently=True)
    assert [d.status for d in deliveries] == [200] * 5
    assert len(wechat_merchant.notices) == 5 and len(set(wechat_merchant.notices)) == 1


async def test_query_of_an_unknown_order_returns_none(wechat: WechatPayProvider) -> None:
    assert await wechat.query("W-NEVER-CREATED") is None


async def test_query_follows_the_order_from_notpay_to_paid(
        wechat: WechatPayProvider, wechat_sandbox: WechatPaySandbox) -> None:
    await wechat.create(jsapi("W100009", 2_00, "http://127.0.0.1:1/n"))
    pending = await wechat.query("W100009")
    assert pending is not None and (pending.status, pending.trade_no) == ("pending", "")

    await wechat_sandbox.pay("W100009")  # the notify is lost
    paid = await wechat.query("W100009")
    assert paid is not None and (paid.status, paid.amount) == ("paid", Money(2_00))
    assert paid.trade_no == wechat_sandbox.orders["W100009"].transaction_id


async def test_refund_round_trip(
        wechat: WechatPayProvider, wechat_sandbox: WechatPaySandbox,
        wechat_merchant: Merchant) -> None:
    await wechat.create(jsapi("W100010", 10_00, wechat_merchant.url))
    await wechat_sandbox.pay("W100010")

    assert await wechat.refund("W100010", "WR1", Money(3_00), Money(10_00)) == "processing"
    assert await wechat.refund("W100010", "WR1", Money(3_00), Money(10_00)) == "processing"
    assert wechat_sandbox.orders["W100010"].refunded == 3_00
    with pytest.raises(ProviderRefused, match="INVALID_REQUEST"):
        await wechat.refund("W100010", "WR2", Money(7_01), Money(10_00))

    deliveries = await wechat_sandbox.complete_refund("WR1")
    assert deliveries[0].status == 200
    refunded = wechat_merchant.notices[-1]
    assert (refunded.status, refunded.refunded, refunded.amount, refunded.raw["out_refund_no"]) \
        == ("refunded", Money(3_00), Money(10_00), "WR1")
    assert await wechat.refund("W100010", "WR1", Money(3_00), Money(10_00)) == "success"
    after = await wechat.query("W100010")
    assert after is not None and after.status == "refunded"


async def test_refund_of_an_unknown_order_is_refused(wechat: WechatPayProvider) -> None:
    with pytest.raises(ProviderRefused, match="RESOURCE_NOT_EXISTS"):
        await wechat.refund("W-NEVER", "WR9", Money(1), Money(1))


async def test_server_busy_is_a_transient_provider_error(
        wechat: WechatPayProvider, wechat_sandbox: WechatPaySandbox) -> None:
    wechat_sandbox.fail_requests(1)
    with pytest.raises(ProviderError):
        await wechat.query("W100011")
    assert await wechat.query("W100011") is None


async def test_unreachable_server_is_a_transient_provider_error(
        keys: SandboxKeys, http: aiohttp.ClientSession, unused_tcp_port: int) -> None:
    provider = WechatPayProvider(wechat_config(keys, f"http://127.0.0.1:{unused_tcp_port}"), http)
    with pytest.raises(ProviderError):
        await provider.query("W100012")


async def test_answer_not_signed_by_the_platform_is_refused(
        wechat: WechatPayProvider, wechat_sandbox: WechatPaySandbox) -> None:
    wechat_sandbox.forge_answers = True
    with pytest.raises(SignatureError):
        await wechat.create(jsapi("W100013", 100, "http://127.0.0.1:1/n"))


async def test_request_signed_with_the_wrong_merchant_key_is_refused_by_the_server(
        keys: SandboxKeys, wechat_sandbox: WechatPaySandbox, http: aiohttp.ClientSession) -> None:
    wrong = wechat_config(keys, wechat_sandbox.url, private_key=keys.alipay.app_private_pem)
    with pytest.raises(ProviderRefused) as caught:
        await WechatPayProvider(wrong, http).create(jsapi("W100014", 100, "http://127.0.0.1:1/n"))
    assert caught.value.code == "SIGN_ERROR"
    assert "W100014" not in wechat_sandbox.orders


async def test_a_merchant_clock_six_minutes_off_is_refused_by_the_server(
        keys: SandboxKeys, wechat_sandbox: WechatPaySandbox, http: aiohttp.ClientSession) -> None:
    skewed = WechatPayProvider(wechat_config(keys, wechat_sandbox.url), http,
                               clock=lambda: time.time() - 360)
    with pytest.raises(ProviderRefused, match="SIGN_ERROR"):
        await skewed.query("W100015")


def test_ack_bodies_are_exactly_what_wechat_pay_expects(wechat: WechatPayProvider) -> None:
    assert wechat.ack(True) == (200, "application/json", b'{"code":"SUCCESS"}')
    status, content_type, body = wechat.ack(False)
    assert (status, content_type) == (500, "application/json")
    assert json.loads(body)["code"] == "FAIL" and json.loads(body)["message"]


def test_an_apiv3_key_that_is_not_32_bytes_fails_fast(keys: SandboxKeys,
                                                       http: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        WechatPayProvider(wechat_config(keys, "http://127.0.0.1:1", apiv3_key="short"), http)
