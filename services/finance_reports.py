"""Finance reports from the ledger: income by period, channel and utility; entries; daily cash check.

Money received by channel is the negated net of postings to `cash:<provider>` (a recharge moves
cash -> wallet, a refund wallet -> cash); income by utility is the net of postings to
`revenue:<utility>` and `revenue:fee:<item>`. Both come from ledger transactions, so the report
agrees with balances by construction. Periods are site-local days, months or years.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.errors import NotFound, ServiceError
from store.models import LedgerAccount, LedgerTransaction, Order, Posting, ProviderPayment, ReconciliationItem, Site

GRANULARITIES = ("day", "month", "year")
MAX_SPAN_DAYS = 3700


def local_start(d: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(d, time.min, tz)


def bucket(at: datetime, tz: ZoneInfo, granularity: str) -> str:
    local = at.astimezone(tz)
    return {"day": f"{local:%Y-%m-%d}", "month": f"{local:%Y-%m}", "year": f"{local:%Y}"}[granularity]


def buckets(start: date, end: date, granularity: str) -> list[str]:
    """Every period label of [start, end), in order."""
    out, d = [], start
    while d < end:
        label = {"day": f"{d:%Y-%m-%d}", "month": f"{d:%Y-%m}", "year": f"{d:%Y}"}[granularity]
        if not out or out[-1] != label:
            out.append(label)
        d += timedelta(days=1)
    return out


@dataclass
class Income:
    """by_channel[provider][period] and by_utility[utility-or-fee][period], fen; totals per key."""

    periods: list[str]
    by_channel: dict[str, dict[str, int]] = field(default_factory=dict)
    by_utility: dict[str, dict[str, int]] = field(default_factory=dict)

    @staticmethod
    def totals(table: dict[str, dict[str, int]]) -> dict[str, int]:
        return {k: sum(v.values()) for k, v in table.items()}

    @staticmethod
    def per_period(table: dict[str, dict[str, int]], periods: list[str]) -> list[int]:
        return [sum(v.get(p, 0) for v in table.values()) for p in periods]


async def _site(session: AsyncSession, site_id: int) -> Site:
    site = await session.get(Site, site_id)
    if site is None:
        raise NotFound(f"site {site_id} not found")
    return site


async def income(session: AsyncSession, site_id: int, start: date, end: date, granularity: str = "day") -> Income:
    """Money received per channel and earned per utility over [start, end) of site-local dates."""
    if granularity not in GRANULARITIES:
        raise ServiceError(f"granularity must be one of {GRANULARITIES}")
    if end <= start or (end - start).days > MAX_SPAN_DAYS:
        raise ServiceError("the span must end after it starts and be at most ten years")
    site = await _site(session, site_id)
    tz = ZoneInfo(site.timezone)
    stmt = (select(LedgerAccount.code, LedgerTransaction.created_at, Posting.amount_fen)
            .join(LedgerTransaction, LedgerTransaction.id == Posting.txn_id)
            .join(LedgerAccount, LedgerAccount.id == Posting.ledger_account_id)
            .where(LedgerTransaction.site_id == site_id,
                   LedgerTransaction.created_at >= local_start(start, tz),
                   LedgerTransaction.created_at < local_start(end, tz),
                   or_(LedgerAccount.code.like("cash:%"), LedgerAccount.code.like("revenue:%"))))
    out = Income(buckets(start, end, granularity))
    channel: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    utility: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for code, at, fen in await session.execute(stmt):
        kind, _, name = code.partition(":")
        if kind == "cash":
            channel[name][bucket(at, tz, granularity)] -= int(fen)
        else:
            utility[name][bucket(at, tz, granularity)] += int(fen)
    out.by_channel = {k: dict(v) for k, v in sorted(channel.items())}
    out.by_utility = {k: dict(v) for k, v in sorted(utility.items())}
    return out


@dataclass(frozen=True)
class Entry:
    id: int
    at: datetime
    kind: str
    key: str
    memo: str
    actor: str | None
    amount_fen: int  # the transaction's size: the sum of its positive postings


async def entries(session: AsyncSession, site_id: int, start: date | None = None, end: date | None = None,
                  kind: str | None = None, limit: int = 100, offset: int = 0) -> list[Entry]:
    """The ledger's transactions (recharges, refunds, fees, apportionment, bills, usage), newest first."""
    site = await _site(session, site_id)
    tz = ZoneInfo(site.timezone)
    size = func.coalesce(func.sum(Posting.amount_fen).filter(Posting.amount_fen > 0), 0)
    stmt = (select(LedgerTransaction, size).join(Posting, Posting.txn_id == LedgerTransaction.id)
            .where(LedgerTransaction.site_id == site_id).group_by(LedgerTransaction.id)
            .order_by(LedgerTransaction.id.desc()).limit(limit).offset(offset))
    if kind:
        stmt = stmt.where(LedgerTransaction.kind == kind)
    if start is not None:
        stmt = stmt.where(LedgerTransaction.created_at >= local_start(start, tz))
    if end is not None:
        stmt = stmt.where(LedgerTransaction.created_at < local_start(end, tz))
    return [Entry(t.id, t.created_at, t.kind, t.key, t.memo, t.actor, int(fen))
            for t, fen in await session.execute(stmt)]


async def entry_kinds(session: AsyncSession, site_id: int) -> list[str]:
    rows = await session.scalars(select(LedgerTransaction.kind).where(LedgerTransaction.site_id == site_id).distinct())
    return sorted(rows)


@dataclass
class CashLine:
    """One provider's day: what our orders say, what the ledger holds, what the provider reported."""

    provider: str
    orders_in_fen: int = 0
    orders_out_fen: int = 0
    ledger_fen: int = 0
    provider_fen: int | None = None  # None for the cash desk (no outside record)
    differences: int = 0  # reconciliation items found for the day

    @property
    def orders_net_fen(self) -> int:
        return self.orders_in_fen - self.orders_out_fen

    @property
    def balanced(self) -> bool:
        ok = self.ledger_fen == self.orders_net_fen and self.differences == 0
        return ok and (self.provider_fen is None or self.provider_fen == self.orders_in_fen)


async def cash_reconciliation(session: AsyncSession, site_id: int, day: date) -> list[CashLine]:
    """Per provider for one site-local day: order totals vs. ledger cash postings vs. provider totals."""
    site = await _site(session, site_id)
    tz = ZoneInfo(site.timezone)
    lo, hi = local_start(day, tz), local_start(day + timedelta(days=1), tz)
    lines: dict[str, CashLine] = {}

    def line(provider: str) -> CashLine:
        return lines.setdefault(provider, CashLine(provider, provider_fen=None if provider == "cash" else 0))

    orders = (select(Order.provider, Order.kind, func.sum(Order.amount_fen))
              .where(Order.site_id == site_id, Order.txn_id.is_not(None), Order.paid_at >= lo, Order.paid_at < hi)
              .group_by(Order.provider, Order.kind))
    for provider, kind, fen in await session.execute(orders):
        if kind == "refund":
            line(provider).orders_out_fen += int(fen or 0)
        else:
            line(provider).orders_in_fen += int(fen or 0)
    ledger = (select(LedgerAccount.code, func.sum(Posting.amount_fen))
              .join(LedgerTransaction, LedgerTransaction.id == Posting.txn_id)
              .join(LedgerAccount, LedgerAccount.id == Posting.ledger_account_id)
              .where(LedgerTransaction.site_id == site_id, LedgerAccount.code.like("cash:%"),
                     LedgerTransaction.created_at >= lo, LedgerTransaction.created_at < hi)
              .group_by(LedgerAccount.code))
    for code, fen in await session.execute(ledger):
        line(code.split(":", 1)[1]).ledger_fen -= int(fen or 0)
    reported = (select(ProviderPayment.provider, func.sum(ProviderPayment.amount_fen))
                .join(Order, Order.id == ProviderPayment.order_id)
                .where(Order.site_id == site_id, ProviderPayment.role == "primary",
                       ProviderPayment.created_at >= lo, ProviderPayment.created_at < hi)
                .group_by(ProviderPayment.provider))
    for provider, fen in await session.execute(reported):
        line(provider).provider_fen = int(fen or 0)
    await _differences(session, site_id, day, line)
    return sorted(lines.values(), key=lambda c: c.provider)


async def _differences(session: AsyncSession, site_id: int, day: date, line: Any) -> None:
    stmt = (select(ReconciliationItem.provider, func.count()).outerjoin(Order, Order.id == ReconciliationItem.order_id)
            .where(ReconciliationItem.day == day.isoformat(),
                   or_(Order.site_id == site_id, ReconciliationItem.order_id.is_(None)))
            .group_by(ReconciliationItem.provider))
    for provider, n in await session.execute(stmt):
        line(provider).differences += int(n)
