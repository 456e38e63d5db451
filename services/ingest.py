"""Ingesting meter readings: registers -> deltas -> priced lines -> one ledger transaction per batch.

What happens to each reading is decided by billing.readings.assess (README "Reading rules").
A batch is one database transaction: reading rows (each with its verdict, priced lines and the
tariff version ids it was priced with), one `usage` ledger transaction per site whose wallet
postings are the sums of the batch's readings per wallet, baseline updates, and cut-off commands
for accounts that ran out. Re-ingesting a reading is a no-op: (meter, epoch, taken_at) is unique.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from billing.ledger import revenue_code, wallet_code
from billing.money import Money, round_half_up
from billing.pricing import price_interval
from billing.readings import Assessment, Baseline, RegisterLimits, Verdict, assess
from billing.tariffs import TariffVersion as PureVersion, parse_tariff
from services import alerting, relay
from services.bulk import add_to_balances
from services.wallets import account_balance
from store.models import (Account, LedgerAccount, LedgerTransaction, Meter, Posting, Reading, Site,
                          TariffVersion)
from store.types import utcnow


@dataclass(frozen=True, slots=True)
class ReadingIn:
    meter_id: int
    taken_at: datetime
    total: int
    rates: tuple[int, int, int, int] | None = None
    live: dict[str, Any] | None = None
    relay_closed: bool | None = None
    meter_balance_fen: int | None = None
    purchase_count: int | None = None


@dataclass(frozen=True, slots=True)
class IngestResult:
    meter_id: int
    taken_at: datetime
    verdict: str | None = None
    amount: Money = Money(0)
    error: str | None = None


@dataclass
class _Batch:
    readings: list[dict[str, Any]] = field(default_factory=list)
    wallet_fen: dict[tuple[int, str, int], int] = field(default_factory=lambda: defaultdict(int))
    revenue_fen: dict[tuple[int, str], int] = field(default_factory=lambda: defaultdict(int))


async def ingest(session: AsyncSession, readings: list[ReadingIn], now: datetime | None = None) -> list[IngestResult]:
    """Bill a batch of readings (any order, duplicates welcome); returns one result per reading."""
    now = now or utcnow()
    naive = [r for r in readings if r.taken_at.tzinfo is None]
    readings = [r for r in readings if r.taken_at.tzinfo is not None]
    meters, accounts = await _lock(session, {r.meter_id for r in readings})
    sites = await _load(session, Site, {m.site_id for m in meters.values()})
    versions = await _versions(session, {m.tariff_id for m in meters.values() if m.tariff_id})
    seen = await _existing(session, readings, meters)
    batch = _Batch()
    results = [IngestResult(r.meter_id, r.taken_at, error="reading time must carry a time zone") for r in naive]
    for r in sorted(readings, key=lambda r: (r.meter_id, r.taken_at)):
        m = meters.get(r.meter_id)
        error = _refusal(r, m, accounts)
        if error or m is None:
            results.append(IngestResult(r.meter_id, r.taken_at, error=error))
            continue
        if (m.id, m.epoch, r.taken_at) in seen:
            results.append(IngestResult(r.meter_id, r.taken_at, verdict=Verdict.DUPLICATE.value))
            continue
        seen.add((m.id, m.epoch, r.taken_at))
        acc = accounts.get(m.account_id) if m.account_id else None
        tz = ZoneInfo(sites[m.site_id].timezone)
        results.append(_one(batch, r, m, acc, tz, versions.get(m.tariff_id or -1, []), now))
    await _save_meters(session, [m for m in meters.values() if m.touched])
    moved = await _write(session, batch, now)
    await _cutoffs(session, batch, accounts, moved, now)
    await alerting.after_balance_changes(session, moved, now)
    return results


_METER_READ = ("id", "site_id", "account_id", "utility", "billing_side", "tariff_id", "epoch", "base_at",
               "base_total", "base_rates", "month_key", "month_used", "flags", "last_reading_at", "last_total",
               "relay_closed", "relay_changed_at", "live", "meter_balance_fen", "purchase_count", "online",
               "last_seen_at", "register_modulus", "max_rate_per_h")
_METER_WRITE = ("base_at", "base_total", "base_rates", "month_key", "month_used", "flags", "last_reading_at",
                "last_total", "relay_closed", "live", "meter_balance_fen", "purchase_count", "online", "last_seen_at")
_ACCOUNT_READ = ("id", "code", "site_id", "balance_model", "payment_mode", "package_units", "opened_at",
                 "overdraft_fen")


class _MeterState:
    """The columns of one meter that ingest reads and moves, as plain attributes.

    Plain rows, not ORM objects: a batch touches hundreds of meters, and one UPDATE executemany of
    these columns costs a fraction of the unit-of-work flush of as many ORM objects."""

    __slots__ = (*_METER_READ, "touched")

    def __init__(self, row: Any) -> None:
        for name in _METER_READ:
            setattr(self, name, getattr(row, name))
        self.touched = False


class _AccountRow:
    __slots__ = _ACCOUNT_READ

    def __init__(self, row: Any) -> None:
        for name in _ACCOUNT_READ:
            setattr(self, name, getattr(row, name))


async def _lock(session: AsyncSession, meter_ids: set[int]) -> tuple[dict[int, _MeterState], dict[int, _AccountRow]]:
    """Lock the batch's accounts, then its meters, each in id order — the order every writer takes
    (a payment locks its account before its wallet and meter), so ingest and payments queue behind
    each other instead of deadlocking. Two processes ingesting one meter take turns: each bills
    from the baseline the other left. NO KEY UPDATE: rows that merely point at a meter or an account
    (readings, commands) can still be inserted meanwhile."""
    if not meter_ids:
        return {}, {}
    owners = set(await session.scalars(select(Meter.account_id).where(
        Meter.id.in_(meter_ids), Meter.account_id.is_not(None))))
    accounts = await _accounts(session, owners)
    meters = await _lock_meters(session, meter_ids)
    late = {m.account_id for m in meters.values() if m.account_id and m.account_id not in accounts}
    if late:  # an account opened on one of these meters since the first look: rare, lock it too
        accounts.update(await _accounts(session, late))
    return meters, accounts


async def _lock_meters(session: AsyncSession, ids: set[int]) -> dict[int, _MeterState]:
    table = Meter.__table__
    stmt = select(*(table.c[n] for n in _METER_READ)).where(table.c.id.in_(ids)).order_by(table.c.id) \
        .with_for_update(key_share=True)
    return {row.id: _MeterState(row) for row in await session.execute(stmt)}


async def _save_meters(session: AsyncSession, meters: list[_MeterState]) -> None:
    """Write the moved columns of the batch's meters in one statement; ORM copies of them already in
    this session (an account just opened, say) are brought up to date without being marked dirty."""
    if not meters:
        return
    conn = await session.connection()
    if conn.dialect.name == "postgresql":
        await conn.execute(_PG_SAVE_METERS, {"id": [m.id for m in meters], **{
            n: [_pg_value(n, getattr(m, n)) for m in meters] for n in _METER_WRITE}})
    else:
        table = Meter.__table__
        stmt = update(table).where(table.c.id == bindparam("mid")).values(
            {n: bindparam(f"v_{n}") for n in _METER_WRITE})
        await conn.execute(stmt, [{"mid": m.id, **{f"v_{n}": getattr(m, n) for n in _METER_WRITE}} for m in meters])
    by_id = {m.id: m for m in meters}
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Meter) and obj.id in by_id:
            for n in _METER_WRITE:
                set_committed_value(obj, n, getattr(by_id[obj.id], n))


_PG_TYPES = {"base_at": "timestamptz", "base_total": "bigint", "base_rates": "text", "month_key": "text",
             "month_used": "bigint", "flags": "integer", "last_reading_at": "timestamptz", "last_total": "bigint",
             "relay_closed": "boolean", "live": "text", "meter_balance_fen": "bigint", "purchase_count": "integer",
             "online": "boolean", "last_seen_at": "timestamptz"}
_PG_JSON = {"base_rates", "live"}
# One statement for the whole batch on PostgreSQL: the rows' new values as arrays, unnested.
_PG_SAVE_METERS = text(
    "UPDATE meters AS m SET " + ", ".join(
        f"{n} = CAST(v.{n} AS json)" if n in _PG_JSON else f"{n} = v.{n}" for n in _METER_WRITE)
    + " FROM unnest(CAST(:id AS bigint[]), " + ", ".join(f"CAST(:{n} AS {_PG_TYPES[n]}[])" for n in _METER_WRITE)
    + ") AS v(id, " + ", ".join(_METER_WRITE) + ") WHERE m.id = v.id")


def _pg_value(name: str, value: Any) -> Any:
    return json.dumps(value) if name in _PG_JSON and value is not None else value


async def _accounts(session: AsyncSession, ids: set[int]) -> dict[int, _AccountRow]:
    if not ids:
        return {}
    table = Account.__table__
    rows = await session.execute(select(*(table.c[n] for n in _ACCOUNT_READ)).where(table.c.id.in_(ids))
                                 .order_by(table.c.id).with_for_update(key_share=True))
    return {row.id: _AccountRow(row) for row in rows}


async def _load(session: AsyncSession, model: Any, ids: set[int]) -> dict[int, Any]:
    if not ids:
        return {}
    return {row.id: row for row in await session.scalars(select(model).where(model.id.in_(ids)))}


async def _versions(session: AsyncSession, tariff_ids: set[int]) -> dict[int, list[PureVersion]]:
    out: dict[int, list[PureVersion]] = defaultdict(list)
    if tariff_ids:
        for v in await session.scalars(select(TariffVersion).where(TariffVersion.tariff_id.in_(tariff_ids))):
            out[v.tariff_id].append(PureVersion(v.id, v.effective_from, parse_tariff(v.spec)))
    return out


async def _existing(session: AsyncSession, readings: list[ReadingIn], meters: dict[int, Meter]) -> set[tuple[int, int, datetime]]:
    if not readings or not meters:
        return set()
    lo, hi = min(r.taken_at for r in readings), max(r.taken_at for r in readings)
    rows = await session.execute(select(Reading.meter_id, Reading.epoch, Reading.taken_at).where(
        Reading.meter_id.in_(meters.keys()), Reading.taken_at >= lo, Reading.taken_at <= hi))
    return {(a, b, c) for a, b, c in rows}


def _refusal(r: ReadingIn, m: _MeterState | None, accounts: dict[int, _AccountRow]) -> str | None:
    if m is None:
        return f"unknown meter {r.meter_id}"
    if isinstance(r.total, bool) or not isinstance(r.total, int) or r.total < 0:
        return "register value must be a non-negative integer"
    acc = accounts.get(m.account_id) if m.account_id else None
    if acc is not None and r.taken_at < acc.opened_at and m.base_at is not None:
        return f"reading at {r.taken_at.isoformat()} is older than account {acc.code}"
    return None


def _one(batch: _Batch, r: ReadingIn, m: _MeterState, acc: _AccountRow | None, tz: ZoneInfo,
         versions: list[PureVersion], now: datetime) -> IngestResult:
    base = Baseline(m.base_at, m.base_total, tuple(m.base_rates) if m.base_rates else None) \
        if m.base_at is not None and m.base_total is not None else None
    verdict = assess(base, r.taken_at, r.total, r.rates,
                     RegisterLimits(modulus=m.register_modulus, max_rate_per_h=m.max_rate_per_h))
    row: dict[str, Any] = dict(meter_id=m.id, account_id=m.account_id, epoch=m.epoch, taken_at=r.taken_at,
                               total=r.total, rates=list(r.rates) if r.rates else None,
                               verdict=verdict.verdict.value, quantity=0, amount_fen=0, rate_split=None,
                               from_at=None, lines=None, txn_id=None)
    amount = 0
    if verdict.bills and base is not None:
        amount = _price(batch, row, verdict, base, m, acc, tz, versions)
    if verdict.baseline is not None:
        b = verdict.baseline
        m.base_at, m.base_total, m.base_rates = b.taken_at, b.total, list(b.rates) if b.rates else None
    if verdict.verdict.flagged:
        m.flags += 1
    if m.last_reading_at is None or r.taken_at >= m.last_reading_at:
        m.last_reading_at, m.last_total = r.taken_at, r.total
        if r.relay_closed is not None and (m.relay_changed_at is None or r.taken_at > m.relay_changed_at):
            m.relay_closed = r.relay_closed  # a reading taken before a confirmed switch must not undo it
        if r.live is not None:
            m.live = r.live
        if r.meter_balance_fen is not None:
            m.meter_balance_fen = r.meter_balance_fen
        if r.purchase_count is not None:
            m.purchase_count = r.purchase_count
    m.online, m.last_seen_at, m.touched = True, now, True
    batch.readings.append(row)
    return IngestResult(m.id, r.taken_at, verdict=verdict.verdict.value, amount=Money(amount))


def _price(batch: _Batch, row: dict[str, Any], v: Assessment, base: Baseline, m: _MeterState,
           acc: _AccountRow | None, tz: ZoneInfo, versions: list[PureVersion]) -> int:
    month = f"{row['taken_at'].astimezone(tz):%Y-%m}"
    base_month = f"{base.taken_at.astimezone(tz):%Y-%m}"
    used_before = m.month_used if m.month_key == base_month else 0
    row.update(quantity=v.quantity, from_at=base.taken_at)
    if not versions:
        row.update(lines=[], rate_split=[0, 0, 0, 0])
        m.month_key, m.month_used = month, (used_before + v.quantity if month == base_month else 0)
        return 0
    priced = price_interval(versions, base.taken_at, row["taken_at"], v.quantity, tz, used_before, v.rates)
    amount = priced.amount.fen
    if acc is not None and acc.balance_model == "package" and v.quantity:
        free = max(acc.package_units - used_before, 0) if month == base_month else acc.package_units
        chargeable = max(v.quantity - free, 0)
        amount = round_half_up(Decimal(amount * chargeable) / v.quantity)
    row.update(amount_fen=amount, rate_split=list(priced.rates),
               lines=[dict(label=ln.label, quantity=ln.quantity, unit_price=str(ln.unit_price),
                           fen=ln.amount.fen, version_id=ln.version_id) for ln in priced.lines])
    m.month_key, m.month_used = month, priced.month_used_after
    if acc is not None and acc.payment_mode == "prepaid" and m.billing_side == "platform" and amount:
        wallet = wallet_code(acc.id, m.id if acc.balance_model == "per_meter" else None)
        batch.wallet_fen[(m.site_id, wallet, acc.id)] -= amount
        batch.revenue_fen[(m.site_id, revenue_code(m.utility))] += amount
        row["_site"] = m.site_id
    return amount


async def _write(session: AsyncSession, batch: _Batch, now: datetime) -> dict[int, tuple[int, int]]:
    """Write the batch with a handful of bulk statements; changed meters are flushed by the session."""
    txn_ids: dict[int, int] = {}
    moved: dict[int, tuple[int, int]] = {}
    for site_id in {s for s, _ in batch.revenue_fen}:
        txn = LedgerTransaction(site_id=site_id, key=f"usage:{uuid.uuid4().hex}", kind="usage",
                                memo="metered usage", created_at=now)
        session.add(txn)
        await session.flush()
        txn_ids[site_id] = txn.id
    if txn_ids:
        moved = await _post_usage(session, batch, txn_ids)
    for row in batch.readings:
        site = row.pop("_site", None)
        row["txn_id"] = txn_ids.get(site) if site is not None else None
        row["received_at"] = now
    if batch.readings:
        await (await session.connection()).execute(insert(Reading.__table__), batch.readings)
    return moved


async def _post_usage(session: AsyncSession, batch: _Batch, txn_ids: dict[int, int]) -> dict[int, tuple[int, int]]:
    """Post the batch's usage; returns each touched account's wallet total before and after."""
    amounts: dict[tuple[int, str], tuple[int, int | None]] = {}
    for (site, code, acc_id), fen in batch.wallet_fen.items():
        amounts[(site, code)] = (fen, acc_id)
    for (site, code), fen in batch.revenue_fen.items():
        amounts[(site, code)] = (fen, None)
    ids = await _ledger_ids(session, amounts)
    await session.execute(insert(Posting), [
        dict(txn_id=txn_ids[site], ledger_account_id=ids[(site, code)], amount_fen=fen)
        for (site, code), (fen, _) in amounts.items() if fen])
    wallets = {key: v for key, v in amounts.items() if v[1] is not None}  # revenue keeps no cached balance
    new = await _new_balances(session, ids, wallets)
    await add_to_balances(session, {ids[key]: fen for key, (fen, _) in wallets.items()})
    moved: dict[int, tuple[int, int]] = {}
    for (site, code), (fen, acc_id) in wallets.items():
        if acc_id is not None:
            old, cur = moved.get(acc_id, (0, 0))
            moved[acc_id] = (old + new[(site, code)] - fen, cur + new[(site, code)])
    return moved


async def _ledger_ids(session: AsyncSession, amounts: dict[tuple[int, str], tuple[int, int | None]]) -> dict[tuple[int, str], int]:
    codes = {code for _, code in amounts}
    rows = await session.execute(select(LedgerAccount.site_id, LedgerAccount.code, LedgerAccount.id).where(
        LedgerAccount.code.in_(codes)))
    ids = {(s, c): i for s, c, i in rows}
    missing = [k for k in amounts if k not in ids]
    for site, code in missing:
        la = LedgerAccount(site_id=site, code=code, account_id=amounts[(site, code)][1], balance_fen=0)
        session.add(la)
    if missing:
        await session.flush()
        rows = await session.execute(select(LedgerAccount.site_id, LedgerAccount.code, LedgerAccount.id).where(
            LedgerAccount.code.in_(codes)))
        ids = {(s, c): i for s, c, i in rows}
    return ids


async def _new_balances(session: AsyncSession, ids: dict[tuple[int, str], int],
                        amounts: dict[tuple[int, str], tuple[int, int | None]]) -> dict[tuple[int, str], int]:
    rows = await session.execute(select(LedgerAccount.id, LedgerAccount.balance_fen).where(
        LedgerAccount.id.in_(ids.values())).order_by(LedgerAccount.id).with_for_update())
    current = dict(rows.all())
    return {key: current[ids[key]] + fen for key, (fen, _) in amounts.items()}


async def _cutoffs(session: AsyncSession, batch: _Batch, accounts: dict[int, _AccountRow],
                   moved: dict[int, tuple[int, int]], now: datetime) -> None:
    """Queue cut-offs for accounts whose balance crossed their floor in this batch."""
    for acc_id, (old, new) in moved.items():
        acc = accounts[acc_id]
        if acc.balance_model == "per_meter":
            new = await account_balance(session, acc)
            old = new - sum(f for (_, _, a), f in batch.wallet_fen.items() if a == acc_id)
            moved[acc_id] = (old, new)
        if new <= -acc.overdraft_fen and new < old:
            account = await session.get(Account, acc_id)
            assert account is not None
            await relay.apply_credit_rules(session, account, new, now)
