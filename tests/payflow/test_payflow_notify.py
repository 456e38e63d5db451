"""Provider notifies through our routes over real sockets: credit once, refuse or park the rest."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from billing.money import Money
from payments.sandbox.delivery import post
from store.models import Outbox, ProviderPayment

AMOUNT = Money.yuan("50.00")
ACKS = (b"success", b'{"code":"SUCCESS"}')


def acked(deliveries) -> bool:
    """Every delivery got the provider's exact success answer."""
    return all(d.status == 200 and d.body in ACKS for d in deliveries)


async def test_a_valid_alipay_notify_credits_the_wallet_once_and_answers_success(shop, account):
    order = await shop.open(account, AMOUNT, "alipay", "qr")
    assert order.state == "created" and order.raw["starts"]["alipay:qr"]["qr_code"]

    deliveries = await shop.alipay.pay(order.out_trade_no)

    assert [(d.status, d.body) for d in deliveries] == [(200, b"success")]
    assert await shop.balance(account) == AMOUNT
    assert (await shop.order(order.out_trade_no)).state == "credited"
    async with shop.sessions() as s:
        topics = set(await s.scalars(select(Outbox.topic)))
    assert "notify" in topics  # the receipt rides the outbox, in the credit's transaction
    assert await shop.books_balance()


async def test_a_valid_wechatpay_jsapi_notify_credits_once_and_answers_the_exact_json(shop, account):
    order = await shop.open(account, AMOUNT, "wechatpay", "jsapi", openid="o_tenant_1")
    assert shop.wechat.jsapi_order(order.raw["starts"]["wechatpay:jsapi"]["jsapi_params"]) is not None

    deliveries = await shop.wechat.pay(order.out_trade_no)

    assert [(d.status, d.body) for d in deliveries] == [(200, b'{"code":"SUCCESS"}')]
    assert await shop.balance(account) == AMOUNT


@pytest.mark.parametrize("provider", ["alipay", "wechatpay"])
async def test_the_same_notify_five_times_concurrently_credits_once(shop, account, provider):
    order = await shop.open(account, AMOUNT, provider, "qr")
    sandbox = shop.alipay if provider == "alipay" else shop.wechat

    deliveries = await sandbox.pay(order.out_trade_no, times=5, concurrently=True)

    assert acked(deliveries), deliveries
    assert await shop.balance(account) == AMOUNT
    assert await shop.credits(order.out_trade_no) == 1
    async with shop.sessions() as s:
        assert len(list(await s.scalars(select(ProviderPayment)))) == 1


async def test_the_answer_comes_well_within_five_seconds(shop, account):
    order = await shop.open(account, AMOUNT)
    started = time.perf_counter()
    await shop.alipay.pay(order.out_trade_no)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("provider", ["alipay", "wechatpay"])
async def test_a_forged_signature_is_refused_and_credits_nothing(shop, account, provider):
    order = await shop.open(account, AMOUNT, provider, "qr")
    sandbox = shop.alipay if provider == "alipay" else shop.wechat

    deliveries = await sandbox.pay(order.out_trade_no, forge=True)

    assert deliveries[0].body != b"success" and b"SUCCESS" not in deliveries[0].body
    assert await shop.balance(account) == Money(0)
    assert (await shop.order(order.out_trade_no)).state == "created"
    assert await shop.conflicts() == []


async def test_a_stale_wechatpay_notify_is_refused_as_a_replay(shop, account):
    order = await shop.open(account, AMOUNT, "wechatpay", "qr")
    deliveries = await shop.wechat.pay(order.out_trade_no, timestamp_offset_s=-600)
    assert deliveries[0].status == 500
    assert await shop.balance(account) == Money(0)


async def test_an_amount_changed_after_signing_is_refused(shop, account):
    order = await shop.open(account, AMOUNT)
    deliveries = await shop.alipay.pay(order.out_trade_no, tamper={"total_amount": "999.00"})
    assert deliveries[0].body == b"fail"
    assert await shop.balance(account) == Money(0)


@pytest.mark.parametrize("provider, overrides", [
    ("alipay", {"total_amount": "0.01"}),
    ("wechatpay", {"amount": {"total": 1, "currency": "CNY"}}),
])
async def test_a_signed_wrong_amount_becomes_a_conflict_for_staff_and_is_not_credited(shop, account, provider,
                                                                                       overrides):
    order = await shop.open(account, AMOUNT, provider, "qr")
    sandbox = shop.alipay if provider == "alipay" else shop.wechat

    deliveries = await sandbox.pay(order.out_trade_no, overrides=overrides, times=2)

    assert acked(deliveries)  # acknowledged: retrying would not fix it
    assert await shop.balance(account) == Money(0)
    [conflict] = await shop.conflicts()  # the repeat adds no second row
    assert (conflict.field, conflict.actual) == ("amount", "0.01")
    assert (await shop.order(order.out_trade_no)).state == "conflict"


@pytest.mark.parametrize("provider, overrides, field", [
    ("alipay", {"app_id": "2021999999999999"}, "app_id"),
    ("alipay", {"seller_id": "2088999999999999"}, "seller_id"),
    ("wechatpay", {"appid": "wx9999999999999999"}, "appid"),
    ("wechatpay", {"mchid": "1999999999"}, "mchid"),
])
async def test_another_app_id_or_merchant_is_a_conflict_and_nothing_is_credited(shop, account, provider,
                                                                                overrides, field):
    order = await shop.open(account, AMOUNT, provider, "qr")
    sandbox = shop.alipay if provider == "alipay" else shop.wechat

    deliveries = await sandbox.pay(order.out_trade_no, overrides=overrides)

    assert acked(deliveries)
    assert await shop.balance(account) == Money(0)
    [conflict] = await shop.conflicts()
    assert conflict.field == field and conflict.order_id == order.id


async def test_an_unknown_order_is_answered_failure_so_the_provider_retries(shop, account):
    shop.alipay.add_order("P_NOT_OURS_0001", AMOUNT, shop.notify_url("alipay"))
    deliveries = await shop.alipay.pay("P_NOT_OURS_0001")
    assert deliveries[0].body == b"fail"
    assert await shop.balance(account) == Money(0)


async def test_a_notify_before_the_order_row_is_committed_fails_then_its_retry_credits_once(shop, account):
    """The provider knew the order before our row was visible: we answer fail, its retry succeeds."""
    shop.wechat.add_order("P20250101000000early0001", AMOUNT.fen, shop.notify_url("wechatpay"))
    first = await shop.wechat.pay("P20250101000000early0001")
    assert first[0].status == 500 and await shop.balance(account) == Money(0)

    order = await shop.open(account, AMOUNT, "wechatpay", "jsapi", openid="o_tenant_1")
    async with shop.sessions() as s, s.begin():  # the row as it is once committed
        row = await s.get(type(order), order.id)
        row.out_trade_no = "P20250101000000early0001"

    retries = await shop.wechat.notify("P20250101000000early0001", times=2)
    assert acked(retries)
    assert await shop.balance(account) == AMOUNT
    assert await shop.credits("P20250101000000early0001") == 1


@pytest.mark.parametrize("provider", ["alipay", "wechatpay"])
async def test_a_paid_order_is_never_downgraded_by_a_later_closed_notice(shop, account, provider):
    order = await shop.open(account, AMOUNT, provider, "qr")
    if provider == "alipay":
        await shop.alipay.pay(order.out_trade_no)
        late = await shop.alipay.notify(order.out_trade_no, overrides={"trade_status": "TRADE_CLOSED"})
    else:
        await shop.wechat.pay(order.out_trade_no)
        shop.wechat.orders[order.out_trade_no].trade_state = "CLOSED"
        late = await shop.wechat.notify(order.out_trade_no)
        late += await shop.wechat.notify(order.out_trade_no, overrides={"trade_state": "PAYERROR"})

    assert acked(late)
    assert (await shop.order(order.out_trade_no)).state == "credited"
    assert await shop.balance(account) == AMOUNT


async def test_a_closed_notice_closes_an_unpaid_order_and_a_later_payment_still_credits(shop, account):
    order = await shop.open(account, AMOUNT, "alipay", "qr")
    shop.alipay.scan(order.out_trade_no)
    await shop.alipay.notify(order.out_trade_no, overrides={"trade_status": "TRADE_CLOSED"})
    assert (await shop.order(order.out_trade_no)).state == "closed"

    await shop.alipay.pay(order.out_trade_no)
    assert (await shop.order(order.out_trade_no)).state == "credited"
    assert await shop.balance(account) == AMOUNT


async def test_an_unconfigured_provider_route_is_not_found(shop, account):
    del shop.providers["wechatpay"]  # the views hold their own copy: still configured there
    async with __import__("aiohttp").ClientSession() as http:
        delivery = await post(http, f"{shop.url}/payments/paypal/notify", {}, b"x")
    assert delivery.status == 404
