"""The active query for orders whose notify never came, and the daily reconciliation."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from billing.money import Money
from payments.sandbox.alipay_orders import now as beijing_now
from services.payment_checks import SCHEDULE_S, query_pending, reconcile_day, slots_passed
from store.models import ReconciliationItem
from tests.payflow.test_payflow_notify import AMOUNT


def test_the_schedule_is_one_five_fifteen_minutes_then_hourly_for_a_day():
    assert SCHEDULE_S[:4] == (60, 300, 900, 3600) and SCHEDULE_S[-1] == 24 * 3600
    start = beijing_now()
    assert [slots_passed(start, start + timedelta(seconds=s)) for s in (59, 60, 899, 900, 7200)] == [0, 1, 2, 3, 5]


async def test_the_query_credits_an_order_whose_notify_never_came(shop, account):
    order = await shop.open(account, AMOUNT, "wechatpay", "qr")
    shop.wechat.book.mark_paid(shop.wechat.orders[order.out_trade_no])  # paid; the notify is lost

    early = await query_pending(shop.sessions, shop.providers, order.created_at + timedelta(seconds=30))
    assert early.queried == 0 and await shop.balance(account) == Money(0)

    report = await query_pending(shop.sessions, shop.providers, order.created_at + timedelta(seconds=61))
    assert (report.queried, report.credited) == (1, 1)
    assert await shop.balance(account) == AMOUNT
    again = await query_pending(shop.sessions, shop.providers, order.created_at + timedelta(seconds=62))
    assert again.queried == 0  # not before the 5-minute slot; and a paid order is never queried again


async def test_an_unscanned_qr_is_queried_on_schedule_and_closed_after_a_day(shop, account):
    order = await shop.open(account, AMOUNT, "alipay", "qr")
    at = order.created_at
    assert (await query_pending(shop.sessions, shop.providers, at + timedelta(minutes=16))).queried == 1
    assert (await query_pending(shop.sessions, shop.providers, at + timedelta(minutes=17))).queried == 0
    last = await query_pending(shop.sessions, shop.providers, at + timedelta(hours=24))
    assert last.closed == 1 and (await shop.order(order.out_trade_no)).state == "closed"
    assert await shop.balance(account) == Money(0)


async def test_reconciliation_reports_a_payment_the_ledger_does_not_have(shop, account):
    good = await shop.open(account, AMOUNT, "alipay", "qr")
    await shop.alipay.pay(good.out_trade_no)
    lost = await shop.open(account, Money.yuan("8"), "alipay", "qr")
    ali = shop.alipay.orders[lost.out_trade_no]
    ali.status, ali.paid_at, ali.seen_by_buyer = "TRADE_SUCCESS", beijing_now(), True

    report = await reconcile_day(shop.sessions, shop.providers, beijing_now().date())

    assert report.checked == 2
    assert [(d.out_trade_no, d.kind) for d in report.differences] == [(lost.out_trade_no, "not_credited")]
    async with shop.sessions() as s:
        rows = list(await s.scalars(select(ReconciliationItem)))
    assert [(r.kind, r.theirs_fen) for r in rows] == [("not_credited", 800)]

    await query_pending(shop.sessions, shop.providers, lost.created_at + timedelta(minutes=2))
    rerun = await reconcile_day(shop.sessions, shop.providers, beijing_now().date())
    assert rerun.differences == []
