"""Writing ledger transactions to the database, exactly once per key, and checking the books."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billing.ledger import CACHED_PREFIXES, Transaction, caches_balance
from billing.money import Money
from services import bulk
from store.db import insert_or_ignore
from store.models import LedgerAccount, LedgerTransaction, Posting
from store.types import utcnow


async def find(session: AsyncSession, key: str) -> LedgerTransaction | None:
    return await session.scalar(select(LedgerTransaction).where(LedgerTransaction.key == key))


async def post(session: AsyncSession, site_id: int, txn: Transaction, actor: str | None = None,
               order_id: int | None = None, account_id: int | None = None) -> tuple[LedgerTransaction, bool]:
    """Record `txn` unless its key is already recorded; returns (row, created).

    The key decides in one statement (INSERT ... ON CONFLICT DO NOTHING RETURNING): a payment
    posts two transactions, and a look-up before each insert was a round trip per posting."""
    stmt = insert_or_ignore(session, LedgerTransaction, ["key"]).values(
        site_id=site_id, key=txn.key, kind=txn.kind, memo=txn.memo[:300], actor=actor, order_id=order_id,
        created_at=utcnow()).returning(LedgerTransaction)
    row = await session.scalar(stmt)
    if row is None:
        existing = await find(session, txn.key)
        assert existing is not None, f"ledger key {txn.key!r} conflicted but is not recorded"
        return existing, False
    owners = {p.account: account_id if p.account.startswith(("wallet", "receivable")) else None
              for p in txn.postings}
    ids = await bulk.ledger_ids(session, site_id, list(owners), {c: o for c, o in owners.items() if o is not None})
    conn = await session.connection()
    await conn.execute(insert(Posting.__table__), [
        dict(txn_id=row.id, ledger_account_id=ids[p.account], amount_fen=p.amount.fen) for p in txn.postings])
    moves: dict[int, int] = {}
    for p in txn.postings:
        if caches_balance(p.account):
            moves[ids[p.account]] = moves.get(ids[p.account], 0) + p.amount.fen
    for lid in sorted(moves):
        await conn.execute(update(LedgerAccount.__table__).where(LedgerAccount.__table__.c.id == lid)
                           .values(balance_fen=LedgerAccount.__table__.c.balance_fen + moves[lid]))
    return row, True


async def balance_of(session: AsyncSession, site_id: int, code: str) -> Money:
    """The balance of `code`: its cache for a tenant-owned account, the sum of postings otherwise."""
    if caches_balance(code):
        fen = await session.scalar(select(LedgerAccount.balance_fen).where(
            LedgerAccount.site_id == site_id, LedgerAccount.code == code))
    else:
        fen = await session.scalar(select(func.sum(Posting.amount_fen)).join(
            LedgerAccount, LedgerAccount.id == Posting.ledger_account_id).where(
            LedgerAccount.site_id == site_id, LedgerAccount.code == code))
    return Money(int(fen or 0))


async def balances(session: AsyncSession, site_id: int | None = None) -> dict[str, int]:
    """Every ledger account's balance by code (fen), from its postings — for reports and checks."""
    stmt = (select(LedgerAccount.code, func.coalesce(func.sum(Posting.amount_fen), 0))
            .outerjoin(Posting, Posting.ledger_account_id == LedgerAccount.id).group_by(LedgerAccount.code))
    if site_id is not None:
        stmt = stmt.where(LedgerAccount.site_id == site_id)
    return {code: int(fen) for code, fen in (await session.execute(stmt)).all()}


@dataclass(frozen=True)
class BookCheck:
    unbalanced_transactions: int
    cache_mismatches: int
    total_fen: int

    @property
    def ok(self) -> bool:
        return self.unbalanced_transactions == 0 and self.cache_mismatches == 0 and self.total_fen == 0


async def verify(session: AsyncSession) -> BookCheck:
    """Every transaction sums to zero, every cached balance equals the sum of its postings (and an
    account that keeps no cache holds 0 there, so a stale cache cannot hide)."""
    unbalanced = await session.scalar(select(func.count()).select_from(
        select(Posting.txn_id).group_by(Posting.txn_id).having(func.sum(Posting.amount_fen) != 0).subquery()))
    sums = select(Posting.ledger_account_id.label("aid"), func.sum(Posting.amount_fen).label("s")) \
        .group_by(Posting.ledger_account_id).subquery()
    cached = or_(*(LedgerAccount.code.startswith(p) for p in CACHED_PREFIXES))
    expected = case((cached, func.coalesce(sums.c.s, 0)), else_=0)
    mismatches = await session.scalar(
        select(func.count()).select_from(LedgerAccount).outerjoin(sums, sums.c.aid == LedgerAccount.id)
        .where(LedgerAccount.balance_fen != expected))
    grand = await session.scalar(select(func.coalesce(func.sum(Posting.amount_fen), 0)))
    return BookCheck(int(unbalanced or 0), int(mismatches or 0), int(grand or 0))
