"""Postpaid bills: lines for a date range, a small state machine, payments and the arrears list.

Rules:
- A bill belongs to one account and one period; its key ``bill:<account>:<period label>`` (and
  printable number) is stable, so a period has exactly one bill. `generate` with an existing
  bill returns it unchanged; only an explicit ``regenerate=True`` on a **draft** replaces its lines
  (and bumps ``revision``).
- Every line carries the key of what it bills (a reading span, a fee charge, an apportionment
  part); a key may appear once per bill, so nothing is billed twice on one bill.
- States: draft -> confirmed -> issued -> partly_paid / paid / overdue; confirmed may go back to
  draft for correction; void is reachable until money has been received (refund first). A
  transition not in the table is refused with `BillTransitionError`.
- Payments apply only to issued, partly paid or overdue bills; the bill is never over-paid: what
  exceeds the outstanding amount comes back as ``change`` (to credit the wallet). A payment key
  seen before is a no-op (a repeated provider notify). A bill whose total is zero is paid on issue.
- Overdue: issued or partly paid, not fully paid, and ``today`` is after ``due_on``. An overdue bill
  stays overdue through partial payments until it is paid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from enum import Enum

from billing.apportion import Part
from billing.fees import FeeCharge
from billing.money import Money, total
from billing.periods import Period


class BillError(ValueError):
    """Raised for a bill that cannot exist or an operation that makes no sense for it."""


class BillTransitionError(BillError):
    """Raised for a state change the bill's state machine does not allow."""


class LineKind(Enum):
    """What a bill line is for."""

    ENERGY = "energy"
    WATER = "water"
    FEE = "fee"
    APPORTIONMENT = "apportionment"
    ADJUSTMENT = "adjustment"


class BillStatus(Enum):
    """Where a bill is in its life."""

    DRAFT = "draft"
    CONFIRMED = "confirmed"
    ISSUED = "issued"
    PARTLY_PAID = "partly_paid"
    PAID = "paid"
    OVERDUE = "overdue"
    VOID = "void"


_ALLOWED: dict[BillStatus, frozenset[BillStatus]] = {
    BillStatus.DRAFT: frozenset({BillStatus.CONFIRMED, BillStatus.VOID}),
    BillStatus.CONFIRMED: frozenset({BillStatus.DRAFT, BillStatus.ISSUED, BillStatus.VOID}),
    BillStatus.ISSUED: frozenset(
        {BillStatus.PARTLY_PAID, BillStatus.PAID, BillStatus.OVERDUE, BillStatus.VOID}
    ),
    BillStatus.PARTLY_PAID: frozenset({BillStatus.PAID, BillStatus.OVERDUE}),
    BillStatus.OVERDUE: frozenset({BillStatus.PAID, BillStatus.VOID}),
    BillStatus.PAID: frozenset(),
    BillStatus.VOID: frozenset(),
}

_OPEN = frozenset({BillStatus.ISSUED, BillStatus.PARTLY_PAID, BillStatus.OVERDUE})
_PAYABLE = _OPEN | {BillStatus.PAID}


@dataclass(frozen=True, slots=True)
class BillLine:
    """One billed thing; ``source_key`` names what it bills (unique within a bill)."""

    kind: LineKind
    description: str
    quantity: int
    unit: str
    amount: Money
    source_key: str


@dataclass(frozen=True, slots=True)
class Bill:
    """An account's postpaid bill for one period."""

    account_id: str
    period: Period
    due_on: date
    lines: tuple[BillLine, ...]
    status: BillStatus = BillStatus.DRAFT
    paid: Money = Money(0)
    payment_keys: tuple[str, ...] = ()
    revision: int = 0
    issued_on: date | None = None
    void_reason: str = ""

    def __post_init__(self) -> None:
        sources = [line.source_key for line in self.lines]
        if len(set(sources)) != len(sources):
            raise BillError(f"{self.key}: a source is billed twice: {sorted(sources)}")
        if self.total.is_negative:
            raise BillError(f"{self.key}: total must not be negative, got {self.total}")
        if self.paid.is_negative or self.paid > self.total:
            raise BillError(f"{self.key}: paid {self.paid} outside 0..{self.total}")

    @property
    def key(self) -> str:
        return f"bill:{self.account_id}:{self.period.label}"

    @property
    def number(self) -> str:
        return f"{self.period.start:%Y%m%d}-{self.period.last_day:%Y%m%d}-{self.account_id}"

    @property
    def total(self) -> Money:
        return total([line.amount for line in self.lines])

    @property
    def outstanding(self) -> Money:
        return self.total - self.paid


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    """What a payment did: the bill after it, the part applied, and the change to credit."""

    bill: Bill
    applied: Money
    change: Money


def line_for_fee(charge: FeeCharge) -> BillLine:
    """A fee charge collected by bill, as a bill line."""
    return BillLine(LineKind.FEE, charge.description, charge.days_charged, "day", charge.amount,
                    charge.key)


def line_for_share(group_id: str, period: Period, part: Part, description: str) -> BillLine:
    """A member's apportioned share of a master meter's cost, as a bill line."""
    key = f"apportion:{group_id}:{period.label}:{part.member_id}"
    return BillLine(LineKind.APPORTIONMENT, description, 1, "share", part.amount, key)


def _move(bill: Bill, to: BillStatus, **changes: object) -> Bill:
    if to is not bill.status and to not in _ALLOWED[bill.status]:
        raise BillTransitionError(
            f"{bill.key}: cannot go from {bill.status.value} to {to.value}"
        )
    return dataclasses.replace(bill, status=to, **changes)  # type: ignore[arg-type]


def generate(
    existing: Bill | None,
    account_id: str,
    period: Period,
    lines: Iterable[BillLine],
    due_on: date,
    *,
    regenerate: bool = False,
) -> Bill:
    """The period's bill: new as a draft, the existing one unchanged, or a regenerated draft."""
    fresh = Bill(account_id, period, due_on, tuple(lines))
    if existing is None:
        return fresh
    if existing.key != fresh.key:
        raise BillError(f"{existing.key} cannot be regenerated as {fresh.key}")
    if not regenerate:
        return existing
    if existing.status is not BillStatus.DRAFT:
        raise BillTransitionError(
            f"{existing.key}: only a draft can be regenerated, it is {existing.status.value}"
        )
    return dataclasses.replace(fresh, revision=existing.revision + 1)


def confirm(bill: Bill) -> Bill:
    """Staff have reviewed the draft."""
    return _move(bill, BillStatus.CONFIRMED)


def reopen(bill: Bill) -> Bill:
    """Send a confirmed bill back to draft for correction."""
    return _move(bill, BillStatus.DRAFT)


def issue(bill: Bill, today: date) -> Bill:
    """Send the bill to the tenant; a zero bill is paid at once."""
    issued = _move(bill, BillStatus.ISSUED, issued_on=today)
    return issued if issued.outstanding else _move(issued, BillStatus.PAID)


def void(bill: Bill, reason: str) -> Bill:
    """Cancel a bill on which nothing has been paid."""
    if bill.paid:
        raise BillTransitionError(f"{bill.key}: {bill.paid} received, refund it before voiding")
    if not reason:
        raise BillError(f"{bill.key}: voiding needs a reason")
    return _move(bill, BillStatus.VOID, void_reason=reason)


def apply_payment(bill: Bill, amount: Money, payment_key: str) -> PaymentOutcome:
    """Apply a payment up to the outstanding amount; the rest is change."""
    if bill.status not in _PAYABLE:
        raise BillTransitionError(f"{bill.key}: a {bill.status.value} bill cannot take payments")
    if not amount.is_positive:
        raise BillError(f"{bill.key}: a payment must be positive, got {amount}")
    if payment_key in bill.payment_keys:
        return PaymentOutcome(bill, Money(0), Money(0))
    applied = min(amount, bill.outstanding)
    paid = bill.paid + applied
    keys = bill.payment_keys + (payment_key,)
    after = bill.status
    if paid == bill.total:
        after = BillStatus.PAID
    elif bill.status is BillStatus.ISSUED:
        after = BillStatus.PARTLY_PAID
    after_bill = _move(bill, after, paid=paid, payment_keys=keys)
    return PaymentOutcome(after_bill, applied, amount - applied)


def is_overdue(bill: Bill, today: date) -> bool:
    """Issued, not fully paid, and past its due date."""
    return bill.status in _OPEN and bill.outstanding.is_positive and today > bill.due_on


def mark_overdue(bill: Bill, today: date) -> Bill:
    """Move the bill to overdue if it now is; otherwise return it unchanged."""
    if bill.status is BillStatus.OVERDUE or not is_overdue(bill, today):
        return bill
    return _move(bill, BillStatus.OVERDUE)


# -- arrears -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArrearsRow:
    """One account's unpaid bills."""

    account_id: str
    open_bills: int
    outstanding: Money
    overdue: Money
    oldest_due_on: date
    days_overdue: int


@dataclass(frozen=True, slots=True)
class ArrearsSummary:
    """Who owes what on issued bills, largest debt first."""

    today: date
    rows: tuple[ArrearsRow, ...]
    outstanding: Money
    overdue: Money


def _row(account_id: str, bills: list[Bill], today: date) -> ArrearsRow:
    oldest = min(b.due_on for b in bills)
    overdue = total([b.outstanding for b in bills if is_overdue(b, today)])
    return ArrearsRow(account_id, len(bills), total([b.outstanding for b in bills]), overdue,
                      oldest, max(0, (today - oldest).days))


def arrears_summary(bills: Iterable[Bill], today: date) -> ArrearsSummary:
    """The arrears list: accounts with unpaid issued bills, most owed first, then by account id."""
    by_account: dict[str, list[Bill]] = {}
    for bill in bills:
        if bill.status in _OPEN and bill.outstanding.is_positive:
            by_account.setdefault(bill.account_id, []).append(bill)
    rows = sorted((_row(a, bs, today) for a, bs in by_account.items()),
                  key=lambda r: (-r.outstanding.fen, r.account_id))
    return ArrearsSummary(today, tuple(rows), total([r.outstanding for r in rows]),
                          total([r.overdue for r in rows]))
