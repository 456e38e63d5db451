"""Read-only, JSON-friendly views of bills and arrears for the admin panel, the bot and exports."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billing import postpaid as pure
from billing.money import Money
from billing.periods import Period
from services.errors import NotFound
from store.models import Account, Bill, BillLine, BillPayment, Order, Tenant

OPEN_STATUSES = ("issued", "partly_paid", "overdue")


def _yuan(fen: int) -> str:
    return Money(int(fen)).to_yuan_str()


def bill_json(b: Bill, account_code: str = "", tenant: str = "", phone: str = "") -> dict[str, Any]:
    return dict(id=b.id, key=b.key, number=b.number, account_id=b.account_id, account_code=account_code,
                tenant=tenant, phone=phone, period_start=b.period_start.isoformat(),
                period_end=b.period_end.isoformat(), due_on=b.due_on.isoformat(), status=b.status,
                total_fen=b.total_fen, paid_fen=b.paid_fen, outstanding_fen=b.total_fen - b.paid_fen,
                total=_yuan(b.total_fen), paid=_yuan(b.paid_fen), outstanding=_yuan(b.total_fen - b.paid_fen),
                revision=b.revision, issued_on=b.issued_on.isoformat() if b.issued_on else None)


def _with_people():  # type: ignore[no-untyped-def]
    return (select(Bill, Account.code, Tenant.name, Tenant.phone)
            .join(Account, Account.id == Bill.account_id).join(Tenant, Tenant.id == Account.tenant_id))


async def list_bills(session: AsyncSession, site_id: int, status: str | None = None,
                     period_start: date | None = None, account_id: int | None = None,
                     limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """Bills of a site, newest period first, filtered by status / period / account."""
    stmt = _with_people().where(Bill.site_id == site_id)
    if status:
        stmt = stmt.where(Bill.status == status)
    if period_start:
        stmt = stmt.where(Bill.period_start == period_start)
    if account_id:
        stmt = stmt.where(Bill.account_id == account_id)
    stmt = stmt.order_by(Bill.period_start.desc(), Bill.id).limit(limit).offset(offset)
    return [bill_json(b, c, n, p) for b, c, n, p in await session.execute(stmt)]


async def get_bill(session: AsyncSession, bill_id: int) -> dict[str, Any]:
    """One bill with its lines and payments."""
    row = (await session.execute(_with_people().where(Bill.id == bill_id))).first()
    if row is None:
        raise NotFound(f"bill {bill_id} not found")
    out = bill_json(*row)
    lines = await session.scalars(select(BillLine).where(BillLine.bill_id == bill_id).order_by(BillLine.id))
    out["lines"] = [dict(kind=ln.kind, description=ln.description, quantity=ln.quantity, unit=ln.unit,
                         amount_fen=ln.amount_fen, amount=_yuan(ln.amount_fen), source_key=ln.source_key,
                         revenue=ln.revenue) for ln in lines]
    pays = await session.scalars(select(BillPayment).where(BillPayment.bill_id == bill_id).order_by(BillPayment.id))
    out["payments"] = [dict(key=p.key, provider=p.provider, amount_fen=p.amount_fen, applied_fen=p.applied_fen,
                            change_fen=p.change_fen, paid_at=p.paid_at.isoformat(),
                            out_trade_no=(p.raw or {}).get("out_trade_no"), trade_no=(p.raw or {}).get("trade_no"))
                       for p in pays]
    out["orders"] = await bill_orders(session, out["account_id"], bill_id)
    return out


async def bill_orders(session: AsyncSession, account_id: int, bill_id: int) -> list[dict[str, Any]]:
    """The online orders opened to pay this bill (services.bill_payments), newest first, whatever their state."""
    rows = await session.scalars(select(Order).where(Order.account_id == account_id, Order.kind == "bill")
                                 .order_by(Order.id.desc()))
    return [dict(id=o.id, out_trade_no=o.out_trade_no, provider=o.provider, channel=o.channel,
                 amount_fen=o.amount_fen, state=o.state, trade_no=o.provider_trade_no,
                 created_at=o.created_at.isoformat(), paid_at=o.paid_at.isoformat() if o.paid_at else None)
            for o in rows if (o.raw or {}).get("bill_id") == bill_id]


def _as_pure(b: Bill) -> pure.Bill:
    """Enough of a bill for the arrears rules: its total as one line, what was paid, its state."""
    line = pure.BillLine(pure.LineKind.ADJUSTMENT, "total", 0, "", Money(b.total_fen), "total")
    return pure.Bill(str(b.account_id), Period(b.period_start, b.period_end), b.due_on, (line,),
                     pure.BillStatus(b.status), Money(b.paid_fen))


async def arrears(session: AsyncSession, site_id: int, today: date) -> dict[str, Any]:
    """Who owes what on issued bills (billing.postpaid.arrears_summary), most owed first."""
    rows = (await session.execute(_with_people().where(Bill.site_id == site_id,
                                                       Bill.status.in_(OPEN_STATUSES)))).all()
    people = {b.account_id: (c, n, p) for b, c, n, p in rows}
    summary = pure.arrears_summary([_as_pure(b) for b, *_ in rows], today)
    return dict(today=today.isoformat(), outstanding_fen=summary.outstanding.fen, overdue_fen=summary.overdue.fen,
                outstanding=summary.outstanding.to_yuan_str(), overdue=summary.overdue.to_yuan_str(),
                rows=[dict(account_id=int(r.account_id), account_code=people[int(r.account_id)][0],
                           tenant=people[int(r.account_id)][1], phone=people[int(r.account_id)][2],
                           open_bills=r.open_bills, outstanding_fen=r.outstanding.fen, overdue_fen=r.overdue.fen,
                           outstanding=r.outstanding.to_yuan_str(), overdue=r.overdue.to_yuan_str(),
                           oldest_due_on=r.oldest_due_on.isoformat(), days_overdue=r.days_overdue)
                      for r in summary.rows])
