"""Writing ledger transactions to the database, exactly once per key, and checking the books."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, case, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from billing.ledger import CACHED_PREFIXES, Transaction, caches_balance
from billing.money import Money
from services import bulk
from store.db import insert_rows_or_ignore
from store.models import LedgerAccount, LedgerTransaction, Posting
from store.types import utcnow

# Built once: a payment runs each of these on every notice (see post_id)
_ID_BY_KEY = select(LedgerTransaction.__table__.c.id).where(LedgerTransaction.__table__.c.key == bindparam("key"))
_NEW_POSTINGS = insert(Posting.__table__)
_ADD_TO_BALANCE = update(LedgerAccount.__table__).where(LedgerAccount.__table__.c.id == bindparam("lid")).values(
    balance_fen=LedgerAccount.__table__.c.balance_fen + bindparam("delta"))
# PostgreSQL, one statement: a transaction unless its key exists, its postings and the one cached balance they
# may move, its ledger accounts found by code; nothing is written unless all of them exist (`found` says how many)
_POST_PG = text("""
WITH leg AS (
    SELECT l.n, l.amount, l.cached, a.id AS account
    FROM unnest(CAST(:codes AS text[]), CAST(:amounts AS bigint[]), CAST(:cached AS boolean[]))
         WITH ORDINALITY AS l(code, amount, cached, n)
    JOIN ledger_accounts AS a ON a.site_id = CAST(:site_id AS bigint) AND a.code = l.code),
txn AS (
    INSERT INTO ledger_transactions (site_id, key, kind, memo, actor, order_id, created_at)
    SELECT CAST(:site_id AS bigint), CAST(:key AS text), CAST(:kind AS text), CAST(:memo AS text),
           CAST(:actor AS text), CAST(:order_id AS bigint), CAST(:created_at AS timestamptz)
    WHERE (SELECT count(*) FROM leg) = CAST(:legs AS bigint)
    ON CONFLICT (key) DO NOTHING RETURNING id),
posted AS (
    INSERT INTO ledger_postings (txn_id, ledger_account_id, amount_fen)
    SELECT txn.id, leg.account, leg.amount FROM txn, leg ORDER BY leg.n),
moved AS (
    UPDATE ledger_accounts AS a SET balance_fen = a.balance_fen + m.delta
    FROM txn, (SELECT account, sum(amount) AS delta FROM leg WHERE cached GROUP BY account) AS m
    WHERE a.id = m.account)
SELECT (SELECT id FROM txn) AS id, (SELECT count(*) FROM leg) AS found""").bindparams(
    bindparam("created_at", type_=LedgerTransaction.__table__.c.created_at.type))
_CACHED_BALANCE = select(LedgerAccount.balance_fen).where(
    LedgerAccount.site_id == bindparam("site_id"), LedgerAccount.code == bindparam("code"))


async def post_id(session: AsyncSession, site_id: int, txn: Transaction, actor: str | None = None,
                  order_id: int | None = None, account_id: int | None = None) -> tuple[int, bool]:
    """Record `txn` unless its key is already recorded; returns (transaction id, created).

    Prebuilt statements on the connection and no ORM row (every payment notice posts). The key
    decides in the insert (ON CONFLICT DO NOTHING), not a look-up first. On PostgreSQL the
    transaction, its postings and the balance it moves are one statement (a second, after
    creating them, when a ledger account is new); a transaction moving two cached balances (a
    bill payment's receivable and wallet) takes the statements that lock them in id order, as
    every writer does. Pending changes other than ledger rows are not flushed first (see
    bulk.flush_ledger_rows): a payment's order row then takes one UPDATE, not one each side."""
    await bulk.flush_ledger_rows(session)
    conn = await session.connection()
    cached = {p.account for p in txn.postings if caches_balance(p.account)}
    if conn.dialect.name == "postgresql" and len(cached) < 2:  # _POST_PG's UPDATE locks in its plan's order
        params = {**_txn_row(site_id, txn, actor, order_id), "codes": [p.account for p in txn.postings],
                  "amounts": [p.amount.fen for p in txn.postings], "legs": len(txn.postings),
                  "cached": [caches_balance(p.account) for p in txn.postings]}
        txn_id, found = (await conn.execute(_POST_PG, params)).one()
        if txn_id is None and found < len(txn.postings):  # a ledger account's first posting: create it, again
            await _account_ids(session, site_id, txn, account_id)
            txn_id, found = (await conn.execute(_POST_PG, params)).one()
    else:
        txn_id = (await conn.execute(insert_rows_or_ignore(session, LedgerTransaction, ["key"], returning="id"),
                                     _txn_row(site_id, txn, actor, order_id))).scalar()
        if txn_id is not None:
            await _legs(session, site_id, int(txn_id), txn, account_id)
    if txn_id is None:
        existing = (await conn.execute(_ID_BY_KEY, {"key": txn.key})).scalar()
        assert existing is not None, f"ledger key {txn.key!r} conflicted but is not recorded"
        return int(existing), False
    return int(txn_id), True


def _txn_row(site_id: int, txn: Transaction, actor: str | None, order_id: int | None) -> dict[str, Any]:
    return dict(site_id=site_id, key=txn.key, kind=txn.kind, memo=txn.memo[:300], actor=actor, order_id=order_id,
                created_at=utcnow())


async def _account_ids(session: AsyncSession, site_id: int, txn: Transaction, account_id: int | None) -> dict[str, int]:
    """The ledger account ids of `txn`'s postings; wallets and receivables created owned by `account_id`."""
    owners = {p.account: account_id if p.account.startswith(("wallet", "receivable")) else None
              for p in txn.postings}
    return await bulk.ledger_ids(session, site_id, list(owners), {c: o for c, o in owners.items() if o is not None})


def _moves(txn: Transaction, ids: dict[str, int]) -> dict[int, int]:
    """How much each cached balance moves (site-level accounts keep none), by ledger account id in id order."""
    moves: dict[int, int] = {}
    for p in txn.postings:
        if caches_balance(p.account):
            moves[ids[p.account]] = moves.get(ids[p.account], 0) + p.amount.fen
    return dict(sorted(moves.items()))


async def _legs(session: AsyncSession, site_id: int, txn_id: int, txn: Transaction, account_id: int | None) -> None:
    """The postings of a new transaction, and the cached balances they move."""
    ids = await _account_ids(session, site_id, txn, account_id)
    conn = await session.connection()
    await conn.execute(_NEW_POSTINGS, [
        dict(txn_id=txn_id, ledger_account_id=ids[p.account], amount_fen=p.amount.fen) for p in txn.postings])
    for lid, delta in _moves(txn, ids).items():
        await conn.execute(_ADD_TO_BALANCE, {"lid": lid, "delta": delta})


async def balance_of(session: AsyncSession, site_id: int, code: str) -> Money:
    """The balance of `code`: its cache for a tenant-owned account, the sum of postings otherwise."""
    if caches_balance(code):
        fen = await session.scalar(_CACHED_BALANCE, {"site_id": site_id, "code": code})
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
