"""Who occupied which room during a period, derived from accounts and their meters.

Rule: an account occupies the rooms of its meters from the local date it was opened (move-in)
up to the local date it was closed (move-out, the leaving day is not occupied). An open account's
rooms come from its meters; a closed account's meters were handed back, so its rooms are found
through the readings it was billed for. Dates are local to the site's time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billing.fees import Occupancy
from billing.ledger import wallet_code
from billing.periods import Period
from store.models import Account, Meter, Reading, Site


@dataclass(frozen=True, slots=True)
class Tenancy:
    """One account in one room, with what the pure fee rules need and where to charge it."""

    account_id: int
    room_id: int
    meter_ids: tuple[int, ...]
    move_in: date
    move_out: date | None
    balance_model: str
    payment_mode: str

    @property
    def occupancy(self) -> Occupancy:
        return Occupancy(str(self.account_id), str(self.room_id), self.move_in, self.move_out)

    def wallet(self, meter_id: int | None = None) -> str:
        """The wallet a deduction for this room comes out of (per-meter accounts: the room's meter)."""
        if self.balance_model != "per_meter":
            return wallet_code(self.account_id)
        return wallet_code(self.account_id, meter_id if meter_id is not None else self.meter_ids[0])

    def occupies(self, day: date) -> bool:
        return self.move_in <= day and (self.move_out is None or day < self.move_out)


async def site_zone(session: AsyncSession, site_id: int) -> ZoneInfo:
    tz = await session.scalar(select(Site.timezone).where(Site.id == site_id))
    return ZoneInfo(tz or "Asia/Shanghai")


def instants(period: Period, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The period's local midnights as aware datetimes: [start, end)."""
    return (datetime.combine(period.start, time(), tzinfo=tz), datetime.combine(period.end, time(), tzinfo=tz))


async def tenancies(session: AsyncSession, site_id: int, period: Period, tz: ZoneInfo) -> list[Tenancy]:
    """Every tenancy that may overlap `period` (the pure rules decide the days)."""
    start, _ = instants(period, tz)
    rows = (await session.execute(
        select(Account.id, Account.state, Account.opened_at, Account.closed_at, Account.balance_model,
               Account.payment_mode, Meter.id, Meter.room_id)
        .join(Meter, Meter.account_id == Account.id)
        .where(Account.site_id == site_id, Account.state == "open", Meter.room_id.is_not(None)))).all()
    closed = (await session.execute(
        select(Account.id, Account.state, Account.opened_at, Account.closed_at, Account.balance_model,
               Account.payment_mode).where(Account.site_id == site_id, Account.state == "closed",
                                           Account.closed_at >= start))).all()
    if closed:
        by_id = {r[0]: r for r in closed}
        used = (await session.execute(
            select(Reading.account_id, Meter.id, Meter.room_id).distinct()
            .join(Meter, Meter.id == Reading.meter_id)
            .where(Reading.account_id.in_(list(by_id)), Meter.room_id.is_not(None)))).all()
        rows += [(*by_id[a][:6], m, r) for a, m, r in used]
    meters: dict[tuple[int, int], list[int]] = {}
    info: dict[int, tuple] = {}
    for acc_id, _state, opened, closed_at, model, mode, meter_id, room_id in rows:
        meters.setdefault((acc_id, room_id), []).append(meter_id)
        info[acc_id] = (opened, closed_at, model, mode)
    out: list[Tenancy] = []
    for (acc_id, room_id), ids in meters.items():
        opened, closed_at, model, mode = info[acc_id]
        move_in = opened.astimezone(tz).date()
        move_out = closed_at.astimezone(tz).date() if closed_at is not None else None
        if move_out is not None and move_out <= move_in:
            continue  # opened and closed on one day: not a night's occupancy
        out.append(Tenancy(acc_id, room_id, tuple(sorted(ids)), move_in, move_out, model, mode))
    return sorted(out, key=lambda t: (t.room_id, t.move_in, t.account_id))


def occupant_at_end(candidates: list[Tenancy], period: Period) -> Tenancy | None:
    """Who answers for a room's period: the occupant on its last day, else the latest one in it."""
    for t in candidates:
        if t.occupies(period.last_day):
            return t
    inside = [t for t in candidates if period.overlap_days(t.move_in, t.move_out or date.max) > 0]
    return max(inside, key=lambda t: t.move_in) if inside else None
