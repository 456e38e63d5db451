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
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from billing.ledger import revenue_code, wallet_code
from billing.money import Money, round_half_up
from billing.pricing import ShapeMemo, price_parts
from billing.readings import BILLING, FLAGGED, Assessment, Baseline, RegisterLimits, Verdict, assess
from billing.tariffs import Tariff, TariffVersion as PureVersion, parse_tariff
from services import alerting, relay
from services.ingest_store import Store, lines_json, store_for
from services.wallets import account_balance
from store.models import Account, Meter
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


class IngestResult(NamedTuple):  # a tuple: one per reading, and frozen dataclasses are slow to build
    meter_id: int
    taken_at: datetime
    verdict: str | None = None
    amount: Money = Money(0)
    error: str | None = None


async def ingest(session: AsyncSession, readings: list[ReadingIn], now: datetime | None = None) -> list[IngestResult]:
    """Bill a batch of readings (any order, duplicates welcome); returns one result per reading."""
    now = now or utcnow()
    naive = [r for r in readings if r.taken_at.tzinfo is None]
    readings = [r for r in readings if r.taken_at.tzinfo is not None]
    store = await store_for(session)
    meters, accounts = await _lock(store, {r.meter_id for r in readings})
    sites = await _sites(store, {m.site_id for m in meters.values()})
    versions = await _versions(store, {m.tariff_id for m in meters.values() if m.tariff_id})
    seen = await store.existing(list({(m.id, m.epoch, r.taken_at) for r in readings
                                      if (m := meters.get(r.meter_id)) is not None and _may_be_stored(r, m)}))
    batch = _Batch(store, now)
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
        results.append(_one(batch, r, m, acc, batch.pricer(m, sites, versions)))
    await _save_meters(session, store, [m for m in meters.values() if m.touched], now)
    moved = await _write(store, batch, now)
    await _cutoffs(session, batch, accounts, moved, now)
    await alerting.after_balance_changes(session, moved, now, accounts, sites)
    return results


_METER_READ = ("id", "site_id", "account_id", "utility", "billing_side", "tariff_id", "epoch", "base_at",
               "base_total", "base_rates", "month_key", "month_used", "flags", "last_reading_at",
               "relay_changed_at", "register_modulus", "max_rate_per_h")
_ACCOUNT_READ = ("id", "code", "site_id", "balance_model", "payment_mode", "package_units", "opened_at",
                 "overdraft_fen", "tenant_id", "state", "alert_state", "alert_settings")  # the last four: for alerts
# What a reading may move on its meter, by group: a batch writes only the groups its readings moved
# (one statement per distinct set), so live values, relay and purchase counter are not rewritten
# for every plain energy reading.
_GROUPS = (("base_at", "base_total", "base_rates"), ("month_key", "month_used"), ("flags",),
           ("last_reading_at", "last_total"), ("relay_closed",), ("live",), ("meter_balance_fen",),
           ("purchase_count",))
BASE, MONTH, FLAGS, LAST, RELAY, LIVE, BALANCE, PURCHASE = (1 << i for i in range(len(_GROUPS)))
_ALWAYS = ("online", "last_seen_at")
_TYPES = {"base_at": "timestamptz", "base_total": "bigint", "base_rates": "json", "month_key": "text",
          "month_used": "bigint", "flags": "integer", "last_reading_at": "timestamptz", "last_total": "bigint",
          "relay_closed": "boolean", "live": "json", "meter_balance_fen": "bigint", "purchase_count": "integer",
          "online": "boolean", "last_seen_at": "timestamptz"}
_READING_COLUMNS = ("meter_id", "account_id", "epoch", "taken_at", "received_at", "total", "rates", "verdict",
                    "quantity", "rate_split", "amount_fen", "from_at", "lines", "txn_id")


class _MeterState:
    """The columns of one meter that ingest reads and moves, as plain attributes.

    Plain rows, not ORM objects: a batch touches hundreds of meters, and one UPDATE of the moved
    columns costs a fraction of the unit-of-work flush of as many ORM objects. `moved` is a set of
    _GROUPS bits; the columns of groups not moved are neither read nor written."""

    __slots__ = (*_METER_READ, "last_total", "relay_closed", "live", "meter_balance_fen", "purchase_count",
                 "moved", "touched")

    def __init__(self, row: Any, store: Store) -> None:
        (self.id, self.site_id, self.account_id, self.utility, self.billing_side, self.tariff_id, self.epoch,
         base_at, self.base_total, base_rates, self.month_key, self.month_used, self.flags, last_reading_at,
         relay_changed_at, self.register_modulus, self.max_rate_per_h) = row
        self.base_at, self.last_reading_at = store.when(base_at), store.when(last_reading_at)
        self.relay_changed_at = store.when(relay_changed_at)
        self.base_rates = store.js(base_rates) if base_rates is not None else None
        self.moved, self.touched = 0, False


class _AccountRow:
    __slots__ = _ACCOUNT_READ

    def __init__(self, row: Any, store: Store) -> None:
        (self.id, self.code, self.site_id, self.balance_model, self.payment_mode, self.package_units,
         opened_at, self.overdraft_fen, self.tenant_id, self.state, alert_state, alert_settings) = row
        self.opened_at = store.when(opened_at)
        self.alert_state = store.js(alert_state) if alert_state is not None else None
        self.alert_settings = store.js(alert_settings) if alert_settings is not None else None


class _Batch:
    """A batch's reading rows and money, and what pricing may share across its meters."""

    def __init__(self, store: Store, now: datetime) -> None:
        self.store, self.now = store, now
        self.received_at = store.dt(now)
        self.readings: list[list[Any]] = []
        self.wallet_fen: dict[tuple[int, int, int | None], int] = defaultdict(int)  # (site, account, meter or None)
        self.revenue_fen: dict[tuple[int, str], int] = defaultdict(int)  # (site, utility)
        self._pricers: dict[tuple[int, int | None], _Pricer] = {}
        self._limits: dict[tuple[int, int], RegisterLimits] = {}

    def pricer(self, m: _MeterState, sites: dict[int, Any], versions: dict[int, list[PureVersion]]) -> _Pricer:
        key = (m.site_id, m.tariff_id)
        found = self._pricers.get(key)
        if found is None:
            tz = ZoneInfo(sites[m.site_id].timezone)
            found = self._pricers[key] = _Pricer(tz, versions.get(m.tariff_id or -1, []))
        return found

    def limits(self, m: _MeterState) -> RegisterLimits:
        key = (m.register_modulus, m.max_rate_per_h)
        found = self._limits.get(key)
        if found is None:
            found = self._limits[key] = RegisterLimits(modulus=key[0], max_rate_per_h=key[1])
        return found


class _Pricer:
    """One tariff in one site's time zone for one batch: interval shapes and local months memoised."""

    __slots__ = ("tz", "versions", "memo", "_months")

    def __init__(self, tz: ZoneInfo, versions: list[PureVersion]) -> None:
        self.tz, self.versions = tz, versions
        self.memo = ShapeMemo(versions, tz) if versions else None
        self._months: dict[datetime, str] = {}

    def month(self, at: datetime) -> str:
        found = self._months.get(at)
        if found is None:
            found = self._months[at] = f"{at.astimezone(self.tz):%Y-%m}"
        return found


async def _lock(store: Store, meter_ids: set[int]) -> tuple[dict[int, _MeterState], dict[int, _AccountRow]]:
    """Lock the batch's accounts, then its meters, each in id order — the order every writer takes
    (a payment locks its account before its wallet and meter), so ingest and payments queue behind
    each other instead of deadlocking. Two processes ingesting one meter take turns: each bills
    from the baseline the other left. NO KEY UPDATE: rows that merely point at a meter or an account
    (readings, commands) can still be inserted meanwhile."""
    if not meter_ids:
        return {}, {}
    accounts = await _accounts(store, sorted(meter_ids), "(SELECT account_id FROM meters WHERE id IN :values)")
    rows = await store.rows(f"SELECT {', '.join(_METER_READ)} FROM meters WHERE id IN :values ORDER BY id"
                            f"{store.lock}", sorted(meter_ids))
    meters = {row[0]: _MeterState(row, store) for row in rows}
    late = {m.account_id for m in meters.values() if m.account_id and m.account_id not in accounts}
    if late:  # an account opened on one of these meters since the first look: rare, lock it too
        accounts.update(await _accounts(store, sorted(late)))
    return meters, accounts


async def _accounts(store: Store, values: list[int], ids: str = ":values") -> dict[int, _AccountRow]:
    """The accounts whose id is IN `ids` (the list `values` by default), locked in id order."""
    rows = await store.rows(f"SELECT {', '.join(_ACCOUNT_READ)} FROM accounts WHERE id IN {ids} ORDER BY id"
                            f"{store.lock}", values)
    return {row[0]: _AccountRow(row, store) for row in rows}


async def _save_meters(session: AsyncSession, store: Store, meters: list[_MeterState], now: datetime) -> None:
    """Write the moved columns of the batch's meters, one statement per distinct set of moved groups;
    ORM copies of them already in this session are brought up to date without being marked dirty."""
    by_mask: dict[int, list[_MeterState]] = defaultdict(list)
    for m in meters:
        by_mask[m.moved].append(m)
    seen_at = store.dt(now)
    for mask, group in by_mask.items():
        columns = [c for i, cols in enumerate(_GROUPS) if mask & (1 << i) for c in cols]
        convert = [(i, _converter(store, c)) for i, c in enumerate(columns) if _TYPES[c] in ("timestamptz", "json")]
        rows = []
        for m in group:
            values = [getattr(m, c) for c in columns]
            for i, fn in convert:
                if values[i] is not None:
                    values[i] = fn(values[i])
            rows.append((m.id, *values, True, seen_at))
        await store.update_many("meters", columns + list(_ALWAYS), _TYPES, rows)
    by_id = {m.id: m for m in meters}
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Meter) and obj.id in by_id:
            m = by_id[obj.id]
            for i, cols in enumerate(_GROUPS):
                if m.moved & (1 << i):
                    for c in cols:
                        set_committed_value(obj, c, getattr(m, c))
            set_committed_value(obj, "online", True)
            set_committed_value(obj, "last_seen_at", now)


def _converter(store: Store, column: str) -> Any:
    """How a column's value goes to the driver: datetimes by the store, JSON as text."""
    return store.dt if _TYPES[column] == "timestamptz" else json.dumps


class _SiteRow:
    """The site columns ingest (time zone) and alerting (id, settings) read."""

    __slots__ = ("id", "timezone", "settings")

    def __init__(self, row: Any, store: Store) -> None:
        self.id, self.timezone, settings = row
        self.settings = store.js(settings) if settings is not None else {}


async def _sites(store: Store, ids: set[int]) -> dict[int, _SiteRow]:
    if not ids:
        return {}
    return {row[0]: _SiteRow(row, store) for row in await store.rows(
        "SELECT id, timezone, settings FROM sites WHERE id IN :values", sorted(ids))}


_TARIFFS: dict[str, Tariff] = {}  # parsed specs by their JSON text: a version never changes


async def _versions(store: Store, tariff_ids: set[int]) -> dict[int, list[PureVersion]]:
    out: dict[int, list[PureVersion]] = defaultdict(list)
    if not tariff_ids:
        return out
    for tariff_id, version_id, effective_from, spec in await store.rows(
            "SELECT tariff_id, id, effective_from, CAST(spec AS TEXT) FROM tariff_versions WHERE tariff_id IN :values",
            sorted(tariff_ids)):
        tariff = _TARIFFS.get(spec)
        if tariff is None:
            if len(_TARIFFS) > 1024:
                _TARIFFS.clear()
            tariff = _TARIFFS[spec] = parse_tariff(json.loads(spec))
        out[tariff_id].append(PureVersion(version_id, store.when(effective_from), tariff))
    return out


def _may_be_stored(r: ReadingIn, m: _MeterState) -> bool:
    """Only a reading no newer than its meter's last can be stored already: `last_reading_at` is the
    newest stored reading of the meter's epoch (ingest only moves it forward, a replacement starts
    the new epoch at its base reading) and the meter row is locked. Usually none is probed; the
    unique index stays the last word."""
    return m.last_reading_at is None or r.taken_at <= m.last_reading_at


def _refusal(r: ReadingIn, m: _MeterState | None, accounts: dict[int, _AccountRow]) -> str | None:
    if m is None:
        return f"unknown meter {r.meter_id}"
    if isinstance(r.total, bool) or not isinstance(r.total, int) or r.total < 0:
        return "register value must be a non-negative integer"
    acc = accounts.get(m.account_id) if m.account_id else None
    if acc is not None and r.taken_at < acc.opened_at and m.base_at is not None:
        return f"reading at {r.taken_at.isoformat()} is older than account {acc.code}"
    return None


_VERDICTS = {v: v.value for v in Verdict}


def _one(batch: _Batch, r: ReadingIn, m: _MeterState, acc: _AccountRow | None, pricer: _Pricer) -> IngestResult:
    base = Baseline(m.base_at, m.base_total, tuple(m.base_rates) if m.base_rates else None) \
        if m.base_at is not None and m.base_total is not None else None
    verdict = assess(base, r.taken_at, r.total, r.rates, batch.limits(m))
    store = batch.store
    # the row in _READING_COLUMNS order; quantity, rate_split, amount, from_at, lines, txn filled when billed
    value = _VERDICTS[verdict.verdict]
    row: list[Any] = [m.id, m.account_id, m.epoch, store.dt(r.taken_at), batch.received_at, r.total,
                      json.dumps(list(r.rates)) if r.rates else None, value, 0, None, 0, None, None, None]
    amount = 0
    if verdict.verdict in BILLING and base is not None:
        amount = _price(batch, row, r.taken_at, verdict, base, m, acc, pricer)
        m.moved |= MONTH
    if verdict.baseline is not None:
        b = verdict.baseline
        m.base_at, m.base_total, m.base_rates = b.taken_at, b.total, list(b.rates) if b.rates else None
        m.moved |= BASE
    if verdict.verdict in FLAGGED:
        m.flags += 1
        m.moved |= FLAGS
    if m.last_reading_at is None or r.taken_at >= m.last_reading_at:
        m.last_reading_at, m.last_total = r.taken_at, r.total
        m.moved |= LAST
        if r.relay_closed is not None and (m.relay_changed_at is None or r.taken_at > m.relay_changed_at):
            m.relay_closed = r.relay_closed  # a reading taken before a confirmed switch must not undo it
            m.moved |= RELAY
        if r.live is not None:
            m.live = r.live
            m.moved |= LIVE
        if r.meter_balance_fen is not None:
            m.meter_balance_fen = r.meter_balance_fen
            m.moved |= BALANCE
        if r.purchase_count is not None:
            m.purchase_count = r.purchase_count
            m.moved |= PURCHASE
    m.touched = True
    batch.readings.append(row)
    return IngestResult(m.id, r.taken_at, value, Money(amount))


def _price(batch: _Batch, row: list[Any], taken_at: datetime, v: Assessment, base: Baseline, m: _MeterState,
           acc: _AccountRow | None, pricer: _Pricer) -> int:
    row[8], row[11] = v.quantity, batch.store.dt(base.taken_at)
    if pricer.memo is None:
        month, base_month = pricer.month(taken_at), pricer.month(base.taken_at)
        used_before = m.month_used if m.month_key == base_month else 0
        row[9], row[12] = "[0, 0, 0, 0]", "[]"
        m.month_key, m.month_used = month, (used_before + v.quantity if month == base_month else 0)
        return 0
    shape = pricer.memo.shape(base.taken_at, taken_at)
    used_before = m.month_used if m.month_key == shape.start_month else 0
    lines, split, month_used_after, amount = price_parts(shape, v.quantity, used_before, v.rates)
    if acc is not None and acc.balance_model == "package" and v.quantity:
        free = max(acc.package_units - used_before, 0) if shape.end_month == shape.start_month else acc.package_units
        chargeable = max(v.quantity - free, 0)
        amount = round_half_up(Decimal(amount * chargeable) / v.quantity)
    row[9], row[10], row[12] = "[%d, %d, %d, %d]" % split, amount, lines_json(lines)
    m.month_key, m.month_used = shape.end_month, month_used_after
    if acc is not None and acc.payment_mode == "prepaid" and m.billing_side == "platform" and amount:
        batch.wallet_fen[(m.site_id, acc.id, m.id if acc.balance_model == "per_meter" else None)] -= amount
        batch.revenue_fen[(m.site_id, m.utility)] += amount  # ledger codes are made per batch, in _write
        row[13] = m.site_id  # the site's usage transaction id replaces it in _write
    return amount


async def _write(store: Store, batch: _Batch, now: datetime) -> dict[int, tuple[int, int]]:
    """Write the batch: one usage transaction per site, its postings, balances, the reading rows."""
    txn_ids: dict[int, int] = {}
    revenue: dict[tuple[int, str], int] = {}
    revenue_fen = {(site, revenue_code(utility)): fen for (site, utility), fen in batch.revenue_fen.items()}
    for site_id in sorted({s for s, _ in revenue_fen}):
        codes = sorted(c for s, c in revenue_fen if s == site_id)
        txn_ids[site_id], found = await store.usage_txn(site_id, f"usage:{uuid.uuid4().hex}", now, codes)
        revenue.update({(site_id, c): i for c, i in found.items()})
    wallets = {(site, wallet_code(acc_id, meter_id)): (fen, acc_id)
               for (site, acc_id, meter_id), fen in batch.wallet_fen.items()}
    moved = await _post_usage(store, wallets, revenue_fen, txn_ids, revenue) if txn_ids else {}
    for row in batch.readings:
        if row[13] is not None:
            row[13] = txn_ids[row[13]]
    await store.insert("readings", _READING_COLUMNS, [tuple(r) for r in batch.readings])
    return moved


async def _post_usage(store: Store, wallets: dict[tuple[int, str], tuple[int, int]],
                      revenue_fen: dict[tuple[int, str], int], txn_ids: dict[int, int],
                      revenue: dict[tuple[int, str], int]) -> dict[int, tuple[int, int]]:
    """Post the batch's usage (wallets: (site, code) -> (fen, account); revenue_fen: (site, code) -> fen);
    returns each touched account's wallet total before and after.
    The wallets are locked in id order (after accounts and meters); revenue keeps no cached balance."""
    current = await store.lock_ledger(sorted(wallets))
    missing = [key for key in wallets if key not in current]
    if missing:
        await _create_ledger(store, [(*key, wallets[key][1]) for key in missing])
        current.update(await store.lock_ledger(missing))
    missing = [key for key in revenue_fen if key not in revenue]
    if missing:
        await _create_ledger(store, [(*key, None) for key in missing])
        revenue.update({key: i for key, (i, _) in (await store.lock_ledger(missing)).items()})
    await store.insert("ledger_postings", ("txn_id", "ledger_account_id", "amount_fen"), [
        *((txn_ids[site], current[(site, code)][0], fen) for (site, code), (fen, _) in wallets.items() if fen),
        *((txn_ids[site], revenue[(site, code)], fen) for (site, code), fen in revenue_fen.items() if fen)])
    new = {key: current[key][1] + fen for key, (fen, _) in wallets.items()}
    await store.update_many("ledger_accounts", ("balance_fen",), {"balance_fen": "bigint"},
                            sorted((current[key][0], bal) for key, bal in new.items() if wallets[key][0]))
    moved: dict[int, tuple[int, int]] = {}
    for key, (fen, acc_id) in wallets.items():
        if acc_id is not None:
            old, cur = moved.get(acc_id, (0, 0))
            moved[acc_id] = (old + new[key] - fen, cur + new[key])
    return moved


async def _create_ledger(store: Store, rows: list[tuple[int, str, int | None]]) -> None:
    """New ledger accounts (site, code, account) at zero; a concurrent creator makes this a retried race."""
    await store.insert("ledger_accounts", ("site_id", "code", "account_id", "meter_id", "balance_fen"),
                       [(site, code, acc_id, None, 0) for site, code, acc_id in rows])


async def _cutoffs(session: AsyncSession, batch: _Batch, accounts: dict[int, _AccountRow],
                   moved: dict[int, tuple[int, int]], now: datetime) -> None:
    """Queue cut-offs for accounts whose balance crossed their floor in this batch."""
    for acc_id, (old, new) in moved.items():
        acc = accounts[acc_id]
        if acc.balance_model == "per_meter":
            new = await account_balance(session, acc)
            old = new - sum(f for (_, a, _), f in batch.wallet_fen.items() if a == acc_id)
            moved[acc_id] = (old, new)
        if new <= -acc.overdraft_fen and new < old:
            account = await session.get(Account, acc_id)
            assert account is not None
            await relay.apply_credit_rules(session, account, new, now)
