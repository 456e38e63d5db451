"""Daily and monthly usage roll-ups, folded in incrementally from new readings behind a watermark.

Reports read these tables, never the raw readings. A billed (or rollover) reading covers
[from_at, taken_at); when that spans several site-local days its quantity, TOU split and cost
are shared among the days by duration (billing.split.split_by_weights, so parts add up
exactly). A month row is always the sum of its day rows. The watermark row is locked for the
whole fold, so two runs never fold the same reading; re-running folds nothing new.

Reading ids come from a sequence: on PostgreSQL a transaction that took a lower id may commit
after a higher one was folded. Ids skipped over are kept as gap ranges and looked at again on
each run until they appear or are older than GAP_TTL_S (a rolled-back insert never appears).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.split import split_by_weights
from services.uow import in_transaction
from store.models import Meter, Reading, RollupMark, Site, UsageDaily, UsageMonthly
from store.types import utcnow

MARK = "usage"
BILLING_VERDICTS = ("billed", "rollover")
GAP_TTL_S = 900
MAX_GAPS = 500
FIELDS = ("quantity", "sharp", "peak", "flat", "valley", "cost_fen", "readings")
Key = tuple[int, date]  # meter id, local day (or first day of the month)


@dataclass(frozen=True)
class RollupResult:
    folded: int  # billing readings added to the roll-ups
    scanned: int  # new readings looked at past the watermark (any verdict)
    last_id: int
    gaps: int


def day_shares(start: datetime | None, end: datetime, tz: ZoneInfo) -> list[tuple[date, int]]:
    """(local day, seconds of [start, end) in it); a point or missing start is the day of `end`."""
    end_local = end.astimezone(tz)
    if start is None or start >= end:
        return [(end_local.date(), 1)]
    out: list[tuple[date, int]] = []
    cursor = start.astimezone(tz)
    while cursor < end_local:
        midnight = datetime.combine(cursor.date() + timedelta(days=1), datetime.min.time(), tz)
        nxt = min(midnight, end_local)
        seconds = int((nxt.astimezone(timezone.utc) - cursor.astimezone(timezone.utc)).total_seconds())
        out.append((cursor.date(), seconds))
        cursor = nxt
    return out or [(end_local.date(), 1)]


def fold(acc: dict[Key, list[int]], meter_id: int, r: Any, tz: ZoneInfo) -> None:
    """Add one billing reading to per-day sums (`acc[(meter, day)]` = FIELDS values)."""
    shares = day_shares(r.from_at, r.taken_at, tz)
    weights = [s for _, s in shares]
    split = list(r.rate_split or (0, 0, 0, 0))
    columns = [r.quantity, *split[:4], r.amount_fen]
    parts = [split_by_weights(int(v), weights) for v in columns]
    for i, (day, _) in enumerate(shares):
        row = acc.setdefault((meter_id, day), [0] * len(FIELDS))
        for j, p in enumerate(parts):
            row[j] += p[i]
    acc[(meter_id, shares[-1][0])][6] += 1  # counted on the last day it covers


async def _mark(session: AsyncSession) -> RollupMark:
    stmt = select(RollupMark).where(RollupMark.name == MARK).with_for_update()
    mark = await session.scalar(stmt)
    if mark is None:
        session.add(RollupMark(name=MARK, last_id=0, gaps=[], updated_at=utcnow()))
        await session.flush()  # a racing creator loses on the primary key; in_transaction retries
        mark = await session.scalar(stmt)
    assert mark is not None
    return mark


async def _fetch(session: AsyncSession, last_id: int, gaps: list[list[int]], limit: int) -> list[Any]:
    cols = (Reading.id, Reading.meter_id, Reading.verdict, Reading.quantity, Reading.rate_split,
            Reading.amount_fen, Reading.from_at, Reading.taken_at)
    rows = list((await session.execute(select(*cols).where(Reading.id > last_id).order_by(Reading.id).limit(limit))).all())
    if gaps:
        ranges = [and_(Reading.id >= lo, Reading.id <= hi) for lo, hi, _ in gaps]
        rows += list((await session.execute(select(*cols).where(or_(*ranges)))).all())
    return rows


def _new_gaps(old: list[list[int]], last_id: int, ids: set[int], top: int, now_s: int) -> list[list[int]]:
    """Ranges still missing: old gaps minus what arrived (unless aged out), plus holes in (last_id, top]."""
    out: list[list[int]] = []
    for lo, hi, seen in old:
        if now_s - seen <= GAP_TTL_S:
            out += [[a, b, seen] for a, b in _holes(lo, hi, ids)]
    out += [[a, b, now_s] for a, b in _holes(last_id + 1, top, ids)]
    return out[-MAX_GAPS:]


def _holes(lo: int, hi: int, ids: set[int]) -> list[tuple[int, int]]:
    holes: list[tuple[int, int]] = []
    start = None
    for i in range(lo, hi + 1):
        if i in ids:
            if start is not None:
                holes.append((start, i - 1))
                start = None
        elif start is None:
            start = i
    if start is not None:
        holes.append((start, hi))
    return holes


async def _zones(session: AsyncSession, meter_ids: set[int]) -> dict[int, tuple[int, str, ZoneInfo]]:
    rows = await session.execute(select(Meter.id, Meter.site_id, Meter.utility, Site.timezone)
                                 .join(Site, Site.id == Meter.site_id).where(Meter.id.in_(meter_ids)))
    return {mid: (site, utility, ZoneInfo(tz)) for mid, site, utility, tz in rows}


async def roll_up(session: AsyncSession, since_reading_id: int | None = None, limit: int = 20_000) -> RollupResult:
    """Fold up to `limit` new readings into the roll-ups, in the caller's transaction.

    `since_reading_id` moves the watermark forward (never back: that would fold twice); by
    default the stored watermark is used.
    """
    mark = await _mark(session)
    last_id = max(mark.last_id, since_reading_id or 0)
    rows = await _fetch(session, last_id, list(mark.gaps or []), limit)
    ids = {r.id for r in rows}
    top = max((r.id for r in rows if r.id > last_id), default=last_id)
    billing = [r for r in rows if r.verdict in BILLING_VERDICTS]
    zones = await _zones(session, {r.meter_id for r in billing}) if billing else {}
    days: dict[Key, list[int]] = {}
    for r in billing:
        fold(days, r.meter_id, r, zones[r.meter_id][2])
    months: dict[Key, list[int]] = {}
    for (mid, day), vals in days.items():
        row = months.setdefault((mid, day.replace(day=1)), [0] * len(FIELDS))
        for j, v in enumerate(vals):
            row[j] += v
    await _upsert(session, UsageDaily, UsageDaily.day, days, zones)
    await _upsert(session, UsageMonthly, UsageMonthly.month, months, zones)
    mark.gaps = _new_gaps(list(mark.gaps or []), last_id, ids, top, int(time.time()))
    mark.last_id, mark.updated_at = top, utcnow()
    await session.flush()
    return RollupResult(len(billing), sum(1 for r in rows if r.id > last_id), top, len(mark.gaps))


async def _upsert(session: AsyncSession, model: Any, period_col: Any, sums: dict[Key, list[int]],
                  zones: dict[int, tuple[int, str, ZoneInfo]]) -> None:
    """Add `sums` onto existing rows (one UPDATE per row batch) and insert the rest."""
    if not sums:
        return
    by_meter: dict[int, set[date]] = defaultdict(set)
    for mid, period in sums:
        by_meter[mid].add(period)
    existing: dict[Key, Any] = {}
    periods = {p for ps in by_meter.values() for p in ps}
    for chunk in _chunks(sorted(by_meter), 500):
        stmt = select(model.id, model.meter_id, period_col, *[getattr(model, f) for f in FIELDS]).where(
            model.meter_id.in_(chunk), period_col >= min(periods), period_col <= max(periods))
        for row in await session.execute(stmt):
            existing[(row[1], row[2])] = row
    updates, inserts = [], []
    name = period_col.key
    for key, vals in sums.items():
        old = existing.get(key)
        if old is not None:
            updates.append({"id": old[0], **{f: old[3 + j] + vals[j] for j, f in enumerate(FIELDS)}})
        else:
            site, utility, _ = zones[key[0]]
            inserts.append({"meter_id": key[0], "site_id": site, "utility": utility, name: key[1],
                            **dict(zip(FIELDS, vals))})
    if updates:
        await session.execute(update(model), updates)
    if inserts:
        await session.execute(insert(model), inserts)


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


async def roll_up_all(sessions: async_sessionmaker[AsyncSession], limit: int = 20_000) -> int:
    """The job: fold everything new, one transaction per `limit` readings; returns readings folded."""
    folded = 0
    while True:
        res = await in_transaction(sessions, lambda s: roll_up(s, limit=limit))
        folded += res.folded
        if res.scanned < limit:
            return folded
