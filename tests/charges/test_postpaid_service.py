"""Postpaid bills: generated from readings, confirmed, issued into the ledger, paid, chased."""

from __future__ import annotations

import io
from datetime import date

import pytest
from openpyxl import load_workbook

from billing.money import Money
from services import bill_queries, exports, postpaid
from services.errors import Conflict
from services.uow import in_transaction
from tests.charges.support import MARCH, balance, books_ok, build_world, meter_month

TODAY = date(2026, 4, 2)


async def _world_with_usage(sessions):
    # Tenant 0 is postpaid and used 123.456 kWh in March at 1.00 = 12345.6 -> 12346 fen.
    w = await build_world(sessions, areas=("30.00", "30.00"), modes=("postpaid", "prepaid"))
    await meter_month(sessions, w.meters[0], 10_000, 123_456)
    return w


async def _generate(sessions, w):
    return await in_transaction(sessions, lambda s: postpaid.generate_bills(s, w.site_id, MARCH))


async def _bills(sessions, w):
    async with sessions() as s:
        return await bill_queries.list_bills(s, w.site_id)


async def _issued(sessions, w) -> int:
    await _generate(sessions, w)
    [bill] = await _bills(sessions, w)
    await in_transaction(sessions, lambda s: postpaid.confirm_bill(s, bill["id"], "staff"))
    await in_transaction(sessions, lambda s: postpaid.issue_bill(s, bill["id"], TODAY, "staff"))
    return bill["id"]


async def _pay(sessions, bill_id, fen, key, provider="alipay"):
    return await in_transaction(sessions, lambda s: postpaid.pay_bill(s, bill_id, Money(fen), key, provider))


async def test_a_postpaid_account_gets_one_draft_bill_of_its_months_readings(sessions):
    w = await _world_with_usage(sessions)
    run = await _generate(sessions, w)
    again = await _generate(sessions, w)
    assert (run.created, again.created, again.unchanged) == (1, 0, 1)
    [bill] = await _bills(sessions, w)
    assert (bill["account_id"], bill["status"], bill["total_fen"]) == (w.accounts[0], "draft", 12346)
    assert bill["due_on"] == "2026-04-15"
    async with sessions() as s:
        detail = await bill_queries.get_bill(s, bill["id"])
    [line] = detail["lines"]
    assert (line["kind"], line["quantity"], line["unit"], line["amount_fen"], line["revenue"]) == \
        ("energy", 123_456, "Wh", 12346, "revenue:electricity")
    assert await balance(sessions, w.site_id, f"wallet:{w.accounts[0]}") == 0  # ingest debited nothing


async def test_issuing_books_the_receivable_against_revenue(sessions):
    w = await _world_with_usage(sessions)
    await _issued(sessions, w)
    assert await balance(sessions, w.site_id, f"receivable:{w.accounts[0]}") == -12346
    assert await balance(sessions, w.site_id, "revenue:electricity") == 12346
    await books_ok(sessions)


async def test_a_bill_must_be_confirmed_before_it_is_issued(sessions):
    w = await _world_with_usage(sessions)
    await _generate(sessions, w)
    [bill] = await _bills(sessions, w)
    with pytest.raises(Conflict, match="cannot go from draft to issued"):
        await in_transaction(sessions, lambda s: postpaid.issue_bill(s, bill["id"], TODAY, "staff"))


async def test_payments_settle_the_bill_and_a_repeated_notify_changes_nothing(sessions):
    w = await _world_with_usage(sessions)
    bill_id = await _issued(sessions, w)
    part = await _pay(sessions, bill_id, 5000, "alipay:T1")
    again = await _pay(sessions, bill_id, 5000, "alipay:T1")
    assert (part.status, part.applied, again.duplicate) == ("partly_paid", Money(5000), True)
    rest = await _pay(sessions, bill_id, 8000, "wechatpay:T2", provider="wechatpay")
    assert (rest.status, rest.applied, rest.change) == ("paid", Money(7346), Money(654))
    assert await balance(sessions, w.site_id, f"receivable:{w.accounts[0]}") == 0
    assert await balance(sessions, w.site_id, f"wallet:{w.accounts[0]}") == 654  # change credits the wallet
    assert await balance(sessions, w.site_id, "cash:alipay") == -5000
    assert await balance(sessions, w.site_id, "cash:wechatpay") == -8000
    await books_ok(sessions)


async def test_a_payment_key_cannot_be_reused_for_another_amount(sessions):
    w = await _world_with_usage(sessions)
    bill_id = await _issued(sessions, w)
    await _pay(sessions, bill_id, 5000, "alipay:T1")
    with pytest.raises(Conflict):
        await _pay(sessions, bill_id, 6000, "alipay:T1")


async def test_unpaid_bills_past_due_become_overdue_and_head_the_arrears_list(sessions):
    w = await _world_with_usage(sessions)
    bill_id = await _issued(sessions, w)
    await _pay(sessions, bill_id, 2346, "cash:1", provider="cash")
    assert await in_transaction(sessions, lambda s: postpaid.mark_overdue(s, w.site_id, date(2026, 4, 15))) == 0
    assert await in_transaction(sessions, lambda s: postpaid.mark_overdue(s, w.site_id, date(2026, 4, 16))) == 1
    async with sessions() as s:
        owed = await bill_queries.arrears(s, w.site_id, date(2026, 4, 20))
    [row] = owed["rows"]
    assert (row["account_id"], row["outstanding_fen"], row["overdue_fen"], row["days_overdue"]) == \
        (w.accounts[0], 10000, 10000, 5)
    assert owed["outstanding"] == "100.00"


async def test_voiding_an_issued_unpaid_bill_reverses_its_booking(sessions):
    w = await _world_with_usage(sessions)
    bill_id = await _issued(sessions, w)
    row = await in_transaction(sessions, lambda s: postpaid.void_bill(s, bill_id, "meter misread", "staff"))
    assert row.status == "void"
    assert await balance(sessions, w.site_id, f"receivable:{w.accounts[0]}") == 0
    assert await balance(sessions, w.site_id, "revenue:electricity") == 0
    await books_ok(sessions)


async def test_bills_and_arrears_export_to_excel(sessions):
    w = await _world_with_usage(sessions)
    await _issued(sessions, w)
    async with sessions() as s:
        bills = await exports.bills_xlsx(s, w.site_id)
        owed = await exports.arrears_xlsx(s, w.site_id, TODAY)
    rows = list(load_workbook(io.BytesIO(bills)).active.iter_rows(values_only=True))
    assert rows[1][1:3] == ("S1-A0", "T0") and rows[1][7:] == ("issued", "123.46", "0.00", "123.46")
    arrears_rows = list(load_workbook(io.BytesIO(owed)).active.iter_rows(values_only=True))
    assert [r[4] for r in arrears_rows[1:]] == ["123.46", "123.46"]  # the tenant, then the total
