"""The Alipay adapter against the local Alipay gateway, over real sockets and real RSA2 keys."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from billing.money import Money
from payments.alipay import AlipayProvider
from payments.provider import (
    NoticeMismatch,
    PayRequest,
    ProviderError,
    ProviderRefused,
    SignatureError,
)
from payments.sandbox import AlipaySandbox, SandboxKeys

from tests.payments.support_payments import Merchant, alipay_config

SHANGHAI = ZoneInfo("Asia/Shanghai")


def qr(out_trade_no: str, fen: int, notify_url: str) -> PayRequest:
    return PayRequest(out_trade_no, Money(fen), "电费充值 301", "qr", notify_url)


async def test_qr_order_paid_by_the_buyer_arrives_as_a_paid_notice(
        alipay: AlipayProvider, alipay_sandbox: AlipaySandbox, alipay_merchant: Merchant) -> None:
    start = await alipay.create(qr("A1001", 12_34, alipay_merchant.url))
    assert start.qr_code and start.qr_code.startswith("https://qr.alipay.com/")
    assert alipay_sandbox.orders["A1001"].total == Money(12_34)

    deliveries = await alipay_sandbox.pay("A1001")

    assert [d.body for d in deliveries] == [b"success"]
    [notice] = alipay_merchant.notices
    order = alipay_sandbox.orders["A1001"]
    assert (notice.provider, notice.out_trade_no, notice.trade_no, notice.amount, notice.status) \
        == ("alipay", "A1001", order.trade_no, Money(12_34), "paid")
    assert notice.app_id == alipay_sandbox.keys.app_id
    assert notice.merchant_id == alipay_sandbox.keys.seller_id
    assert notice.paid_at == order.paid_at.replace(microsecond=0)  # type: ignore[union-attr]
    assert notice.paid_at.utcoffset() == timedelta(hours=8)  # type: ignore[union-attr]


async def test_requests_are_stamped_in_beijing_time(
        alipay: AlipayProvider, alipay_sandbox: AlipaySandbox) -> None:
    await alipay.create(qr("A1002", 100, "http://127.0.0.1:1/notify"))
    [request] = alipay_sandbox.requests
    stamped = datetime.strptime(request["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI)
    assert abs(datetime.now(SHANGHAI) - stamped) < timedelta(seconds=60)
    assert request["sign_type"] == "RSA2" and request["notify_url"] == "http://127.0.0.1:1/notify"


async def test_wap_pay_url_is_signed_and_opens_the_cashier(
        alipay: AlipayProvider, alipay_sandbox: AlipaySandbox, alipay_merchant: Merchant,
        http: aiohttp.ClientSession) -> None:
    start = await alipay.create(PayRequest("A1003", Money(50_00), "水费", "wap",
                                           alipay_merchant.url, return_url="https://x.test/back"))
    assert start.pay_url and start.pay_url.startswith(alipay_sandbox.url + "?")
    params = dict(parse_qsl(urlsplit(start.pay_url).query))
    assert params["method"] == "alipay.trade.wap.pay"
    assert params["return_url"] == "https://x.test/back"

    async with http.get(start.pay_url) as page:
        assert page.status == 200 and "A1003" in await page.text()
    await alipay_sandbox.pay("A1003")

    assert [n.amount for n in alipay_merchant.notices] == [Money(50_00)]


async def test_a_tampered_wap_url_is_rejected_by_the_gateway(
        alipay: AlipayProvider, alipay_merchant: Merchant, http: aiohttp.ClientSession) -> None:
    start = await alipay.create(PayRequest("A1004", Money(1_00), "水费", "wap", alipay_merchant.url))
    assert start.pay_url
    tampered = start.pay_url.replace("%221.00%22", "%220.01%22")
    assert tampered != start.pay_url
    async with http.get(tampered) as page:
        assert page.status == 400 and "isv.invalid-signature" in await page.text()


async def test_notify_signed_by_an_impostor_is_refused(
        alipay: AlipayProvider, alipay_sandbox: AlipaySandbox, alipay_merchant: Merchant) -> None:
    await alipay.create(qr("A1005", 100, alipay_merchant.url))
    deliveries = await alipay_sandbox.pay("A1005", forge=True)
    assert [d.body for d in deliveries] == [b"fail"]
    assert alipay_merchant.notices == []
    assert isinstance(alipay_merchant.errors[0], SignatureError)


async def test_notify_with_a_tampered_amount_is_refused(
        alipay: AlipayProvider, alipay_sandbox: AlipaySandbox) -> None:
    alipay_sandbox.add_order("A1006", Money(1_00), "http://127.0.0.1:1/n")
    alipay_sandbox.orders["A1006"].status = "TRADE_SUCCESS"
    headers, body = alipay_sandbox.build_notify("A1006", tamper={"total_amount": "1000.00"})
    assert b"total_amount=1000.00" in body
    with pytest.raises(SignatureError):
        alipay.parse_notify(headers, body)


@pytest.mark.parametrize("body", [b"", b"sign=abc", b"\xff\xfe", b"trade_status=TRADE_SUCCESS"])
def test_unsigned_or_garbage_notify_is_refused(alipay: AlipayProvider, body: bytes) -> None:
    with pytest.raises(SignatureError):
        alipay.parse_notify({}, body)


async def test_validly_signed_notify_for_another_app_is_a_mismatch(
        alipay: AlipayProvider, alipay_sandbox: AlipaySandbox) -> None:
    alipay_sandbox.add_order("A1007", Money(1_00), "http://127.0.0.1:1/n")
    headers, body = alipay_sandbox.build_notify("A1007", overrides={"app_id": "2021999999999999"})
    with pytest.raises(NoticeMismatch) as caught:
        alipay.parse_notify(headers, body)
    assert caught.value.field == "app_id" and caught.value.actual == "2021999999999999"
    assert caught.value.notice.out_trade_no == "A1007"


async def test_validly_signed_notify_for_another_seller_is_a_mismatch(
        alipay: AlipayProvider, alipay_sandbox: AlipaySandbox) -> None:
    alipay_sandbox.add_order("A1008", Money(1_00), "http://127.0.0.1:1/n")
    headers, body = alipay_sandbox.build_notify("A1008", overrides={"seller_id": "2088111"})
    with pytest.raises(NoticeMismatch, match="seller_id"):
        alipay.parse_notify(headers, body)


async def test_the_same_notify_five_times_at_once_parses_to_the_same_notice(
        alipay: AlipayProvider, alipay_sandbox: AlipaySandbox, alipay_merchant: Merchant) -> None:
    await alipay.create(qr("A1009", 9_99, alipay_merchant.url))
    deliveries = await alipay_sandbox.pay("A1009", times=5, concurrently=True)
    assert [d.body for d in deliveries] == [b"success"] * 5
    assert len(alipay_merchant.notices) == 5 and len(set(alipay_merchant.notices)) == 1


async def test_query_of_an_unknown_order_returns_none(alipay: AlipayProvider) -> None:
    assert await alipay.query("NEVER-CREATED") is None


async def test_query_of_a_qr_nobody_scanned_returns_none_then_pending_after_the_scan(
        alipay: AlipayProvider, alipay_sandbox: AlipaySandbox) -> None:
    await alipay.create(qr("A1010", 100, "http://127.0.0.1:1/n"))
    assert await alipay.query("A1010") is None
    alipay_sandbox.scan("A1010")
    notice = await alipay.query("A1010")
    assert notice is not None and notice.status == "pending" and notice.paid_at is None


async def test_query_of_a_paid_order_reports_it_paid_without_a_notify(
        alipay: AlipayProvider, alipay_sandbox: AlipaySandbox) -> None:
    await alipay.create(qr("A1011", 3_00, "http://127.0.0.1:1/n"))
    await alipay_sandbox.pay("A1011")  # the notify is lost: nobody listens on port 1
    notice = await alipay.query("A1011")
    assert notice is not None
    assert (notice.status, notice.amount, notice.trade_no) == \
        ("paid", Money(3_00), alipay_sandbox.orders["A1011"].trade_no)
    assert alipay_sandbox.deliveries[0].status == -1


async def test_refund_round_trip(
        alipay: AlipayProvider, alipay_sandbox: AlipaySandbox, alipay_merchant: Merchant) -> None:
    await alipay.create(qr("A1012", 10_00, alipay_merchant.url))
    await alipay_sandbox.pay("A1012")

    assert await alipay.refund("A1012", "R1", Money(4_00), Money(10_00)) == "success"
    assert await alipay.refund("A1012", "R1", Money(4_00), Money(10_00)) == "success"  # retry
    assert alipay_sandbox.orders["A1012"].refunded == Money(4_00)
    with pytest.raises(ProviderRefused) as caught:
        await alipay.refund("A1012", "R2", Money(6_01), Money(10_00))
    assert caught.value.code == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"

    await alipay_sandbox.notify("A1012")
    refunded = alipay_merchant.notices[-1]
    assert (refunded.status, refunded.refunded, refunded.amount) == \
        ("refunded", Money(4_00), Money(10_00))


async def test_refund_of_an_unpaid_order_is_refused(
        alipay: AlipayProvider, alipay_sandbox: AlipaySandbox) -> None:
    await alipay.create(qr("A1013", 1_00, "http://127.0.0.1:1/n"))
    with pytest.raises(ProviderRefused, match="ACQ.TRADE_STATUS_ERROR"):
        await alipay.refund("A1013", "R1", Money(1_00), Money(1_00))


async def test_creating_the_same_order_with_another_amount_is_refused(
        alipay: AlipayProvider) -> None:
    await alipay.create(qr("A1014", 1_00, "http://127.0.0.1:1/n"))
    again = await alipay.create(qr("A1014", 1_00, "http://127.0.0.1:1/n"))
    assert again.qr_code
    with pytest.raises(ProviderRefused, match="ACQ.CONTEXT_INCONSISTENT"):
        await alipay.create(qr("A1014", 2_00, "http://127.0.0.1:1/n"))


async def test_gateway_busy_is_a_transient_provider_error(
        alipay: AlipayProvider, alipay_sandbox: AlipaySandbox) -> None:
    alipay_sandbox.fail_requests(1)
    with pytest.raises(ProviderError):
        await alipay.query("A1015")
    assert await alipay.query("A1015") is None


async def test_unreachable_gateway_is_a_transient_provider_error(
        keys: SandboxKeys, http: aiohttp.ClientSession, unused_tcp_port: int) -> None:
    provider = AlipayProvider(alipay_config(keys, f"http://127.0.0.1:{unused_tcp_port}/gateway.do"),
                              http)
    with pytest.raises(ProviderError):
        await provider.query("A1016")


async def test_answer_not_signed_by_alipay_is_refused(
        keys: SandboxKeys, alipay_sandbox: AlipaySandbox, http: aiohttp.ClientSession) -> None:
    wrong_key = alipay_config(keys, alipay_sandbox.url,
                              alipay_public_key=keys.alipay.app_public_pem)
    with pytest.raises(SignatureError):
        await AlipayProvider(wrong_key, http).create(qr("A1017", 100, "http://127.0.0.1:1/n"))


async def test_request_signed_with_the_wrong_app_key_is_refused_by_the_gateway(
        keys: SandboxKeys, alipay_sandbox: AlipaySandbox, http: aiohttp.ClientSession) -> None:
    wrong_key = alipay_config(keys, alipay_sandbox.url,
                              app_private_key=keys.wechatpay.merchant_private_pem)
    with pytest.raises(ProviderRefused) as caught:
        await AlipayProvider(wrong_key, http).query("A1018")
    assert caught.value.code == "isv.invalid-signature"
    assert alipay_sandbox.requests == []


async def test_create_refuses_a_channel_alipay_does_not_have(alipay: AlipayProvider) -> None:
    with pytest.raises(ValueError, match="jsapi"):
        await alipay.create(PayRequest("A1019", Money(1), "x", "jsapi", "http://n"))


def test_ack_bodies_are_exactly_what_alipay_expects(alipay: AlipayProvider) -> None:
    assert alipay.ack(True) == (200, "text/plain", b"success")
    assert alipay.ack(False) == (200, "text/plain", b"fail")
