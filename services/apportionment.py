"""Common-area apportionment: a master meter's monthly cost split among its rooms or sub-meters.

Rules (the split itself is billing.apportion: largest remainder, parts add up to the cost):
- The master's usage for a period is the sum of its billed readings (verdict billed or rollover)
  **taken** in the period's local days; its cost is the sum of their `amount_fen` (ingest prices
  a master's readings with its tariff even though no wallet pays them). Readings that carry no
  amount are priced here with the master's tariff (billing.pricing), interval by interval.
- Weights: ratio = the member's configured ratio; area = the room's m² (a sub-meter's room);
  usage = the member's own billed usage in the period (a room: its meters of the master's utility).
- Payer: the occupant of the member's room on the period's last day, else the latest occupant
  in the period (services.occupancy); a sub-meter without a room: its account. A vacant member's
  part is recorded with no account: the property company bears it, nobody is charged for it.
- The first run of a (group, period) is recorded (apportion_runs / apportion_shares) and a
  re-run skips the group, so late readings never re-split a closed month. Deducted parts post
  ``wallet -> revenue:common:<utility>`` keyed ``apportion:<group code>:<period>:<member>``;
  a share falling on a postpaid account is always billed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing import apportion as pure
from billing.ledger import Posting as PurePosting, Transaction, wallet_code
from billing.money import Money
from billing.periods import Period
from billing.pricing import price_interval
from billing.tariffs import TariffVersion as PureVersion, parse_tariff
from services.errors import Conflict, NotFound, ServiceError
from services.fees import cut_off_exhausted
from services.bulk import chunks, core_rows, post_many, write_rows
from services.occupancy import Tenancy, instants, occupant_at_end, site_zone, tenancies
from store.models import (Account, ApportionGroup, ApportionMember, ApportionRun, ApportionShare, AuditEntry,
                          Meter, Reading, Room, TariffVersion)

BILLING_VERDICTS = ("billed", "rollover")


def revenue_for_common(utility: str) -> str:
    return f"revenue:common:{utility}"


def member_key(m: Any) -> str:
    return f"room:{m.room_id}" if m.room_id is not None else f"meter:{m.meter_id}"


async def create_group(session: AsyncSession, site_id: int, spec: dict[str, Any], actor: str) -> ApportionGroup:
    """A group from a JSON-like spec: code, name, master_meter_id, method, collection, members."""
    try:
        method, collection = pure.Method(spec["method"]).value, spec.get("collection", "deduct")
        members = [(m.get("room_id"), m.get("meter_id"), Decimal(str(m.get("ratio", "0")))) for m in spec["members"]]
        code = str(spec["code"])
    except (KeyError, ValueError, ArithmeticError) as ex:
        raise ServiceError(f"invalid apportionment group: {ex}") from ex
    if not code or ":" in code or collection not in ("deduct", "bill") or not members:
        raise ServiceError("group code must be free of ':', collection deduct|bill, and members given")
    if any((r is None) == (m is None) or w < 0 for r, m, w in members):
        raise ServiceError("each member is one room or one meter, with a ratio >= 0")
    master = await session.get(Meter, int(spec["master_meter_id"]))
    if master is None or master.site_id != site_id or not master.is_master:
        raise NotFound("the master must be a master meter of this site")
    if await session.scalar(select(ApportionGroup.id).where(ApportionGroup.site_id == site_id,
                                                            ApportionGroup.code == code)):
        raise Conflict(f"apportionment group {code} already exists")
    group = ApportionGroup(site_id=site_id, code=code, name=str(spec.get("name", code)), master_meter_id=master.id,
                           method=method, collection=collection, active=True)
    session.add(group)
    await session.flush()
    session.add_all([ApportionMember(group_id=group.id, room_id=r, meter_id=m, ratio=w) for r, m, w in members])
    session.add(AuditEntry(actor=actor, site_id=site_id, action="apportion_group.create",
                           object_type="apportion_group", object_id=str(group.id),
                           after=dict(spec, members=[dict(m) for m in spec["members"]])))
    await session.flush()
    return group


async def _usage_by_meter(session: AsyncSession, site_id: int, period: Period, tz) -> dict[int, tuple[int, int]]:
    """(quantity, amount_fen) of each of the site's meters' billed readings taken in the period."""
    start, end = instants(period, tz)
    rows = await core_rows(session,
        select(Reading.meter_id, func.sum(Reading.quantity), func.sum(Reading.amount_fen))
        .join(Meter, Meter.id == Reading.meter_id)
        .where(Meter.site_id == site_id, Reading.verdict.in_(BILLING_VERDICTS),
               Reading.taken_at >= start, Reading.taken_at < end).group_by(Reading.meter_id))
    return {m: (int(q or 0), int(a or 0)) for m, q, a in rows}


async def price_unpriced(session: AsyncSession, master: Meter, period: Period, tz) -> int:
    """Price a master's period with its tariff when its readings carry no amount."""
    if master.tariff_id is None:
        return 0
    versions = [PureVersion(v.id, v.effective_from, parse_tariff(v.spec)) for v in await session.scalars(
        select(TariffVersion).where(TariffVersion.tariff_id == master.tariff_id))]
    start, end = instants(period, tz)
    rows = await session.execute(select(Reading.from_at, Reading.taken_at, Reading.quantity).where(
        Reading.meter_id == master.id, Reading.verdict.in_(BILLING_VERDICTS), Reading.taken_at >= start,
        Reading.taken_at < end).order_by(Reading.taken_at))
    fen, used = 0, 0
    for from_at, taken_at, quantity in rows:
        priced = price_interval(versions, from_at or taken_at, taken_at, int(quantity), tz, used)
        fen, used = fen + priced.amount.fen, priced.month_used_after
    return fen


@dataclass
class ApportionSummary:
    groups: int = 0
    skipped: int = 0
    shares: int = 0
    deducted: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Payer:
    account_id: int | None
    wallet: str | None
    postpaid: bool = False


def _payer(m: Any, meters: dict[int, Any], by_room: dict[int, list[Tenancy]],
           period: Period, models: dict[int, tuple[str, str]]) -> _Payer:
    meter = meters.get(m.meter_id) if m.meter_id is not None else None
    room_id = m.room_id if m.room_id is not None else (meter.room_id if meter is not None else None)
    if room_id is not None:
        t = occupant_at_end(by_room.get(room_id, []), period)
        if t is None:
            return _Payer(None, None)
        own_meter = m.meter_id if m.meter_id in t.meter_ids else None
        return _Payer(t.account_id, t.wallet(own_meter), t.payment_mode == "postpaid")
    if meter is None or meter.account_id is None:
        return _Payer(None, None)
    model, mode = models.get(meter.account_id, ("merged", "prepaid"))
    per_meter = model == "per_meter"
    return _Payer(meter.account_id, wallet_code(meter.account_id, meter.id if per_meter else None), mode == "postpaid")


def _share_txn(key: str, wallet: str, revenue: str, amount: Money, memo: str) -> Transaction:
    return Transaction(key, "apportion", (PurePosting(wallet, -amount), PurePosting(revenue, amount)), memo)


async def run_apportionment(session: AsyncSession, site_id: int, period: Period, actor: str = "system",
                            found: list[Tenancy] | None = None) -> ApportionSummary:
    """Split every active group's cost for `period` once; deduct or leave for the bill."""
    summary = ApportionSummary()
    groups = list(await session.scalars(select(ApportionGroup).where(
        ApportionGroup.site_id == site_id, ApportionGroup.active.is_(True)).order_by(ApportionGroup.id)))
    done = set(await session.scalars(select(ApportionRun.group_id).where(
        ApportionRun.site_id == site_id, ApportionRun.period_start == period.start)))
    todo = [g for g in groups if g.id not in done]
    summary.skipped = len(groups) - len(todo)
    if not todo:
        return summary
    tz = await site_zone(session, site_id)
    found = found if found is not None else await tenancies(session, site_id, period, tz)
    by_room: dict[int, list[Tenancy]] = defaultdict(list)
    for t in found:
        by_room[t.room_id].append(t)
    members: dict[int, list[Any]] = defaultdict(list)
    todo_ids = {g.id for g in todo}
    for m in await core_rows(session, select(
            ApportionMember.group_id, ApportionMember.room_id, ApportionMember.meter_id, ApportionMember.ratio)
            .join(ApportionGroup, ApportionGroup.id == ApportionMember.group_id)
            .where(ApportionGroup.site_id == site_id, ApportionGroup.active.is_(True))
            .order_by(ApportionMember.id)):
        if m.group_id in todo_ids:
            members[m.group_id].append(m)
    meters = {row.id: row for row in (await core_rows(session,
        select(Meter.id, Meter.room_id, Meter.account_id, Meter.utility, Meter.is_master)
        .where(Meter.site_id == site_id))).all()}
    areas = {i: Decimal(a or 0) for i, a in await core_rows(session, select(Room.id, Room.area_m2).where(
        Room.site_id == site_id))}
    usage = await _usage_by_meter(session, site_id, period, tz)
    room_meters: dict[tuple[int, str], list[int]] = defaultdict(list)
    for mid, row in meters.items():
        if row.room_id is not None and not row.is_master:
            room_meters[(row.room_id, row.utility)].append(mid)
    acc_ids = {row.account_id for row in meters.values() if row.account_id is not None and row.room_id is None}
    models = {i: (b, p) for i, b, p in await session.execute(select(
        Account.id, Account.balance_model, Account.payment_mode).where(Account.id.in_(acc_ids)))} if acc_ids else {}
    runs, shares, txns, owners = [], [], [], {}
    for g in todo:
        master = meters[g.master_meter_id]
        qty, cost = usage.get(g.master_meter_id, (0, 0))
        if cost == 0 and qty > 0:
            cost = await price_unpriced(session, await session.get(Meter, g.master_meter_id), period, tz)
        pure_members = []
        for m in members[g.id]:
            meter = meters.get(m.meter_id) if m.meter_id is not None else None
            room_id = m.room_id if m.room_id is not None else (meter.room_id if meter is not None else None)
            used = usage.get(m.meter_id, (0, 0))[0] if m.meter_id is not None else sum(
                usage.get(x, (0, 0))[0] for x in room_meters.get((m.room_id, master.utility), []))
            pure_members.append(pure.Member(member_key(m), Decimal(m.ratio or 0), areas.get(room_id, Decimal(0)) if room_id else Decimal(0), used))
        try:
            parts = pure.apportion(Money(cost), pure_members, pure.Method(g.method))
        except pure.ApportionError as ex:
            summary.errors.append(f"group {g.code}: {ex}")
            continue
        summary.groups += 1
        runs.append(dict(site_id=site_id, group_id=g.id, period_start=period.start, period_end=period.end,
                         quantity=qty, cost_fen=cost))
        revenue = revenue_for_common(master.utility)
        for m, part in zip(members[g.id], parts):
            payer = _payer(m, meters, by_room, period, models)
            key = f"apportion:{g.code}:{period.label}:{part.member_id}"
            collection = "bill" if payer.postpaid else g.collection
            shares.append(dict(group_id=g.id, member_key=part.member_id, account_id=payer.account_id,
                               wallet=payer.wallet, weight=str(part.weight), amount_fen=part.amount.fen,
                               collection=collection, source_key=key))
            if collection == "deduct" and payer.wallet is not None and part.amount:
                txns.append(_share_txn(key, payer.wallet, revenue, part.amount, f"{g.name} {period.label}"))
                owners[payer.wallet] = payer.account_id
    run_ids: dict[int, int] = {}
    for part in chunks(runs):
        rows = await session.execute(insert(ApportionRun).returning(ApportionRun.group_id, ApportionRun.id), list(part))
        run_ids.update(dict(rows.all()))
    for s in shares:
        s["run_id"] = run_ids[s.pop("group_id")]
    await write_rows(session, ApportionShare, shares)
    summary.shares = len(shares)
    posted = set(await post_many(session, site_id, txns, owners, actor))
    summary.deducted = len(posted)
    await cut_off_exhausted(session, {owners[t.postings[0].account] for t in txns if t.key in posted})
    return summary


async def shares_for_bills(session: AsyncSession, site_id: int, period: Period) -> list[dict[str, Any]]:
    """Bill-collected shares of the period that fall on an account, for services.postpaid."""
    rows = await core_rows(session,
        select(ApportionShare.account_id, ApportionShare.amount_fen, ApportionShare.source_key,
               ApportionShare.weight, ApportionGroup.name, Meter.utility)
        .join(ApportionRun, ApportionRun.id == ApportionShare.run_id)
        .join(ApportionGroup, ApportionGroup.id == ApportionRun.group_id)
        .join(Meter, Meter.id == ApportionGroup.master_meter_id)
        .where(ApportionRun.site_id == site_id, ApportionRun.period_start == period.start,
               ApportionShare.collection == "bill", ApportionShare.account_id.is_not(None)))
    return [dict(account_id=a, amount_fen=f, source_key=k, weight=w, group=n, utility=u) for a, f, k, w, n, u in rows]
