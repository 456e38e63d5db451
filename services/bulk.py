"""Bulk writes for month-end: rows by COPY on PostgreSQL, and many ledger transactions at once.

Month-end raises one transaction per fee charge and per apportioned share and a bill with lines
per account: 100,000s of rows. On PostgreSQL they go in with COPY (ids reserved from the table's
sequence first, so children can point at their parents); SQLite gets multi-row INSERTs.

`post_many` posts many ledger transactions with the same exactly-once rule as `services.ledger.post_id`:
a key already recorded is skipped (the unique key is the guard against
a concurrent writer: the loser's transaction fails and `uow.in_transaction` retries it), every
transaction's postings sum to zero (checked by billing.ledger.Transaction), and each cached
balance moves by exactly the sum of its new postings (`services.ledger.verify` checks it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import TypeVar

from operator import itemgetter
from typing import Any

from sqlalchemy import any_, bindparam, insert, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from billing.ledger import Transaction, caches_balance
from store.db import insert_rows_or_ignore
from store.models import LedgerAccount, LedgerTransaction, Posting
from store.types import utcnow

CHUNK = 5000
T = TypeVar("T")
_LA = LedgerAccount.__table__
_LEDGER_ROWS = (LedgerAccount, LedgerTransaction, Posting)
# code -> id of a site's ledger accounts, built once (every payment posts twice): by an array on PostgreSQL
_LEDGER_IDS = {
    True: select(_LA.c.code, _LA.c.id).where(_LA.c.site_id == bindparam("site_id"),
                                             _LA.c.code == any_(bindparam("codes", type_=ARRAY(_LA.c.code.type)))),
    False: select(_LA.c.code, _LA.c.id).where(_LA.c.site_id == bindparam("site_id"),
                                              _LA.c.code.in_(bindparam("codes", expanding=True))),
}


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    """Slices small enough for one IN list or one multi-row INSERT."""
    for i in range(0, len(items), size):
        yield items[i:i + size]


async def core_rows(session: AsyncSession, stmt: Any) -> Any:
    """Run a column SELECT on the session's connection, skipping the ORM's per-row loading machinery
    (half the client time of reading 100,000 rows); pending ORM changes are flushed first."""
    await session.flush()
    return await (await session.connection()).execute(stmt)


async def flush_ledger_rows(session: AsyncSession) -> None:
    """Flush the session if it holds unflushed ledger rows, which statements run on its connection
    (no autoflush) would not see; other pending changes wait for the session's next flush."""
    if any(isinstance(obj, _LEDGER_ROWS) for obj in (*session.new, *session.dirty)):
        await session.flush()


async def is_pg(session: AsyncSession) -> bool:
    return (await session.connection()).dialect.name == "postgresql"


def among(column: Any, values: Sequence[Any], pg: bool) -> Any:
    """`column IN values`. On PostgreSQL one array parameter (`= ANY($1)`): 100,000 values cost one
    bind, not 100,000 rendered placeholders, so callers need not chunk."""
    if pg:
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)


def parts(items: Sequence[T], pg: bool) -> Iterator[Sequence[T]]:
    """All at once for `among` on PostgreSQL, else IN-list sized chunks."""
    if pg:
        if items:
            yield items
        return
    yield from chunks(items)


async def _pg(session: AsyncSession) -> Any | None:
    """The asyncpg connection of this session's transaction, or None on another database."""
    conn = await session.connection()
    if conn.dialect.name != "postgresql":
        return None
    await conn.exec_driver_sql("SELECT 1")  # the adapter opens its transaction on the first statement
    raw = await conn.get_raw_connection()
    return raw.driver_connection


async def write_rows(session: AsyncSession, model: Any, rows: Sequence[dict[str, Any]],
                     with_ids: bool = False) -> list[int]:
    """Insert `rows` (every column given, all rows with the same keys); returns new ids if asked."""
    if not rows:
        return []
    driver = await _pg(session)
    table = model.__table__
    if driver is None:
        if not with_ids:
            for part in chunks(rows):
                await session.execute(insert(model), list(part))
            return []
        ids: list[int] = []
        for part in chunks(rows):
            result = await session.execute(insert(model).returning(model.id, sort_by_parameter_order=True), list(part))
            ids += [i for (i,) in result.all()]
        return ids
    columns = list(rows[0])
    pick = itemgetter(*columns)
    records = [pick(r) for r in rows] if len(columns) > 1 else [(pick(r),) for r in rows]
    ids = []
    if with_ids:
        seq = await driver.fetchval("SELECT pg_get_serial_sequence($1, 'id')", table.name)  # once, not per row
        ids = [r[0] for r in await driver.fetch("SELECT nextval($1::regclass) FROM generate_series(1, $2)",
                                               seq, len(rows))]
        records = [(i, *rec) for i, rec in zip(ids, records)]
        columns = ["id", *columns]
    await driver.copy_records_to_table(table.name, records=records, columns=columns)
    return ids


async def existing_keys(session: AsyncSession, keys: Sequence[str]) -> set[str]:
    """Which of `keys` the ledger has already recorded."""
    found: set[str] = set()
    pg = await is_pg(session)
    for part in parts(keys, pg):
        found.update(k for (k,) in await core_rows(session, select(LedgerTransaction.key).where(
            among(LedgerTransaction.key, part, pg))))
    return found


async def ledger_ids(session: AsyncSession, site_id: int, codes: Sequence[str],
                     owners: Mapping[str, int]) -> dict[str, int]:
    """Ids of the site's ledger accounts `codes`, creating the missing ones (owner from `owners`)."""
    ids: dict[str, int] = {}
    await flush_ledger_rows(session)
    conn = await session.connection()
    pg = conn.dialect.name == "postgresql"
    for part in parts(codes, pg):
        ids.update({c: i for c, i in await conn.execute(_LEDGER_IDS[pg], {"site_id": site_id, "codes": list(part)})})
    missing = [c for c in codes if c not in ids]
    if missing:  # ON CONFLICT: two first payments of a site may create its `cash:alipay` at once
        # (session.execute autoflushes: an owner account opened in this transaction goes in first)
        await session.execute(insert_rows_or_ignore(session, LedgerAccount, ["site_id", "code"]),
                              [dict(site_id=site_id, code=c, account_id=owners.get(c), meter_id=None, balance_fen=0)
                               for c in missing])
        for part in parts(missing, pg):
            ids.update({c: i for c, i in await conn.execute(_LEDGER_IDS[pg], {"site_id": site_id,
                                                                               "codes": list(part)})})
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
    txn_ids = await write_rows(session, LedgerTransaction, [
        dict(site_id=site_id, key=t.key, kind=t.kind, memo=t.memo[:300], actor=actor, order_id=None,
             created_at=now) for t in fresh], with_ids=True)
    postings = [dict(txn_id=txn_id, ledger_account_id=ids[p.account], amount_fen=p.amount.fen)
                for t, txn_id in zip(fresh, txn_ids) for p in t.postings]
    deltas: dict[int, int] = defaultdict(int)
    cached = {ids[c] for c in codes if caches_balance(c)}  # site-level accounts keep no cache
    for row in postings:
        if row["ledger_account_id"] in cached:
            deltas[row["ledger_account_id"]] += row["amount_fen"]
    await write_rows(session, Posting, postings)
    await add_to_balances(session, deltas)
    return [t.key for t in fresh]
