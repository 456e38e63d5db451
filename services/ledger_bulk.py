"""Posting many ledger transactions at once, with the same exactly-once rule as services.ledger.post.

Month-end raises one transaction per fee charge and per apportioned share: 100,000 of them go
in a handful of bulk statements instead of several round trips each. The rules are those of
`services.ledger.post`: a key already recorded is skipped (the unique key is the guard against
a concurrent writer: the loser's transaction fails and `uow.in_transaction` retries it), every
transaction's postings sum to zero (checked by billing.ledger.Transaction), and each cached
balance moves by exactly the sum of its new postings (`services.ledger.verify` checks it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import TypeVar

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from billing.ledger import Transaction
from store.models import LedgerAccount, LedgerTransaction, Posting
from store.types import utcnow

CHUNK = 5000
T = TypeVar("T")


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """Slices small enough for one IN list or one multi-row INSERT."""
    for i in range(0, len(items), size):
        yield items[i:i + size]


async def existing_keys(session: AsyncSession, keys: Sequence[str]) -> set[str]:
    """Which of `keys` the ledger has already recorded."""
    found: set[str] = set()
    for part in chunks(keys):
        found.update(await session.scalars(select(LedgerTransaction.key).where(LedgerTransaction.key.in_(part))))
    return found


async def ledger_ids(session: AsyncSession, site_id: int, codes: Sequence[str],
                     owners: Mapping[str, int]) -> dict[str, int]:
    """Ids of the site's ledger accounts `codes`, creating the missing ones (owner from `owners`)."""
    ids: dict[str, int] = {}
    for part in chunks(codes):
        rows = await session.execute(select(LedgerAccount.code, LedgerAccount.id).where(
            LedgerAccount.site_id == site_id, LedgerAccount.code.in_(part)))
        ids.update({c: i for c, i in rows})
    missing = [c for c in codes if c not in ids]
    for part in chunks(missing):
        rows = await session.execute(insert(LedgerAccount).returning(LedgerAccount.code, LedgerAccount.id), [
            dict(site_id=site_id, code=c, account_id=owners.get(c), meter_id=None, balance_fen=0) for c in part])
        ids.update({c: i for c, i in rows})
    return ids


async def add_to_balances(session: AsyncSession, deltas: Mapping[int, int]) -> None:
    """balance_fen += delta for each ledger account id, in one statement on PostgreSQL."""
    pairs = sorted((i, d) for i, d in deltas.items() if d)
    if not pairs:
        return
    conn = await session.connection()
    if conn.dialect.name == "postgresql":
        for part in chunks(pairs, 50_000):
            await conn.execute(text(
                "UPDATE ledger_accounts AS la SET balance_fen = la.balance_fen + v.d "
                "FROM unnest(CAST(:ids AS bigint[]), CAST(:ds AS bigint[])) AS v(id, d) WHERE la.id = v.id"),
                {"ids": [i for i, _ in part], "ds": [d for _, d in part]})
        return
    table = LedgerAccount.__table__
    stmt = update(table).where(table.c.id == bindparam("lid")).values(
        balance_fen=table.c.balance_fen + bindparam("delta"))
    await conn.execute(stmt, [{"lid": i, "delta": d} for i, d in pairs])


async def post_many(session: AsyncSession, site_id: int, txns: Sequence[Transaction],
                    owners: Mapping[str, int] | None = None, actor: str | None = None) -> list[str]:
    """Record every transaction whose key is new; returns the keys recorded by this call.

    `owners` maps wallet / receivable codes to the tenant account they belong to.
    """
    owners = owners or {}
    unique = {t.key: t for t in txns}
    seen = await existing_keys(session, list(unique))
    fresh = [t for k, t in unique.items() if k not in seen]
    if not fresh:
        return []
    codes = sorted({p.account for t in fresh for p in t.postings})
    ids = await ledger_ids(session, site_id, codes, owners)
    now = utcnow()
    txn_ids: dict[str, int] = {}
    for part in chunks(fresh):
        rows = await session.execute(insert(LedgerTransaction).returning(LedgerTransaction.key, LedgerTransaction.id), [
            dict(site_id=site_id, key=t.key, kind=t.kind, memo=t.memo[:300], actor=actor, order_id=None,
                 created_at=now) for t in part])
        txn_ids.update({k: i for k, i in rows})
    postings = [dict(txn_id=txn_ids[t.key], ledger_account_id=ids[p.account], amount_fen=p.amount.fen)
                for t in fresh for p in t.postings]
    deltas: dict[int, int] = defaultdict(int)
    for row in postings:
        deltas[row["ledger_account_id"]] += row["amount_fen"]
    for part in chunks(postings):
        await session.execute(insert(Posting), list(part))
    await add_to_balances(session, deltas)
    return [t.key for t in fresh]
