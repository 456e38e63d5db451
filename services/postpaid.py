"""Postpaid and dunning bills: generated for a period, confirmed by staff, issued, paid.

Lines of an account's bill for a period (billing.postpaid rules; one bill per account and period):
- postpaid accounts: per meter, the readings ingest priced but did not debit (verdict billed or
  rollover, **taken** in the period's local days), as one energy / water line keyed
  ``usage:<meter>:<period>``;
- fee charges collected by bill, and all fees of postpaid accounts (services.fees), keyed as the charge;
- apportioned shares collected by bill, or falling on a postpaid account, keyed as the share.
Every open postpaid account gets a bill, even a zero one; other accounts only when they have lines.
Re-running a period leaves bills unchanged, except a draft whose lines changed: it is regenerated.

Ledger rule (signs as billing.ledger: a negative receivable is what the tenant owes):
- issue: ``receivable:<account>`` is debited by the total and each line's revenue account
  (``revenue:electricity|water``, ``revenue:fee:<item>``, ``revenue:common:<utility>``) credited,
  key ``<bill key>:issue``; a zero bill posts nothing and is paid at once;
- payment: ``cash:<provider> -> receivable:<account>`` for the part applied, and any change
  ``cash:<provider> -> wallet:<account>``, one transaction keyed ``billpay:<payment key>``;
  money that finds nothing to settle (the bill was paid by another channel meanwhile, or voided)
  is all change: it goes to the tenant's wallet, it is never lost nor refunded automatically;
- voiding an issued, unpaid bill posts the exact reversal, key ``<bill key>:void``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billing import postpaid as pure
from billing.ledger import Posting as PurePosting, Transaction, cash_code, revenue_code, reversal, wallet_code
from billing.money import Money
from billing.periods import Period
from services import ledger
from services.apportionment import BILLING_VERDICTS, revenue_for_common, shares_for_bills
from services.errors import Conflict, NotFound, ServiceError
from services.fees import ChargeFor, period_charges, revenue_for_fee
from services.bulk import among, core_rows, is_pg, parts, write_rows
from services.occupancy import Tenancy, instants, site_zone
from services.wallets import PROVIDERS, require_money
from store.models import Account, AuditEntry, Bill, BillLine, BillPayment, Meter, Reading, Site
from store.types import utcnow

DEFAULT_DUE_DAYS = 15
UNITS = {"electricity": ("Wh", pure.LineKind.ENERGY), "water": ("L", pure.LineKind.WATER)}

Line = tuple[pure.BillLine, str]  # a pure line and the revenue account it is earned in


async def _usage_lines(session: AsyncSession, site_id: int, period: Period, tz) -> dict[int, list[Line]]:
    start, end = instants(period, tz)
    rows = await core_rows(session,
        select(Reading.account_id, Reading.meter_id, Meter.utility, Meter.address,
               func.sum(Reading.quantity), func.sum(Reading.amount_fen))
        .join(Meter, Meter.id == Reading.meter_id).join(Account, Account.id == Reading.account_id)
        .where(Account.site_id == site_id, Account.payment_mode == "postpaid",
               Reading.verdict.in_(BILLING_VERDICTS), Reading.taken_at >= start, Reading.taken_at < end)
        .group_by(Reading.account_id, Reading.meter_id, Meter.utility, Meter.address))
    out: dict[int, list[Line]] = defaultdict(list)
    for acc, meter, utility, address, qty, fen in rows:
        unit, kind = UNITS.get(utility, ("unit", pure.LineKind.ENERGY))
        line = pure.BillLine(kind, f"{utility} meter {address} {period.label}", int(qty or 0), unit,
                             Money(int(fen or 0)), f"usage:{meter}:{period.label}")
        out[acc].append((line, revenue_code(utility)))
    return out


async def period_lines(session: AsyncSession, site_id: int, period: Period, found: list[Tenancy] | None = None,
                       charges: list[ChargeFor] | None = None) -> dict[int, list[Line]]:
    """Everything to bill at a site for `period`, by account."""
    tz = await site_zone(session, site_id)
    out = await _usage_lines(session, site_id, period, tz)
    if charges is None:
        charges = await period_charges(session, site_id, period, found)
    for c in charges:
        if c.billed:
            out[c.tenancy.account_id].append((pure.line_for_fee(c.charge), revenue_for_fee(c.charge.item_code)))
    for s in await shares_for_bills(session, site_id, period):
        line = pure.BillLine(pure.LineKind.APPORTIONMENT, f"{s['group']} {period.label} share ({s['weight']})",
                             1, "share", Money(s["amount_fen"]), s["source_key"])
        out[s["account_id"]].append((line, revenue_for_common(s["utility"])))
    return out


def _line_rows(bill_id: int, lines: list[Line]) -> list[dict[str, Any]]:
    return [dict(bill_id=bill_id, kind=ln.kind.value, description=ln.description[:200], quantity=ln.quantity,
                 unit=ln.unit, amount_fen=ln.amount.fen, source_key=ln.source_key, revenue=rev)
            for ln, rev in lines]


@dataclass(frozen=True, slots=True)
class BillRun:
    created: int
    regenerated: int
    unchanged: int


async def generate_bills(session: AsyncSession, site_id: int, period: Period, actor: str = "system",
                         found: list[Tenancy] | None = None, charges: list[ChargeFor] | None = None) -> BillRun:
    """Create the period's bills (drafts); re-running is a no-op unless a draft's lines changed."""
    site = await session.get(Site, site_id)
    if site is None:
        raise NotFound(f"site {site_id} not found")
    due_on = period.last_day + timedelta(days=int((site.settings or {}).get("bill_due_days", DEFAULT_DUE_DAYS)))
    lines = await period_lines(session, site_id, period, found, charges)
    postpaid = await core_rows(session, select(Account.id).where(
        Account.site_id == site_id, Account.payment_mode == "postpaid", Account.state == "open"))
    for (acc,) in postpaid:
        lines.setdefault(acc, [])
    existing = {r.account_id: r for r in await core_rows(session, select(Bill.id, Bill.account_id, Bill.status).where(
        Bill.site_id == site_id, Bill.period_start == period.start, Bill.period_end == period.end))}
    new_rows, regenerated, now = [], 0, utcnow()
    stored = await _stored_lines(session, [b.id for b in existing.values() if b.status == "draft"])
    for acc, acc_lines in sorted(lines.items()):
        known = existing.get(acc)
        if known is not None and (known.status != "draft" or stored.get(known.id, set()) == _signature(acc_lines)):
            continue
        bill = pure.generate(None, str(acc), period, [ln for ln, _ in acc_lines], due_on)
        row = await session.get(Bill, known.id) if known is not None else None  # a draft to regenerate
        if row is None:
            new_rows.append(dict(site_id=site_id, account_id=acc, key=bill.key, number=bill.number,
                                 period_start=period.start, period_end=period.end, due_on=due_on, status="draft",
                                 total_fen=bill.total.fen, paid_fen=0, revision=0, issued_on=None,
                                 void_reason="", issue_txn_id=None, created_at=now, updated_by=actor))
        else:
            await session.execute(delete(BillLine).where(BillLine.bill_id == row.id))
            if acc_lines:
                await session.execute(insert(BillLine), _line_rows(row.id, acc_lines))
            row.total_fen, row.revision, row.updated_by = bill.total.fen, row.revision + 1, actor
            regenerated += 1
    bill_ids = await write_rows(session, Bill, new_rows, with_ids=True)
    await write_rows(session, BillLine, [r for row, bill_id in zip(new_rows, bill_ids)
                                         for r in _line_rows(bill_id, lines[row["account_id"]])])
    return BillRun(len(new_rows), regenerated, len(existing) - regenerated)


def _signature(lines: list[Line]) -> set[tuple[str, int]]:
    return {(ln.source_key, ln.amount.fen) for ln, _ in lines}


async def _stored_lines(session: AsyncSession, bill_ids: list[int]) -> dict[int, set[tuple[str, int]]]:
    out: dict[int, set[tuple[str, int]]] = defaultdict(set)
    pg = await is_pg(session)
    for part in parts(bill_ids, pg):
        for bill_id, key, fen in await session.execute(select(BillLine.bill_id, BillLine.source_key, BillLine.amount_fen)
                                                       .where(among(BillLine.bill_id, part, pg))):
            out[bill_id].add((key, fen))
    return out


# -- one bill's life -----------------------------------------------------------------------


async def _load(session: AsyncSession, bill_id: int) -> tuple[Bill, list[BillLine], pure.Bill]:
    row = await session.scalar(select(Bill).where(Bill.id == bill_id).with_for_update())
    if row is None:
        raise NotFound(f"bill {bill_id} not found")
    lines = list(await session.scalars(select(BillLine).where(BillLine.bill_id == row.id).order_by(BillLine.id)))
    keys = tuple(await session.scalars(select(BillPayment.key).where(BillPayment.bill_id == row.id)))
    bill = pure.Bill(str(row.account_id), Period(row.period_start, row.period_end), row.due_on,
                     tuple(pure.BillLine(pure.LineKind(ln.kind), ln.description, ln.quantity, ln.unit,
                                         Money(ln.amount_fen), ln.source_key) for ln in lines),
                     pure.BillStatus(row.status), Money(row.paid_fen), keys, row.revision, row.issued_on,
                     row.void_reason)
    return row, lines, bill


def _store(row: Bill, bill: pure.Bill, actor: str | None) -> None:
    row.status, row.paid_fen, row.revision = bill.status.value, bill.paid.fen, bill.revision
    row.issued_on, row.void_reason, row.total_fen, row.updated_by = bill.issued_on, bill.void_reason, bill.total.fen, actor


def _audit(session: AsyncSession, row: Bill, action: str, before: str, actor: str, **extra: Any) -> None:
    session.add(AuditEntry(actor=actor, site_id=row.site_id, action=f"bill.{action}", object_type="bill",
                           object_id=str(row.id), before={"status": before},
                           after={"status": row.status, "paid_fen": row.paid_fen, **extra}))


def _issue_txn(row: Bill, lines: list[BillLine]) -> Transaction:
    by_revenue: dict[str, int] = defaultdict(int)
    for ln in lines:
        by_revenue[ln.revenue] += ln.amount_fen
    postings = [PurePosting(f"receivable:{row.account_id}", Money(-row.total_fen))]
    postings += [PurePosting(code, Money(fen)) for code, fen in sorted(by_revenue.items()) if fen]
    return Transaction(f"{row.key}:issue", "bill", tuple(postings), memo=f"bill {row.number}")


async def _transition(session: AsyncSession, bill_id: int, action: str, actor: str, **kw: Any) -> Bill:
    row, lines, bill = await _load(session, bill_id)
    before = row.status
    try:
        if action == "confirm":
            after = pure.confirm(bill)
        elif action == "reopen":
            after = pure.reopen(bill)
        elif action == "issue":
            after = pure.issue(bill, kw["today"])
        else:
            after = pure.void(bill, kw["reason"])
    except pure.BillError as ex:
        raise Conflict(str(ex)) from ex
    _store(row, after, actor)
    if action == "issue" and row.total_fen:
        row.issue_txn_id, _ = await ledger.post_id(session, row.site_id, _issue_txn(row, lines), actor=actor,
                                                   account_id=row.account_id)
    if action == "void" and row.issue_txn_id is not None:
        undo = reversal(_issue_txn(row, lines), f"{row.key}:void", memo=kw["reason"])
        await ledger.post_id(session, row.site_id, undo, actor=actor, account_id=row.account_id)
    _audit(session, row, action, before, actor)
    return row


async def confirm_bill(session: AsyncSession, bill_id: int, actor: str) -> Bill:
    """Staff have reviewed the draft."""
    return await _transition(session, bill_id, "confirm", actor)


async def reopen_bill(session: AsyncSession, bill_id: int, actor: str) -> Bill:
    """Send a confirmed bill back to draft (the next month-end run regenerates it if needed)."""
    return await _transition(session, bill_id, "reopen", actor)


async def issue_bill(session: AsyncSession, bill_id: int, today: date, actor: str) -> Bill:
    """Send the bill to the tenant and book the receivable against revenue."""
    return await _transition(session, bill_id, "issue", actor, today=today)


async def void_bill(session: AsyncSession, bill_id: int, reason: str, actor: str) -> Bill:
    """Cancel a bill nothing was paid on; an issued one has its booking reversed."""
    return await _transition(session, bill_id, "void", actor, reason=reason)


@dataclass(frozen=True, slots=True)
class BillPaid:
    bill_id: int
    status: str
    applied: Money
    change: Money
    duplicate: bool


async def pay_bill(session: AsyncSession, bill_id: int, amount: Money, key: str, provider: str,
                   actor: str | None = None, raw: dict[str, Any] | None = None) -> BillPaid:
    """Apply a received payment (once per `key`): the receivable is settled, any change credits the wallet."""
    amount = require_money(amount)
    if provider not in PROVIDERS or not key:
        raise ServiceError(f"unknown provider {provider!r} or empty payment key")
    seen = await session.scalar(select(BillPayment).where(BillPayment.key == key))
    if seen is not None:
        if (seen.bill_id, seen.amount_fen) != (bill_id, amount.fen):
            raise Conflict(f"payment key {key!r} was already used for another payment")
        status = await session.scalar(select(Bill.status).where(Bill.id == bill_id))
        return BillPaid(bill_id, str(status), Money(seen.applied_fen), Money(seen.change_fen), True)
    row, _, bill = await _load(session, bill_id)
    before = row.status
    try:
        outcome = pure.apply_payment(bill, amount, key)
    except pure.BillTransitionError:
        if bill.status is not pure.BillStatus.VOID:
            raise Conflict(f"bill {row.number} is {row.status}: it cannot take payments yet") from None
        outcome = pure.PaymentOutcome(bill, Money(0), amount)  # voided while the tenant paid: all change
    except pure.BillError as ex:
        raise Conflict(str(ex)) from ex
    postings = [PurePosting(cash_code(provider), -amount)]
    if outcome.applied:
        postings.append(PurePosting(f"receivable:{row.account_id}", outcome.applied))
    if outcome.change:
        postings.append(PurePosting(wallet_code(row.account_id), outcome.change))
    txn_id, _ = await ledger.post_id(session, row.site_id, Transaction(
        f"billpay:{key}", "bill_payment", tuple(postings), memo=f"{provider} payment of bill {row.number}"),
        actor=actor, account_id=row.account_id)
    _store(row, outcome.bill, actor)
    session.add(BillPayment(bill_id=row.id, key=key, provider=provider, amount_fen=amount.fen,
                            applied_fen=outcome.applied.fen, change_fen=outcome.change.fen, txn_id=txn_id, raw=raw))
    _audit(session, row, "pay", before, actor or provider, key=key, amount_fen=amount.fen)
    await session.flush()
    return BillPaid(row.id, row.status, outcome.applied, outcome.change, False)


async def mark_overdue(session: AsyncSession, site_id: int, today: date) -> int:
    """Issued or partly paid bills past their due date become overdue; returns how many did."""
    result = await session.execute(update(Bill).where(
        Bill.site_id == site_id, Bill.status.in_(("issued", "partly_paid")), Bill.due_on < today,
        Bill.paid_fen < Bill.total_fen).values(status="overdue").execution_options(synchronize_session=False))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
