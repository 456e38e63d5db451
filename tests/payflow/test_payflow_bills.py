"""Paying an issued bill through Alipay / WeChat Pay: real sandboxes, real signatures, our notify routes.

The world: one postpaid tenant who used 123.456 kWh in March at 1.00/kWh, billed 123.46 yuan,
the bill confirmed and issued (receivable -12346 fen).
"""

from __future__ import annotations

from datetime import date, timedelta

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select

from api import setup_tenant_routes, tokens
from billing.money import Money
from meterpay.settings import Settings
from meterpay.web import SESSIONS, SETTINGS
from payments.registry import ProviderPaymentStarter
from payments.sandbox.alipay_orders import now as beijing_now
from services import bill_queries, postpaid
from services.errors import Conflict, NotFound
from services.payment_checks import query_pending, reconcile_day
from services.tenant import pay_signature
from services.uow import in_transaction
from store.models import BillPayment, LedgerTransaction, Order, Outbox, ProviderPayment, TenantLink
from tests.charges.support import MARCH, balance, build_world, meter_month
from tests.payflow.test_payflow_notify import acked

TOTAL = 12346
TODAY = date(2026, 4, 2)
SECRET = "bill-pay-secret"


@pytest.fixture
async def billed(sessions):
    """(world, issued bill id) for one postpaid tenant and one prepaid neighbour."""
    w = await build_world(sessions, areas=("30.00", "30.00"), modes=("postpaid", "prepaid"))
    await meter_month(sessions, w.meters[0], 10_000, 123_456)
    await in_transaction(sessions, lambda s: postpaid.generate_bills(s, w.site_id, MARCH))
    async with sessions() as s:
        [bill] = await bill_queries.list_bills(s, w.site_id)
    await in_transaction(sessions, lambda s: postpaid.confirm_bill(s, bill["id"], "staff"))
    await in_transaction(sessions, lambda s: postpaid.issue_bill(s, bill["id"], TODAY, "staff"))
    assert bill["total_fen"] == TOTAL
    return w, bill["id"]


async def _bill(sessions, bill_id):
    async with sessions() as s:
        return await bill_queries.get_bill(s, bill_id)


async def _start(shop, w, bill_id, channel="alipay_qr", amount=None, openid=None):
    starter = ProviderPaymentStarter(shop.sessions, shop.providers, shop.url)
    return await starter.start(w.accounts[0], amount, channel, openid, bill_id=bill_id)


async def _count(sessions, model, *where):
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_an_alipay_notify_settles_the_whole_bill_once(shop, billed):
    w, bill_id = billed
    started = await _start(shop, w, bill_id)
    assert (started["kind"], started["amount_fen"], started["state"]) == ("bill", TOTAL, "created")
    assert started["qr_code"]

    deliveries = await shop.alipay.pay(started["out_trade_no"])

    assert [(d.status, d.body) for d in deliveries] == [(200, b"success")]
    bill = await _bill(shop.sessions, bill_id)
    assert (bill["status"], bill["paid_fen"], bill["outstanding_fen"]) == ("paid", TOTAL, 0)
    assert await balance(shop.sessions, w.site_id, f"receivable:{w.accounts[0]}") == 0
    assert await balance(shop.sessions, w.site_id, "cash:alipay") == -TOTAL
    assert await balance(shop.sessions, w.site_id, f"wallet:{w.accounts[0]}") == 0  # nothing left over
    order = await shop.order(started["out_trade_no"])
    assert order.state == "credited" and order.txn_id is not None
    [payment] = bill["payments"]
    assert (payment["provider"], payment["amount_fen"], payment["applied_fen"], payment["change_fen"],
            payment["out_trade_no"]) == ("alipay", TOTAL, TOTAL, 0, started["out_trade_no"])
    assert payment["trade_no"] == order.provider_trade_no
    assert [(o["out_trade_no"], o["state"]) for o in bill["orders"]] == [(started["out_trade_no"], "credited")]
    async with shop.sessions() as s:
        receipts = list(await s.scalars(select(Outbox.key).where(Outbox.topic == "notify")))
    assert any(started["out_trade_no"] in k for k in receipts)  # the tenant gets a receipt
    assert await shop.books_balance()


@pytest.mark.parametrize("provider", ["alipay", "wechatpay"])
async def test_a_part_payment_notified_five_times_concurrently_applies_once(shop, billed, provider):
    w, bill_id = billed
    started = await _start(shop, w, bill_id, f"{provider}_qr", Money(5000))
    sandbox = shop.alipay if provider == "alipay" else shop.wechat

    deliveries = await sandbox.pay(started["out_trade_no"], times=5, concurrently=True)

    assert acked(deliveries), deliveries
    bill = await _bill(shop.sessions, bill_id)
    assert (bill["status"], bill["paid_fen"], bill["outstanding_fen"]) == ("partly_paid", 5000, TOTAL - 5000)
    assert await _count(shop.sessions, BillPayment) == 1
    assert await _count(shop.sessions, ProviderPayment) == 1
    assert await _count(shop.sessions, LedgerTransaction,
                        LedgerTransaction.key == f"billpay:order:{started['out_trade_no']}") == 1
    assert await balance(shop.sessions, w.site_id, f"receivable:{w.accounts[0]}") == -(TOTAL - 5000)

    rest = await _start(shop, w, bill_id, f"{provider}_qr")  # the rest, by default all that is outstanding
    assert rest["amount_fen"] == TOTAL - 5000
    assert acked(await sandbox.pay(rest["out_trade_no"]))
    assert (await _bill(shop.sessions, bill_id))["status"] == "paid"
    assert await shop.books_balance()


@pytest.mark.parametrize("provider", ["alipay", "wechatpay"])
async def test_a_forged_notify_for_a_bill_order_settles_nothing(shop, billed, provider):
    w, bill_id = billed
    started = await _start(shop, w, bill_id, f"{provider}_qr")
    sandbox = shop.alipay if provider == "alipay" else shop.wechat

    deliveries = await sandbox.pay(started["out_trade_no"], forge=True)

    assert not acked(deliveries)
    bill = await _bill(shop.sessions, bill_id)
    assert (bill["status"], bill["paid_fen"], bill["payments"]) == ("issued", 0, [])
    assert (await shop.order(started["out_trade_no"])).state == "created"


async def test_a_notify_with_the_wrong_amount_is_a_conflict_and_settles_nothing(shop, billed):
    w, bill_id = billed
    started = await _start(shop, w, bill_id, "alipay_qr")

    deliveries = await shop.alipay.pay(started["out_trade_no"], overrides={"total_amount": "1.00"})

    assert acked(deliveries)  # authentic: acknowledged, parked for staff
    assert (await _bill(shop.sessions, bill_id))["paid_fen"] == 0
    assert [(c.field, c.actual) for c in await shop.conflicts()] == [("amount", "1.00")]
    assert (await shop.order(started["out_trade_no"])).state == "conflict"


async def test_money_for_a_bill_paid_meanwhile_at_the_desk_goes_to_the_wallet_as_change(shop, billed):
    w, bill_id = billed
    started = await _start(shop, w, bill_id, "wechatpay_jsapi", openid="o_tenant_1")
    await in_transaction(shop.sessions, lambda s: postpaid.pay_bill(s, bill_id, Money(TOTAL), "desk-1", "cash"))

    assert acked(await shop.wechat.pay(started["out_trade_no"]))

    bill = await _bill(shop.sessions, bill_id)
    assert (bill["status"], bill["paid_fen"]) == ("paid", TOTAL)
    online = [p for p in bill["payments"] if p["provider"] == "wechatpay"]
    assert [(p["applied_fen"], p["change_fen"]) for p in online] == [(0, TOTAL)]
    assert await balance(shop.sessions, w.site_id, f"wallet:{w.accounts[0]}") == TOTAL
    assert (await shop.order(started["out_trade_no"])).state == "credited"
    assert await shop.books_balance()


async def test_money_for_a_bill_voided_meanwhile_goes_to_the_wallet(shop, billed):
    w, bill_id = billed
    started = await _start(shop, w, bill_id, "alipay_qr")
    await in_transaction(shop.sessions, lambda s: postpaid.void_bill(s, bill_id, "meter misread", "staff"))

    assert acked(await shop.alipay.pay(started["out_trade_no"]))

    bill = await _bill(shop.sessions, bill_id)
    assert (bill["status"], bill["paid_fen"]) == ("void", 0)
    assert await balance(shop.sessions, w.site_id, f"wallet:{w.accounts[0]}") == TOTAL
    assert await balance(shop.sessions, w.site_id, f"receivable:{w.accounts[0]}") == 0
    assert await shop.books_balance()


async def test_one_bill_order_paid_on_both_channels_refunds_the_second(shop, billed):
    w, bill_id = billed
    key = "bill-both"
    starter = ProviderPaymentStarter(shop.sessions, shop.providers, shop.url)
    ali = await starter.start(w.accounts[0], None, "alipay_qr", None, bill_id=bill_id, idempotency_key=key)
    wx = await starter.start(w.accounts[0], None, "wechatpay_qr", None, bill_id=bill_id, idempotency_key=key)
    assert ali["out_trade_no"] == wx["out_trade_no"]

    assert acked(await shop.alipay.pay(ali["out_trade_no"]))
    assert acked(await shop.wechat.pay(wx["out_trade_no"]))

    assert (await _bill(shop.sessions, bill_id))["paid_fen"] == TOTAL
    async with shop.sessions() as s:
        roles = sorted((p.provider, p.role, p.status) for p in await s.scalars(select(ProviderPayment)))
    assert roles == [("alipay", "primary", "credited"), ("wechatpay", "extra", "refund_due")]
    assert await balance(shop.sessions, w.site_id, f"wallet:{w.accounts[0]}") == 0


async def test_bill_orders_are_refused_for_drafts_other_accounts_and_more_than_outstanding(shop, billed, sessions):
    w, bill_id = billed
    starter = ProviderPaymentStarter(shop.sessions, shop.providers, shop.url)
    with pytest.raises(Conflict, match="more than"):
        await _start(shop, w, bill_id, amount=Money(TOTAL + 1))
    with pytest.raises(NotFound):
        await starter.start(w.accounts[1], None, "alipay_qr", None, bill_id=bill_id)  # the neighbour's?
    await in_transaction(sessions, lambda s: postpaid.pay_bill(s, bill_id, Money(TOTAL), "desk-1", "cash"))
    with pytest.raises(Conflict, match="nothing to pay"):
        await _start(shop, w, bill_id)
    assert await _count(sessions, Order, Order.kind == "bill") == 0


async def test_the_query_settles_a_bill_order_whose_notify_never_came(shop, billed):
    w, bill_id = billed
    started = await _start(shop, w, bill_id, "wechatpay_qr")
    shop.wechat.book.mark_paid(shop.wechat.orders[started["out_trade_no"]])  # paid; the notify is lost
    order = await shop.order(started["out_trade_no"])

    report = await query_pending(shop.sessions, shop.providers, order.created_at + timedelta(seconds=61))

    assert (report.queried, report.credited) == (1, 1)
    assert (await _bill(shop.sessions, bill_id))["status"] == "paid"
    again = await query_pending(shop.sessions, shop.providers, order.created_at + timedelta(minutes=6))
    assert again.queried == 0  # settled orders are not queried again


async def test_reconciliation_checks_bill_orders_against_their_ledger_credit(shop, billed):
    w, bill_id = billed
    good = await _start(shop, w, bill_id, "alipay_qr", Money(6000))
    await shop.alipay.pay(good["out_trade_no"])
    lost = await _start(shop, w, bill_id, "alipay_qr", Money(100))
    ali = shop.alipay.orders[lost["out_trade_no"]]
    ali.status, ali.paid_at, ali.seen_by_buyer = "TRADE_SUCCESS", beijing_now(), True

    report = await reconcile_day(shop.sessions, shop.providers, beijing_now().date())

    assert report.checked == 2
    assert [(d.out_trade_no, d.kind) for d in report.differences] == [(lost["out_trade_no"], "not_credited")]


# -- the tenant's way in: the JSON API and the pay page ------------------------------------------


async def open_cashier(url: str) -> None:
    """The phone browser follows the Alipay wap link: the cashier page opens the trade."""
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200, await resp.text()


@pytest.fixture
async def tenant_app(shop, billed, aiohttp_client):
    w, bill_id = billed

    async def send_sms(phone: str, code: str) -> None:
        return None

    async def bind(s):
        s.add(TenantLink(openid="o-bill", account_id=w.accounts[0], via="staff"))
    await in_transaction(shop.sessions, bind)
    app = web.Application()
    app[SETTINGS] = Settings(secret_key=SECRET, public_url="http://pay.test")
    app[SESSIONS] = shop.sessions
    setup_tenant_routes(app, send_sms=send_sms,
                        payment_starter=ProviderPaymentStarter(shop.sessions, shop.providers, shop.url))
    client = await aiohttp_client(app)
    return client, {"Authorization": f"Bearer {tokens.issue(SECRET, 'o-bill', 600)}"}, w, bill_id


async def test_the_api_lists_a_payable_bill_and_pays_part_of_it(shop, tenant_app):
    client, auth, w, bill_id = tenant_app
    listed = await (await client.get("/api/bills", headers=auth)).json()
    [bill] = listed["bills"]
    assert (bill["bill_id"], bill["outstanding_fen"], bill["payable"]) == (bill_id, TOTAL, True)
    assert bill["pay_url"].startswith("http://pay.test/pay/?") and f"bill={bill_id}" in bill["pay_url"]

    too_much = await client.post("/api/payments", headers=auth,
                                 json={"bill_no": bill["bill_no"], "amount": "999.00", "channel": "alipay_wap"})
    assert too_much.status == 400
    resp = await client.post("/api/payments", headers=auth,
                             json={"bill_no": bill["bill_no"], "amount": "23.46", "channel": "alipay_wap"})
    assert resp.status == 201, await resp.text()
    started = await resp.json()
    assert (started["kind"], started["amount_fen"]) == ("bill", 2346)
    await open_cashier(started["pay_url"])
    assert acked(await shop.alipay.pay(started["out_trade_no"]))

    [after] = (await (await client.get("/api/bills", headers=auth)).json())["bills"]
    assert (after["outstanding_fen"], after["payable"]) == (TOTAL - 2346, True)
    orders = (await (await client.get("/api/orders", headers=auth)).json())["orders"]
    assert [o["kind"] for o in orders if o["order_no"] == started["out_trade_no"]] == ["bill"]
    unknown = await client.post("/api/payments", headers=auth, json={"bill_no": "nope", "channel": "alipay_wap"})
    assert unknown.status == 404


async def test_the_pay_page_shows_the_bill_and_pays_what_is_outstanding(shop, tenant_app):
    client, _, w, bill_id = tenant_app
    account, sig = w.accounts[0], pay_signature(SECRET, w.accounts[0])
    page = await client.get(f"/pay/?account={account}&sig={sig}&bill={bill_id}")
    text = await page.text()
    assert page.status == 200 and "123.46" in text and 'name="bill"' in text
    forged = await client.get(f"/pay/?account={w.accounts[1]}&sig={pay_signature(SECRET, w.accounts[1])}"
                              f"&bill={bill_id}")
    assert forged.status == 404  # a link for another account does not open this bill

    resp = await client.post("/pay/", data={"account": str(account), "sig": sig, "bill": str(bill_id),
                                            "amount": "", "channel": "alipay_wap"}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith(shop.alipay.url)
    await open_cashier(resp.headers["Location"])
    async with shop.sessions() as s:
        order = await s.scalar(select(Order).where(Order.kind == "bill"))
    assert order is not None and order.amount_fen == TOTAL
    assert acked(await shop.alipay.pay(order.out_trade_no))

    status = await (await client.get(f"/pay/status?account={account}&sig={sig}&order={order.out_trade_no}")).json()
    assert status["credited"] is True
    result = await client.get(f"/pay/result?account={account}&sig={sig}&bill={bill_id}&order={order.out_trade_no}")
    assert 'id="again">查看账单' in await result.text() and f"bill={bill_id}" in await result.text()
    paid = await (await client.get(f"/pay/?account={account}&sig={sig}&bill={bill_id}")).text()
    assert "该账单无需支付" in paid and 'id="pay-form"' not in paid


async def test_the_admin_bill_page_shows_the_online_payment_and_its_order(shop, billed, db_url, aiohttp_client,
                                                                          monkeypatch):
    from services.staff import add_user
    from tests.admin.conftest import PASSWORD, make_app, make_settings, sign_in

    monkeypatch.setenv("METERPAY_FAST_HASH", "1")
    w, bill_id = billed
    started = await _start(shop, w, bill_id, "wechatpay_qr", Money(4000))
    assert acked(await shop.wechat.pay(started["out_trade_no"]))
    waiting = await _start(shop, w, bill_id, "alipay_qr", Money(1000))  # opened, not paid (yet)
    await in_transaction(shop.sessions, lambda s: add_user(s, "clerk", PASSWORD, "viewer", [w.site_id]))
    client = await aiohttp_client(make_app(make_settings(db_url)))
    await sign_in(client, "clerk")

    page = await (await client.get(f"/admin/bills/{bill_id}")).text()

    payments = page[page.index('id="payments"'):page.index("</table>", page.index('id="payments"'))]
    order = await shop.order(started["out_trade_no"])
    assert "wechatpay" in payments and started["out_trade_no"] in payments and order.provider_trade_no in payments
    assert "40.00" in payments
    orders = page[page.index('id="bill-orders"'):]
    assert started["out_trade_no"] in orders and waiting["out_trade_no"] in orders
    assert "credited" in orders and "created" in orders
