"""Pricing one consumption interval: split it where prices change, then price each piece.

Rules (README "Billing rules" repeats them):
- An interval [start, end) is cut at every tariff version change inside it, and — for a tiered
  tariff — at every local month start (the tier counter resets each billing month).
- The interval's quantity is shared among the pieces in proportion to their duration
  (largest remainder, earlier piece first on ties), so the pieces add up exactly.
- Time-of-use: when the meter supplied per-rate register deltas that agree with the total, each
  rate is priced from its register; otherwise a piece is shared among the TOU windows it spans by
  duration. Tiered: a piece is priced on top of what the meter used earlier that month.
- Each line is rounded to fen once, half up; the amount is the sum of the lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from billing.money import Money, total
from billing.split import split_by_weights
from billing.tariffs import (
    RATES,
    Flat,
    LineParts,
    PriceLine,
    TariffVersion,
    Tiered,
    TimeOfUse,
    line_fen,
    next_month,
    tiered_parts,
    version_at,
)

RateQuantities = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class Priced:
    lines: tuple[PriceLine, ...]
    quantity: int
    rates: RateQuantities  # sharp/peak/flat/valley share of the quantity, for reports
    month_used_after: int  # cumulative use in the month of `end`, after this interval

    @property
    def amount(self) -> Money:
        return total([ln.amount for ln in self.lines])

    @property
    def version_ids(self) -> tuple[int, ...]:
        return tuple(sorted({ln.version_id for ln in self.lines if ln.version_id is not None}))


def rates_agree(quantity: int, rates: RateQuantities | None) -> bool:
    """Per-rate deltas are trusted when none is negative and they add up to the total (1% slack)."""
    if rates is None or any(r < 0 for r in rates):
        return False
    return abs(sum(rates) - quantity) <= max(10, quantity // 100)


def price_interval(
    versions: "list[TariffVersion] | tuple[TariffVersion, ...]",
    start: datetime,
    end: datetime,
    quantity: int,
    tz: ZoneInfo,
    month_used_before: int = 0,
    rates: RateQuantities | None = None,
) -> Priced:
    """Price `quantity` base units consumed over [start, end) (aware datetimes)."""
    return price_shape(interval_shape(versions, start, end, tz), quantity, month_used_before, rates)


@dataclass(frozen=True, slots=True)
class Piece:
    """Part of an interval under one tariff version (and, for tiered tariffs, in one local month)."""

    start: datetime
    end: datetime
    version: TariffVersion
    new_month: bool  # a local month begins with this piece: tiers count from zero again
    tou_seconds: tuple[int, ...] | None  # time in each TOU rate (weights when no rate registers)


@dataclass(frozen=True, slots=True)
class IntervalShape:
    """What pricing an interval needs besides its quantity: the same for every meter read at the
    same two instants on the same tariff, so a batch computes it once (`ShapeMemo`)."""

    pieces: tuple[Piece, ...]
    weights: tuple[int, ...]  # each piece's share of the quantity (duration); unused for one piece
    end_new_month: bool  # `end` lies in a later local month than the last piece's month
    start_month: str  # local "YYYY-MM" of start and of end
    end_month: str


def interval_shape(versions: "list[TariffVersion] | tuple[TariffVersion, ...]", start: datetime, end: datetime,
                   tz: ZoneInfo) -> IntervalShape:
    """Cut [start, end) into priced pieces; depends only on the versions, the instants and the zone."""
    if end < start:
        raise ValueError("interval ends before it starts")
    raw = _pieces(versions, start, end, tz)
    weights = [max(int((b - a).total_seconds()), 0) for a, b, _ in raw]
    if sum(weights) == 0:
        weights = [1] + [0] * (len(raw) - 1)
    pieces = []
    prev_month = _month_key(start, tz)
    for i, (a, b, v) in enumerate(raw):
        month = _month_key(a, tz)
        new_month = bool(i) and month != prev_month
        prev_month = month if new_month else prev_month
        seconds = _tou_seconds(v.tariff, a, b, tz) if isinstance(v.tariff, TimeOfUse) else None
        pieces.append(Piece(a, b, v, new_month, seconds))
    end_key = _month_key(end, tz)
    return IntervalShape(tuple(pieces), tuple(weights), end_key != prev_month,
                         "%04d-%02d" % _month_key(start, tz), "%04d-%02d" % end_key)


def price_shape(shape: IntervalShape, quantity: int, month_used_before: int = 0,
                rates: RateQuantities | None = None) -> Priced:
    """Price `quantity` over an interval already cut into pieces (see price_interval)."""
    lines, rate_total, used, _ = price_parts(shape, quantity, month_used_before, rates)
    return Priced(tuple(PriceLine(label, q, price, Money(fen), v) for label, q, price, fen, v in lines),
                  quantity, rate_total, used)


PricedParts = tuple[tuple[LineParts, ...], RateQuantities, int, int]  # lines, rates, month used after, fen


def price_parts(shape: IntervalShape, quantity: int, month_used_before: int = 0,
                rates: RateQuantities | None = None) -> PricedParts:
    """price_shape's result as plain tuples, with the amount in fen: ingest prices hundreds of
    readings per batch, and building a Priced, its PriceLines and their Money cost more than the
    arithmetic. The one implementation of the rules; price_shape wraps it."""
    pieces = shape.pieces
    trusted = rates if rates is not None and rates_agree(quantity, rates) else None
    if len(pieces) == 1:  # the common case: one price, one month — nothing to share out
        lines, split = _price_piece(pieces[0], quantity, month_used_before, trusted)
        used = 0 if shape.end_new_month else month_used_before + quantity
        return lines, split, used, sum(ln[3] for ln in lines)
    shares = split_by_weights(quantity, shape.weights)
    rate_shares = [split_by_weights(r, shape.weights) for r in trusted] if trusted else None
    all_lines: list[LineParts] = []
    rate_total = [0, 0, 0, 0]
    used = month_used_before
    for i, piece in enumerate(pieces):
        if piece.new_month:
            used = 0
        piece_rates = tuple(rs[i] for rs in rate_shares) if rate_shares else None
        lines, split = _price_piece(piece, shares[i], used, piece_rates)
        all_lines += lines
        rate_total = [x + y for x, y in zip(rate_total, split)]
        used += shares[i]
    if shape.end_new_month:
        used = 0
    return tuple(all_lines), tuple(rate_total), used, sum(ln[3] for ln in all_lines)  # type: ignore[return-value]


class ShapeMemo:
    """Interval shapes of one tariff (its versions) in one time zone, keyed by (start, end).

    Pure and bounded: at most `size` shapes, the oldest dropped first. Every meter of a polling
    round is read at the same instants, so a batch of hundreds of meters cuts one interval once;
    each meter's lines are still priced from its own quantity with the same rounding rules."""

    def __init__(self, versions: "list[TariffVersion] | tuple[TariffVersion, ...]", tz: ZoneInfo,
                 size: int = 64) -> None:
        self.versions, self.tz, self.size = tuple(versions), tz, size
        self._shapes: dict[tuple[datetime, datetime], IntervalShape] = {}

    def shape(self, start: datetime, end: datetime) -> IntervalShape:
        key = (start, end)
        found = self._shapes.get(key)
        if found is None:
            found = interval_shape(self.versions, start, end, self.tz)
            if len(self._shapes) >= self.size:
                del self._shapes[next(iter(self._shapes))]
            self._shapes[key] = found
        return found

    def price(self, start: datetime, end: datetime, quantity: int, month_used_before: int = 0,
              rates: RateQuantities | None = None) -> Priced:
        """The same Priced as price_interval(versions, start, end, quantity, tz, ...)."""
        return price_shape(self.shape(start, end), quantity, month_used_before, rates)


def _month_key(at: datetime, tz: ZoneInfo) -> tuple[int, int]:
    local = at.astimezone(tz)
    return local.year, local.month


def _pieces(versions, start: datetime, end: datetime, tz: ZoneInfo) -> list[tuple[datetime, datetime, TariffVersion]]:
    cuts = {v.effective_from for v in versions if start < v.effective_from < end}
    first = version_at(versions, start)
    if isinstance(first.tariff, Tiered) or any(isinstance(v.tariff, Tiered) for v in versions):
        m = next_month(start.astimezone(tz))
        while m.astimezone(tz) < end:
            cuts.add(m.astimezone(start.tzinfo))
            m = next_month(m)
    points = [start, *sorted(cuts), end]
    return [(a, b, version_at(versions, a)) for a, b in zip(points, points[1:])] or [(start, end, first)]


def _price_piece(piece: Piece, qty: int, used: int,
                 rates: tuple[int, ...] | None) -> tuple[tuple[LineParts, ...], RateQuantities]:
    v = piece.version
    t = v.tariff
    if type(t) is Flat:
        return ((("flat", qty, t.price, line_fen(qty, t.price), v.id),), (0, 0, qty, 0))
    if type(t) is Tiered:
        return tuple(tiered_parts(t, used, qty, v.id)), (0, 0, qty, 0)
    assert isinstance(t, TimeOfUse) and piece.tou_seconds is not None
    split = tuple(rates) if rates is not None else tuple(split_by_weights(qty, piece.tou_seconds))
    prices = t.prices
    return tuple((r, q, prices[r], line_fen(q, prices[r]), v.id) for r, q in zip(RATES, split) if q), split  # type: ignore[return-value]


def _tou_seconds(t: TimeOfUse, a: datetime, b: datetime, tz: ZoneInfo) -> tuple[int, ...]:
    """The time [a, b) spends in each rate's windows: the weights that share its quantity."""
    seconds = [0, 0, 0, 0]
    cursor = a.astimezone(tz)
    stop = b.astimezone(tz)
    if cursor >= stop:
        seconds[RATES.index(t.rate_at(cursor))] = 1
    while cursor < stop:
        nxt = min(_next_boundary(t, cursor), stop)
        seconds[RATES.index(t.rate_at(cursor))] += int((nxt - cursor).total_seconds())
        cursor = nxt
    if sum(seconds) == 0:
        seconds[RATES.index(t.rate_at(a.astimezone(tz)))] = 1
    return tuple(seconds)


def _next_boundary(t: TimeOfUse, local: datetime) -> datetime:
    """The next local time after `local` at which some TOU window starts or ends."""
    marks = t.marks
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    now_min = (local - day).total_seconds() / 60
    for m in marks:
        if m > now_min:
            return (day.replace(tzinfo=None) + timedelta(minutes=m)).replace(tzinfo=local.tzinfo)
    return (day.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=local.tzinfo)
