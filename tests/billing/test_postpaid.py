"""Postpaid bills: the state machine, payments with change, regeneration and the arrears list."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.apportion import Part
from billing.fees import Basis, FeeItem, Occupancy, Recurrence, charges_for_period
from billing.money import Money
from billing.periods import month
from billing.postpaid import (
    Bill,
    BillError,
    BillLine,
    BillStatus,
    BillTransitionError,
    LineKind,
    apply_payment,
    arrears_summary,
    confirm,
    generate,
    is_overdue,
    issue,
    line_for_fee,
    line_for_share,
    mark_overdue,
    reopen,
    void,
)

MARCH = month(2026, 3)
DUE = date(2026, 4, 15)
LINES = (
    # 312500 Wh at 0.621 yuan/kWh = 194.0625 yuan -> 19406 fen
    BillLine(LineKind.ENERGY, "Electricity March", 312500, "Wh", Money(19406), "reading:M7:2026-03"),
    BillLine(LineKind.WATER, "Water March", 3200, "L", Money(1664), "reading:W3:2026-03"),
    BillLine(LineKind.FEE, "Rent March", 31, "day", Money(150000), "fee:rent:R1:A1:2026-03"),
    BillLine(LineKind.APPORTIONMENT, "Corridor lights", 1, "share", Money(1234), "apportion:G1:R1"),
)


def issued(lines=LINES, account="A1", due=DUE) -> Bill:
    return issue(confirm(generate(None, account, MARCH, lines, due)), date(2026, 4, 1))


def test_a_bill_is_drafted_confirmed_issued_then_paid_in_two_parts():
    # Total: 19406 + 1664 + 150000 + 1234 = 172304 fen (1723.04 yuan).
    bill = issued()
    assert (bill.status, bill.total, bill.issued_on) == (BillStatus.ISSUED, Money(172304), date(2026, 4, 1))
    # Pays 1000.00: 100000 applied, 72304 left.
    first = apply_payment(bill, Money.yuan("1000"), "alipay:T1")
    assert (first.bill.status, first.applied, first.change, first.bill.outstanding) == (
        BillStatus.PARTLY_PAID, Money(100000), Money(0), Money(72304))
    # Pays 800.00: 72304 applied, 80000 - 72304 = 7696 fen change for the wallet.
    second = apply_payment(first.bill, Money.yuan("800"), "wechat:T2")
    assert (second.bill.status, second.applied, second.change) == (
        BillStatus.PAID, Money(72304), Money(7696))
    assert second.bill.paid == Money(172304)


def test_a_repeated_payment_notify_is_a_no_op():
    once = apply_payment(issued(), Money(5000), "alipay:T1")
    again = apply_payment(once.bill, Money(5000), "alipay:T1")
    assert again.bill is once.bill
    assert (again.applied, again.change) == (Money(0), Money(0))


def test_a_payment_on_a_paid_bill_comes_back_whole_as_change():
    paid = apply_payment(issued(), Money(172304), "alipay:T1").bill
    late = apply_payment(paid, Money(500), "alipay:T2")
    assert (late.applied, late.change, late.bill.status) == (Money(0), Money(500), BillStatus.PAID)


def test_only_issued_bills_take_payments_and_only_positive_ones():
    draft = generate(None, "A1", MARCH, LINES, DUE)
    with pytest.raises(BillTransitionError, match="a draft bill cannot take payments"):
        apply_payment(draft, Money(100), "alipay:T1")
    with pytest.raises(BillError, match="positive"):
        apply_payment(issued(), Money(0), "alipay:T1")


def test_transitions_outside_the_table_are_refused_with_a_clear_error():
    draft = generate(None, "A1", MARCH, LINES, DUE)
    with pytest.raises(BillTransitionError, match="cannot go from draft to issued"):
        issue(draft, date(2026, 4, 1))
    with pytest.raises(BillTransitionError, match="cannot go from issued to draft"):
        reopen(issued())
    paid = apply_payment(issued(), Money(172304), "alipay:T1").bill
    with pytest.raises(BillTransitionError, match="cannot go from paid to confirmed"):
        confirm(paid)


def test_a_confirmed_bill_can_be_reopened_for_correction():
    assert reopen(confirm(generate(None, "A1", MARCH, LINES, DUE))).status is BillStatus.DRAFT


def test_void_needs_a_reason_and_no_money_received():
    assert void(issued(), "tenant moved, billed elsewhere").status is BillStatus.VOID
    with pytest.raises(BillError, match="reason"):
        void(issued(), "")
    partly = apply_payment(issued(), Money(100), "alipay:T1").bill
    with pytest.raises(BillTransitionError, match="refund it before voiding"):
        void(partly, "mistake")
    with pytest.raises(BillTransitionError, match="cannot go from void to confirmed"):
        confirm(void(generate(None, "A1", MARCH, LINES, DUE), "duplicate"))


def test_a_zero_bill_is_paid_on_issue():
    assert issued(lines=()).status is BillStatus.PAID


def test_a_bill_is_overdue_from_the_day_after_its_due_date_until_paid():
    bill = issued()
    assert not is_overdue(bill, DUE)
    assert is_overdue(bill, date(2026, 4, 16))
    late = mark_overdue(bill, date(2026, 4, 16))
    assert late.status is BillStatus.OVERDUE
    assert mark_overdue(late, date(2026, 4, 17)) is late
    partly = apply_payment(late, Money(100000), "alipay:T1").bill
    assert partly.status is BillStatus.OVERDUE
    assert apply_payment(partly, Money(72304), "alipay:T2").bill.status is BillStatus.PAID


def test_drafts_and_paid_bills_are_never_overdue():
    assert not is_overdue(generate(None, "A1", MARCH, LINES, DUE), date(2027, 1, 1))
    paid = apply_payment(issued(), Money(172304), "alipay:T1").bill
    assert mark_overdue(paid, date(2027, 1, 1)) is paid


def test_generating_an_existing_period_is_a_no_op_unless_the_draft_is_regenerated():
    draft = generate(None, "A1", MARCH, LINES, DUE)
    assert generate(draft, "A1", MARCH, LINES[:1], DUE) is draft
    again = generate(draft, "A1", MARCH, LINES[:1], DUE, regenerate=True)
    assert (again.revision, again.total, again.key) == (1, Money(19406), draft.key)
    with pytest.raises(BillTransitionError, match="only a draft can be regenerated"):
        generate(confirm(draft), "A1", MARCH, LINES, DUE, regenerate=True)
    with pytest.raises(BillError, match="cannot be regenerated as"):
        generate(draft, "A2", MARCH, LINES, DUE, regenerate=True)


def test_the_bill_key_and_number_are_stable_per_account_and_period():
    bill = generate(None, "A1", MARCH, LINES, DUE)
    assert bill.key == "bill:A1:2026-03-01/2026-04-01"
    assert bill.number == "20260301-20260331-A1"


def test_a_source_billed_twice_or_a_negative_total_is_refused():
    with pytest.raises(BillError, match="billed twice"):
        generate(None, "A1", MARCH, LINES + LINES[:1], DUE)
    credit = BillLine(LineKind.ADJUSTMENT, "Credit", 1, "", Money(-200000), "adj:1")
    with pytest.raises(BillError, match="negative"):
        generate(None, "A1", MARCH, LINES + (credit,), DUE)


def test_the_arrears_list_shows_open_debt_most_owed_first():
    today = date(2026, 5, 1)
    one = BillLine(LineKind.FEE, "x", 1, "", Money(5000), "k1")
    a1_late = issued(lines=(one,), account="A1", due=date(2026, 4, 15))        # 5000, 16 days late
    a1_new = issue(confirm(generate(None, "A1", month(2026, 4), (
        BillLine(LineKind.FEE, "y", 1, "", Money(3000), "k2"),), date(2026, 5, 15))), today)
    a2 = apply_payment(issued(account="A2"), Money(162304), "alipay:T9").bill  # 10000 left
    a3 = apply_payment(issued(account="A3"), Money(172304), "alipay:T8").bill  # paid
    a4 = generate(None, "A4", MARCH, LINES, DUE)                               # draft
    summary = arrears_summary([a1_late, a1_new, a2, a3, a4], today)
    assert [(r.account_id, r.open_bills, r.outstanding.fen, r.overdue.fen, r.days_overdue)
            for r in summary.rows] == [("A2", 1, 10000, 10000, 16), ("A1", 2, 8000, 5000, 16)]
    assert (summary.outstanding, summary.overdue) == (Money(18000), Money(15000))


def test_fee_charges_and_apportioned_shares_become_bill_lines_keyed_by_their_source():
    rent = FeeItem("rent", "Rent", Basis.FIXED, Recurrence.MONTHLY, date(2026, 1, 1),
                   amount=Money.yuan("1500"))
    (charge,) = charges_for_period(rent, None, Occupancy("A1", "R1", date(2026, 3, 15)), MARCH)
    fee_line = line_for_fee(charge)
    share = line_for_share("G1", MARCH, Part("R1", Decimal(30), Money(3703)), "Lift electricity")
    assert (fee_line.kind, fee_line.amount, fee_line.quantity, fee_line.source_key) == (
        LineKind.FEE, Money(82258), 17, "fee:rent:R1:A1:2026-03-01/2026-04-01")
    assert (share.kind, share.amount, share.source_key) == (
        LineKind.APPORTIONMENT, Money(3703), "apportion:G1:2026-03-01/2026-04-01:R1")


@settings(max_examples=300, deadline=None)
@given(total_fen=st.integers(min_value=1, max_value=10**7),
       payments=st.lists(st.integers(min_value=1, max_value=10**7), max_size=12))
def test_payments_never_over_pay_and_every_fen_is_applied_or_returned(total_fen, payments):
    line = BillLine(LineKind.FEE, "x", 1, "", Money(total_fen), "k")
    bill = issued(lines=(line,))
    applied = change = 0
    for n, fen in enumerate(payments):
        outcome = apply_payment(bill, Money(fen), f"p{n}")
        bill = outcome.bill
        applied += outcome.applied.fen
        change += outcome.change.fen
        assert outcome.applied.fen >= 0 and outcome.change.fen >= 0
    assert applied + change == sum(payments)
    assert bill.paid.fen == applied <= total_fen
    assert (bill.status is BillStatus.PAID) == (bill.outstanding == Money(0))
