"""The statements of an ingest batch, as driver-level SQL for SQLite and PostgreSQL.

A batch reads and writes hundreds of rows of a few columns; SQLAlchemy's per-value type
processing (datetime and JSON conversion, one Row object per row) cost more than the database
work itself. Here values go to the driver's own connection (aiosqlite, asyncpg), inside the
transaction SQLAlchemy began, as tuples: on SQLite datetimes as the text SQLAlchemy stores
(`YYYY-MM-DD HH:MM:SS.ffffff`, UTC), on PostgreSQL as aware datetimes with arrays as single text
parameters (`= ANY`, `unnest`; see pg_array) and COPY for new rows. Driver errors are translated to
SQLAlchemy's exceptions, so `uow.in_transaction` still retries lost races.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from billing.tariffs import LineParts

UTC = timezone.utc
SQLITE_CHUNK = 5000  # rows per json_each parameter / executemany on SQLite


class Store:
    """One batch's connection; datetimes and JSON converted for the dialect (`dt`, `when`, `js`)."""

    pg = False

    def __init__(self, driver: Any) -> None:
        self.driver = driver  # the driver's connection (aiosqlite / asyncpg), in SQLAlchemy's transaction
        self._parsed: dict[Any, datetime] = {}
        self._text: dict[datetime, Any] = {}

    def dt(self, value: datetime | None) -> Any:
        """A datetime as the driver takes it (cached: a batch's readings share a few instants)."""
        if value is None:
            return None
        out = self._text.get(value)
        if out is None:
            out = self._text[value] = self._to_db(value)
        return out

    def when(self, raw: Any) -> datetime | None:
        """A datetime column's value as an aware UTC datetime."""
        if raw is None:
            return None
        out = self._parsed.get(raw)
        if out is None:
            out = self._parsed[raw] = self._from_db(raw)
        return out

    def _to_db(self, value: datetime) -> Any:
        u = value.astimezone(UTC)
        return "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (u.year, u.month, u.day, u.hour, u.minute, u.second,
                                                       u.microsecond)

    def _from_db(self, raw: Any) -> datetime:
        return datetime.fromisoformat(raw).replace(tzinfo=UTC)

    @staticmethod
    def js(raw: Any) -> Any:
        """A JSON column's value as Python (SQLite returns its text)."""
        return json.loads(raw) if isinstance(raw, str) else raw

    lock = ""  # row locks: SQLite's BEGIN IMMEDIATE already holds the whole database

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """Straight to aiosqlite (inside the transaction SQLAlchemy began): a statement through
        SQLAlchemy costs ~0.15 ms more, a batch runs a dozen. Errors get SQLAlchemy's shape."""
        try:
            return list(await self.driver.execute_fetchall(sql, params))
        except sqlite3.Error as ex:
            raise _sqlalchemy_error(ex, sql) from ex

    async def rows(self, sql: str, values: Sequence[Any], pg_type: str = "bigint") -> list[Any]:
        """`sql` with `:values` standing for the list `values` (one parameter, any length)."""
        out: list[Any] = []
        for part in _chunks(values):
            sql_ = sql.replace(":values", "(SELECT value FROM json_each(?))")
            out += await self._fetch(sql_, (json.dumps(list(part)),))
        return out

    async def many(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        for part in _chunks(rows):
            try:
                await self.driver.executemany(sql, part)
            except sqlite3.Error as ex:
                raise _sqlalchemy_error(ex, sql) from ex

    async def insert(self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" for _ in columns)
        await self.many(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    async def existing(self, keys: Sequence[tuple[int, int, datetime]]) -> set[tuple[int, int, datetime]]:
        """Which (meter, epoch, taken_at) of `keys` are stored: one unique-index probe each."""
        found: set[tuple[int, int, datetime]] = set()
        for part in _chunks(keys):
            rows = await self._fetch(
                "SELECT r.meter_id, r.epoch, r.taken_at FROM json_each(?) AS j CROSS JOIN readings AS r "
                "WHERE r.meter_id = json_extract(j.value, '$[0]') AND r.epoch = json_extract(j.value, '$[1]') "
                "AND r.taken_at = json_extract(j.value, '$[2]')",
                (json.dumps([[m, e, self.dt(t)] for m, e, t in part]),))
            found.update((m, e, self.when(t)) for m, e, t in rows)  # type: ignore[misc]
        return found

    async def lock_ledger(self, keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], tuple[int, int]]:
        """(id, balance) of the ledger accounts (site, code), by the (site_id, code) unique index;
        locked in id order where rows lock (PostgreSQL)."""
        found: dict[tuple[int, str], tuple[int, int]] = {}
        for part in _chunks(keys):
            rows = await self._fetch(
                "SELECT la.site_id, la.code, la.id, la.balance_fen FROM json_each(?) AS j CROSS JOIN ledger_accounts AS la "
                "WHERE la.site_id = json_extract(j.value, '$[0]') AND la.code = json_extract(j.value, '$[1]')",
                (json.dumps([list(k) for k in part]),))
            found.update({(s, c): (i, b) for s, c, i, b in rows})
        return found

    async def usage_txn(self, site_id: int, key: str, at: datetime, codes: Sequence[str]) -> tuple[int, dict[str, int]]:
        """A new usage transaction of the site, and the ids of its ledger accounts `codes` that exist."""
        [(txn,)] = await self._fetch(
            "INSERT INTO ledger_transactions (site_id, key, kind, memo, created_at) "
            "VALUES (?, ?, 'usage', 'metered usage', ?) RETURNING id", (site_id, key, self.dt(at)))
        return txn, {c: i for (_, c), (i, _) in (await self.lock_ledger([(site_id, c) for c in codes])).items()}

    async def update_many(self, table: str, columns: Sequence[str], types: dict[str, str],
                          rows: Sequence[tuple[Any, ...]]) -> None:
        """SET columns by id; each row is (id, *values)."""
        sets = ", ".join(f"{c} = ?" for c in columns)
        await self.many(f"UPDATE {table} SET {sets} WHERE id = ?", [(*r[1:], r[0]) for r in rows])


def pg_array(values: Sequence[Any], pg_type: str) -> str:
    """An array parameter as PostgreSQL's text literal, for `CAST($n AS text)::type[]`.

    asyncpg encodes a list element by element, and checks each element for being a nested
    collection (isinstance against the collections.abc classes: ~0.3 us each); an ingest batch
    sends ~8,000 array elements. One text value costs a join. Every element is quoted except
    numbers, booleans and NULL, so any text (quotes, backslashes, braces, "NULL") survives."""
    if pg_type in ("bigint", "integer"):
        if None not in values:
            return "{" + ",".join(map(int.__repr__, values)) + "}"  # int.__repr__: refuses non-ints
        return "{" + ",".join("NULL" if v is None else int.__repr__(v) for v in values) + "}"
    if pg_type == "boolean":
        return "{" + ",".join("NULL" if v is None else ("t" if v else "f") for v in values) + "}"
    fmt = _TEXT_FORMS[pg_type]
    memo: dict[int, str] = {}  # by id: a batch repeats the same few datetimes and codes
    out = []
    for v in values:
        if v is None:
            out.append("NULL")
            continue
        found = memo.get(id(v))
        if found is None:
            found = memo[id(v)] = fmt(v)
        out.append(found)
    return "{" + ",".join(out) + "}"


def _quoted(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"not text: {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _timestamp(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at!r}: the server would read it in its own time zone")
    return '"' + at.isoformat() + '"'


_TEXT_FORMS = {"text": _quoted, "json": _quoted, "timestamptz": _timestamp}


class PgStore(Store):
    pg = True

    def _to_db(self, value: datetime) -> Any:
        return value

    def _from_db(self, raw: Any) -> datetime:
        return raw.astimezone(UTC)

    def dt(self, value: datetime | None) -> Any:
        return value  # asyncpg takes aware datetimes as they are

    def when(self, raw: Any) -> datetime | None:
        """asyncpg already gives aware UTC datetimes: no look-up (hashing an aware datetime costs more)."""
        if raw is None or raw.tzinfo is UTC:
            return raw
        return raw.astimezone(UTC)

    async def _call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        try:
            return await fn(*args, **kw)
        except Exception as ex:  # asyncpg's own errors: give them SQLAlchemy's shape for the retry loop
            state = getattr(ex, "sqlstate", None)
            if state is None:
                raise
            if state.startswith("23"):
                raise IntegrityError(str(args[0])[:200], None, ex) from ex
            raise DBAPIError(str(args[0])[:200], None, ex) from ex

    lock = " FOR NO KEY UPDATE"

    async def rows(self, sql: str, values: Sequence[Any], pg_type: str = "bigint") -> list[Any]:
        sql_ = sql.replace(":values", f"ANY($1::text::{pg_type}[])").replace("IN ANY(", "= ANY(")
        return list(await self._call(self.driver.fetch, sql_, pg_array(values, pg_type)))

    async def insert(self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        if rows:
            await self._call(self.driver.copy_records_to_table, table, records=rows, columns=list(columns))

    async def existing(self, keys: Sequence[tuple[int, int, datetime]]) -> set[tuple[int, int, datetime]]:
        if not keys:
            return set()
        rows = await self._call(
            self.driver.fetch,
            "SELECT r.meter_id, r.epoch, r.taken_at FROM unnest($1::text::bigint[], $2::text::int[], "
            "$3::text::timestamptz[]) AS v(m, e, t) "
            "JOIN readings AS r ON r.meter_id = v.m AND r.epoch = v.e AND r.taken_at = v.t",
            pg_array([k[0] for k in keys], "bigint"), pg_array([k[1] for k in keys], "integer"),
            pg_array([k[2] for k in keys], "timestamptz"))
        return {(m, e, self.when(t)) for m, e, t in rows}

    async def lock_ledger(self, keys: Sequence[tuple[int, str]]) -> dict[tuple[int, str], tuple[int, int]]:
        if not keys:
            return {}
        rows = await self._call(
            self.driver.fetch,
            "SELECT la.site_id, la.code, la.id, la.balance_fen FROM ledger_accounts AS la "
            "JOIN unnest($1::text::bigint[], $2::text::text[]) AS v(s, c) ON la.site_id = v.s AND la.code = v.c "
            "ORDER BY la.id FOR UPDATE OF la", pg_array([k[0] for k in keys], "bigint"),
            pg_array([k[1] for k in keys], "text"))
        return {(s, c): (i, b) for s, c, i, b in rows}

    async def usage_txn(self, site_id: int, key: str, at: datetime, codes: Sequence[str]) -> tuple[int, dict[str, int]]:
        """One round trip: the INSERT, and the look-up of the accounts beside it."""
        rows = await self._call(
            self.driver.fetch,
            "WITH t AS (INSERT INTO ledger_transactions (site_id, key, kind, memo, created_at) "
            "VALUES ($1, $2, 'usage', 'metered usage', $3) RETURNING id) "
            "SELECT t.id, la.code, la.id FROM t LEFT JOIN ledger_accounts AS la "
            "ON la.site_id = $1 AND la.code = ANY($4::text[])", site_id, key, at, list(codes))
        return rows[0][0], {c: i for _, c, i in rows if c is not None}

    async def update_many(self, table: str, columns: Sequence[str], types: dict[str, str],
                          rows: Sequence[tuple[Any, ...]]) -> None:
        """One UPDATE ... FROM unnest for all rows; json columns travel as text."""
        if not rows:
            return
        sets = ", ".join(f"{c} = CAST(v.{c} AS json)" if types[c] == "json" else f"{c} = v.{c}" for c in columns)
        arrays = ", ".join(f"${i + 2}::text::{'text' if types[c] == 'json' else types[c]}[]"
                           for i, c in enumerate(columns))
        sql = (f"UPDATE {table} AS t SET {sets} FROM unnest($1::text::bigint[], {arrays}) "
               f"AS v(id, {', '.join(columns)}) "
               "WHERE t.id = v.id AND t.id = ANY($1::text::bigint[])")  # the ANY: an index scan, not a hash join
        kinds = ["bigint", *(types[c] for c in columns)]
        await self._call(self.driver.execute, sql, *(pg_array([r[i] for r in rows], kind)
                                                      for i, kind in enumerate(kinds)))


_HEADS: dict[tuple[str, Decimal, int | None], tuple[str, str, str]] = {}


def lines_json(lines: Sequence[LineParts]) -> str:
    """The priced lines (billing.pricing.price_parts) as the JSON text json.dumps gives for their
    dicts (label, quantity, unit_price, fen, version_id), from a template per (label, price,
    version): no encoder per row."""
    out = []
    for label, quantity, price, fen, version_id in lines:
        key = (label, price, version_id)
        head = _HEADS.get(key)
        if head is None:
            if len(_HEADS) > 1024:
                _HEADS.clear()
            head = _HEADS[key] = (f'{{"label": {json.dumps(label)}, "quantity": ',
                                  f', "unit_price": {json.dumps(str(price))}, "fen": ',
                                  f', "version_id": {json.dumps(version_id)}}}')
        out.append(f"{head[0]}{quantity:d}{head[1]}{fen:d}{head[2]}")
    return "[" + ", ".join(out) + "]"


async def store_for(session: AsyncSession) -> Store:
    """The batch's store; pending ORM changes are flushed first (raw statements do not autoflush)."""
    await session.flush()
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    if conn.dialect.name != "postgresql":
        return Store(raw.driver_connection)
    adapter = raw.dbapi_connection  # SQLAlchemy's asyncpg adapter sends BEGIN lazily, with its first statement
    start = getattr(adapter, "_start_transaction", None)
    if start is None:
        await conn.exec_driver_sql("SELECT 1")  # the portable way: one more round trip
    elif adapter._transaction is None:
        await start()
    return PgStore(raw.driver_connection)


def _sqlalchemy_error(ex: sqlite3.Error, sql: str) -> DBAPIError:
    """A driver error as SQLAlchemy raises it, so `uow.in_transaction` sees lost races as usual."""
    cls = IntegrityError if isinstance(ex, sqlite3.IntegrityError) else OperationalError \
        if isinstance(ex, sqlite3.OperationalError) else DBAPIError
    return cls(sql[:200], None, ex)


def _chunks(items: Sequence[Any], size: int = SQLITE_CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
