"""Custom fee items (rent, property fee, service fee...) and the charges they raise per period.

Rules:
- An item is priced either as a fixed amount per item-period or as a Decimal rate in yuan per m²
  of room area per item-period. Periodic items recur monthly, quarterly or yearly on calendar
  periods (see billing.periods) and fall due on ``day_of_period`` (1-based, clamped to the
  period's last day). A one-time item is charged once, in full, to whoever occupies the room on
  its ``starts_on`` day.
- Active window: from ``starts_on`` to ``ends_on`` **inclusive** (``None`` = open-ended).
  Occupancy: from ``move_in`` (occupied) to ``move_out`` (the leaving day, **not** occupied, as
  with hotel nights; ``None`` = still living there).
- Proration: days charged = days of the item-period that are both occupied and inside the active
  window. Amount = full amount x days charged / days in the item-period, computed exactly and
  rounded **once per line, half up** (billing.money.round_half_up). Items with ``prorate=False``
  charge the full amount when at least one day is chargeable. Zero-fen lines are not raised.
- Which run charges what: an item-period is charged by the run whose period contains its due
  date, the due date being moved into the chargeable days (a mid-period move-in falls due on the
  move-in day; a leaver's last period on the last day occupied). Runs that partition time
  therefore charge each item-period exactly once.
- Idempotency: a charge's key is ``fee:<item>:<room>:<account>:<item-period label>`` (``:once``
  for one-time items); the ledger refuses a second posting with the same key, so re-running a
  period never charges twice.

Worked example (checked in tests): rent 1500.00 yuan/month, tenant moves in on 15 March 2026.
March has 31 days, 15..31 March is 17 days: 150000 fen x 17 / 31 = 82258.06 -> 82258 fen, due
15 March, key ``fee:rent:R101:A1:2026-03-01/2026-04-01``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import Enum

from billing.money import FEN_PER_YUAN, Money, round_half_up
from billing.periods import Frequency, Period, day_of_period, periods_overlapping


class FeeError(ValueError):
    """Raised for a fee item or occupancy that cannot be priced."""


class Basis(Enum):
    """What the item's price is multiplied by."""

    FIXED = "fixed"
    PER_M2 = "per_m2"


class Recurrence(Enum):
    """How often the item is charged."""

    ONE_TIME = "one_time"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    YEARLY = "yearly"


class Collection(Enum):
    """How the money is collected: taken from the prepaid wallet, or put on a (dunning) bill."""

    DEDUCT = "deduct"
    BILL = "bill"


_FREQUENCY: dict[Recurrence, Frequency] = {
    Recurrence.MONTHLY: Frequency.MONTHLY,
    Recurrence.QUARTERLY: Frequency.QUARTERLY,
    Recurrence.YEARLY: Frequency.YEARLY,
}


@dataclass(frozen=True, slots=True)
class FeeItem:
    """One configured fee: what it is called, how it is priced, when and how it is collected."""

    code: str
    name: str
    basis: Basis
    recurrence: Recurrence
    starts_on: date
    amount: Money = Money(0)
    rate_per_m2: Decimal = Decimal(0)
    day_of_period: int = 1
    ends_on: date | None = None
    collection: Collection = Collection.DEDUCT
    prorate: bool = True

    def __post_init__(self) -> None:
        if not self.code or ":" in self.code:
            raise FeeError(f"fee code must be non-empty and free of ':': {self.code!r}")
        if self.amount.is_negative or self.rate_per_m2 < 0:
            raise FeeError(f"fee {self.code}: price must not be negative")
        if self.ends_on is not None and self.ends_on < self.starts_on:
            raise FeeError(f"fee {self.code}: ends before it starts")
        if self.day_of_period < 1:
            raise FeeError(f"fee {self.code}: day_of_period counts from 1")


@dataclass(frozen=True, slots=True)
class Occupancy:
    """Who lives in which room, from ``move_in`` up to (not including) ``move_out``."""

    account_id: str
    room_id: str
    move_in: date
    move_out: date | None = None

    def __post_init__(self) -> None:
        if self.move_out is not None and self.move_out <= self.move_in:
            raise FeeError(f"occupancy {self.account_id}/{self.room_id}: moves out before in")


@dataclass(frozen=True, slots=True)
class FeeCharge:
    """One line to deduct or bill; ``key`` is its idempotency key."""

    key: str
    item_code: str
    account_id: str
    room_id: str
    period: Period
    due_on: date
    amount: Money
    days_charged: int
    days_in_period: int
    collection: Collection
    description: str


_OPEN_END = date.max


def _occupied_window(item: FeeItem, occupancy: Occupancy) -> tuple[date, date]:
    """Half-open range of days both active and occupied (may be empty)."""
    item_end = _OPEN_END if item.ends_on is None else item.ends_on + timedelta(days=1)
    occupancy_end = _OPEN_END if occupancy.move_out is None else occupancy.move_out
    return max(item.starts_on, occupancy.move_in), min(item_end, occupancy_end)


def full_amount_fen(item: FeeItem, room_area_m2: Decimal | None) -> Decimal:
    """The unrounded amount for one whole item-period, in fen."""
    if item.basis is Basis.FIXED:
        return Decimal(item.amount.fen)
    if room_area_m2 is None or room_area_m2 < 0:
        raise FeeError(f"fee {item.code} is priced per m2 and needs a room area: {room_area_m2}")
    return item.rate_per_m2 * room_area_m2 * FEN_PER_YUAN


def _prorated(full_fen: Decimal, days: int, period_days: int, prorate: bool) -> Money:
    if not prorate:
        return Money(round_half_up(full_fen))
    return Money(round_half_up(full_fen * days / period_days))


def _charge_key(item: FeeItem, occupancy: Occupancy, suffix: str) -> str:
    return f"fee:{item.code}:{occupancy.room_id}:{occupancy.account_id}:{suffix}"


def _periodic_charge(
    item: FeeItem, full_fen: Decimal, occupancy: Occupancy, item_period: Period, run: Period
) -> FeeCharge | None:
    first, end = _occupied_window(item, occupancy)
    days = item_period.overlap_days(first, end)
    if days == 0:
        return None
    lo, hi = max(first, item_period.start), min(end, item_period.end) - timedelta(days=1)
    due = min(max(day_of_period(item_period, item.day_of_period), lo), hi)
    amount = _prorated(full_fen, days, item_period.days, item.prorate)
    if not run.contains(due) or not amount:
        return None
    description = f"{item.name} {lo.isoformat()}..{hi.isoformat()} ({days}/{item_period.days} days)"
    return FeeCharge(
        _charge_key(item, occupancy, item_period.label), item.code, occupancy.account_id,
        occupancy.room_id, item_period, due, amount, days, item_period.days, item.collection,
        description,
    )


def _one_time_charge(
    item: FeeItem, full_fen: Decimal, occupancy: Occupancy, run: Period
) -> FeeCharge | None:
    first, end = _occupied_window(item, occupancy)
    day = item.starts_on
    amount = Money(round_half_up(full_fen))
    if not (first <= day < end and run.contains(day)) or not amount:
        return None
    return FeeCharge(
        _charge_key(item, occupancy, "once"), item.code, occupancy.account_id,
        occupancy.room_id, Period(day, day + timedelta(days=1)), day, amount, 1, 1,
        item.collection, f"{item.name} {day.isoformat()}",
    )


def charges_for_period(
    item: FeeItem, room_area_m2: Decimal | None, occupancy: Occupancy, period: Period
) -> list[FeeCharge]:
    """The charges the run for ``period`` raises for one item on one occupied room."""
    full_fen = full_amount_fen(item, room_area_m2)
    if item.recurrence is Recurrence.ONE_TIME:
        once = _one_time_charge(item, full_fen, occupancy, period)
        return [] if once is None else [once]
    # A due date always lies inside its item-period, so only item-periods overlapping the
    # run can fall due in it.
    found = (
        _periodic_charge(item, full_fen, occupancy, p, period)
        for p in periods_overlapping(period, _FREQUENCY[item.recurrence])
    )
    return [c for c in found if c is not None]
