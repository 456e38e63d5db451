"""Refunds to the original payment, notices after a refund, and an order paid twice."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from billing.money import Money
from payments.sandbox.delivery import post
from services import wallets
from services.errors import InsufficientBalance, ServiceError
from services.payment_refunds import refund_extra_payments, refund_order
from services.uow import in_transaction
from store.models import Outbox, ProviderPayment
from tests.payflow.test_payflow_notify import AMOUNT, acked


async def _refund(shop, order_id: int, amount: Money, key: str):
    async with shop.sessions() as session:
        return await refund_order(session, order_id, amount, key, providers=shop.providers)


async def test_an_alipay_refund_goes_to_the_original_payment_and_debits_the_wallet(shop, account):
    order = await shop.open(account, AMOUNT)
    await shop.alipay.pay(order.out_trade_no)

    refund = await _refund(shop, order.id, Money.yuan("20"), "r1")
    again = await _refund(shop, order.id, Money.yuan("20"), "r1")

    assert refund.state == "refunded" and again.id == refund.id
    assert shop.alipay.orders[order.out_trade_no].refunded == Money.yuan("20")
    assert await shop.balance(account) == Money.yuan("30")
    assert await shop.books_balance()


async def test_a_refund_never_exceeds_the_balance_nor_the_order(shop, account):
    order = await shop.open(account, AMOUNT)
    await shop.alipay.pay(order.out_trade_no)
    with pytest.raises(ServiceError):
        await _refund(shop, order.id, Money.yuan("50.01"), "too-much")
    await in_transaction(shop.sessions, lambda s: wallets.refund(s, account, Money.yuan("45"), "cash-out"))
    with pytest.raises(InsufficientBalance):  # 5 left in the wallet: the rest was spent
        await _refund(shop, order.id, Money.yuan("5.01"), "r1")
    assert await shop.balance(account) == Money.yuan("5")
    assert shop.alipay.orders[order.out_trade_no].refunded == Money(0)


async def test_notices_after_a_refund_neither_credit_again_nor_undo_the_refund(shop, account):
    """The old paid notify re-sent is a no-op; the refund notify confirms; a full refund's closed trade stays refunded."""
    order = await shop.open(account, AMOUNT)
    await shop.alipay.pay(order.out_trade_no)
    headers, paid_body = shop.alipay.build_notify(order.out_trade_no)
    await _refund(shop, order.id, AMOUNT, "all")
    assert (await shop.order(order.out_trade_no)).state == "refunded"

    refund_notice = await shop.alipay.notify(order.out_trade_no)  # TRADE_CLOSED with refund_fee
    replay = await post(shop.alipay._session, shop.notify_url("alipay"), headers, paid_body)

    assert acked(refund_notice) and acked([replay])
    assert await shop.balance(account) == Money(0)
    assert await shop.credits(order.out_trade_no) == 1
    assert (await shop.order(order.out_trade_no)).state == "refunded"
    assert await shop.conflicts() == []


async def test_a_refund_made_outside_meterpay_becomes_a_conflict(shop, account):
    order = await shop.open(account, AMOUNT)
    await shop.alipay.pay(order.out_trade_no)
    book = shop.alipay.book
    book.apply_refund(shop.alipay.orders[order.out_trade_no], "PORTAL1", Money.yuan("5"))  # via the merchant portal

    deliveries = await shop.alipay.notify(order.out_trade_no)

    assert acked(deliveries)
    [conflict] = await shop.conflicts()
    assert conflict.field == "refund" and conflict.actual == "5.00"
    assert await shop.balance(account) == AMOUNT  # staff decide; nothing moves by itself


async def test_a_wechat_refund_settles_by_notify_and_a_closed_refund_gives_the_money_back(shop, account):
    order = await shop.open(account, AMOUNT, "wechatpay", "jsapi", openid="o1")
    await shop.wechat.pay(order.out_trade_no)

    first = await _refund(shop, order.id, Money.yuan("10"), "w1")
    second = await _refund(shop, order.id, Money.yuan("15"), "w2")
    assert (first.state, second.state) == ("refunding", "refunding")
    assert await shop.balance(account) == Money.yuan("25")

    assert acked(await shop.wechat.complete_refund(first.out_trade_no, times=2))
    assert acked(await shop.wechat.complete_refund(second.out_trade_no, status="CLOSED"))

    assert (await shop.order(first.out_trade_no)).state == "refunded"
    assert (await shop.order(second.out_trade_no)).state == "failed"
    assert await shop.balance(account) == Money.yuan("40")
    assert await shop.books_balance()


async def test_an_order_paid_twice_is_detected_and_the_extra_payment_refunded_automatically(shop, account):
    """The tenant opened the order at WeChat Pay, switched to Alipay, and paid both."""
    order = await shop.open(account, AMOUNT, "wechatpay", "qr", key="k1")
    same = await shop.open(account, AMOUNT, "alipay", "qr", key="k1")
    assert same.id == order.id and set(same.raw["starts"]) == {"wechatpay:qr", "alipay:qr"}

    assert acked(await shop.wechat.pay(order.out_trade_no))
    assert acked(await shop.alipay.pay(order.out_trade_no, times=3))

    assert await shop.balance(account) == AMOUNT  # credited once
    async with shop.sessions() as s:
        extra = await s.scalar(select(ProviderPayment).where(ProviderPayment.role == "extra"))
        job = await s.scalar(select(Outbox).where(Outbox.topic == "payment_refund"))
    assert extra.provider == "alipay" and extra.status == "refund_due" and job is not None

    assert await refund_extra_payments(shop.sessions, shop.providers) == 1
    assert await refund_extra_payments(shop.sessions, shop.providers) == 0

    assert shop.alipay.orders[order.out_trade_no].refunded == AMOUNT
    assert shop.wechat.orders[order.out_trade_no].refunded == 0
    async with shop.sessions() as s:
        extra = await s.get(ProviderPayment, extra.id)
        job = await s.get(Outbox, job.id)
    assert extra.status == "refunded" and job.done_at is not None
    assert await shop.balance(account) == AMOUNT
