"""Interval shapes memoised per batch price exactly like the unmemoised pricing of before.

The oracle below is billing.pricing as it was before shapes existed (a verbatim copy, renamed):
the memo may only change how often an interval is cut, never a line, a rounding or a tier.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.pricing import Priced, RateQuantities, ShapeMemo, price_interval, price_parts, rates_agree
from billing.split import split_by_weights
from billing.tariffs import (RATES, Flat, PriceLine, TariffVersion, Tiered, TimeOfUse, line, next_month,
                             parse_tariff, tiered_lines, version_at)

ZONES = [ZoneInfo("Asia/Shanghai"), ZoneInfo("UTC"), ZoneInfo("America/New_York")]
T0 = datetime(2026, 1, 20, tzinfo=timezone.utc)
SPECS = [
    {"kind": "flat", "price": "0.85"},
    {"kind": "flat", "price": "1.005"},
    {"kind": "tou", "prices": {"sharp": "1.35", "peak": "1.10", "flat": "0.75", "valley": "0.38"},
     "windows": [{"start": "00:00", "end": "08:00", "rate": "valley"}, {"start": "08:00", "end": "10:00", "rate": "flat"},
                 {"start": "10:00", "end": "12:00", "rate": "sharp"}, {"start": "12:00", "end": "18:00", "rate": "peak"},
                 {"start": "18:00", "end": "21:00", "rate": "sharp"}, {"start": "21:00", "end": "00:00", "rate": "flat"}]},
    {"kind": "tou", "prices": {"peak": "1.00", "valley": "0.30"},
     "windows": [{"start": "22:30", "end": "06:15", "rate": "valley"}, {"start": "06:15", "end": "22:30", "rate": "peak"}]},
    {"kind": "tiered", "tiers": [{"upto": "200", "price": "0.50"}, {"upto": "400", "price": "0.60"}, {"price": "0.80"}]},
]

minutes = st.integers(min_value=0, max_value=60 * 24 * 45)
versions_st = st.lists(st.tuples(st.sampled_from(range(len(SPECS))), minutes), min_size=0, max_size=3).map(
    lambda vs: [TariffVersion(1, T0 - timedelta(days=400), parse_tariff(SPECS[0]))]
    + [TariffVersion(i + 2, T0 + timedelta(minutes=m), parse_tariff(SPECS[k])) for i, (k, m) in enumerate(vs)])
rates_st = st.one_of(st.none(), st.tuples(*[st.integers(min_value=-5, max_value=300_000)] * 4))


@settings(max_examples=300, deadline=None)
@given(versions=versions_st, start=minutes, length=st.integers(min_value=0, max_value=60 * 24 * 40),
       tz=st.sampled_from(ZONES), quantities=st.lists(st.integers(min_value=0, max_value=1_000_000), min_size=1,
                                                       max_size=4),
       used=st.integers(min_value=0, max_value=600_000), rates=rates_st)
def test_a_memoised_shape_prices_every_quantity_like_the_unmemoised_pricing(versions, start, length, tz, quantities,
                                                                            used, rates):
    a = T0 + timedelta(minutes=start)
    b = a + timedelta(minutes=length)
    memo = ShapeMemo(versions, tz, size=2)
    for q in quantities:  # one cut interval, many meters' quantities
        expected = _outcome(_reference_price, versions, a, b, q, tz, used, rates)
        assert _outcome(lambda *_: memo.price(a, b, q, used, rates)) == expected
        assert _outcome(price_interval, versions, a, b, q, tz, used, rates) == expected
        # ingest's path: the same lines as tuples, and the amount in fen
        assert _outcome(lambda *_: price_parts(memo.shape(a, b), q, used, rates)) == _as_parts(expected)
        if rates is not None:
            agreeing = tuple(split_by_weights(q, [max(r, 0) + 1 for r in rates]))
            assert _outcome(lambda *_: memo.price(a, b, q, used, agreeing)) == \
                _outcome(_reference_price, versions, a, b, q, tz, used, agreeing)


def _outcome(fn, *args):  # type: ignore[no-untyped-def]
    """The Priced, or the error raised (a rate register without a price fails the same both ways)."""
    try:
        return fn(*args)
    except (KeyError, ValueError) as ex:
        return type(ex), str(ex)


def _as_parts(priced):  # type: ignore[no-untyped-def]
    if not isinstance(priced, Priced):
        return priced  # the same error
    return (tuple((ln.label, ln.quantity, ln.unit_price, ln.amount.fen, ln.version_id) for ln in priced.lines),
            priced.rates, priced.month_used_after, priced.amount.fen)


def test_the_memo_keeps_at_most_its_size_and_still_prices_evicted_intervals():
    versions = [TariffVersion(1, T0 - timedelta(days=1), parse_tariff(SPECS[2]))]
    memo = ShapeMemo(versions, ZONES[0], size=3)
    ends = [T0 + timedelta(minutes=15 * k) for k in range(1, 8)]
    for end in ends + ends:
        assert memo.price(T0, end, 1234) == _reference_price(versions, T0, end, 1234, ZONES[0])
    assert len(memo._shapes) == 3


# --- the oracle: billing.pricing before interval shapes, verbatim -------------------------------

def _reference_price(
    versions: "list[TariffVersion] | tuple[TariffVersion, ...]",
    start: datetime,
    end: datetime,
    quantity: int,
    tz: ZoneInfo,
    month_used_before: int = 0,
    rates: RateQuantities | None = None,
) -> Priced:
    """Price `quantity` base units consumed over [start, end) (aware datetimes)."""
    if end < start:
        raise ValueError("interval ends before it starts")
    pieces = _pieces(versions, start, end, tz)
    trusted = rates if rates_agree(quantity, rates) else None
    if len(pieces) == 1:  # the common case: one price, one month — nothing to share out
        shares = [quantity]
        rate_shares = [[r] for r in trusted] if trusted else None
    else:
        weights = [max(int((b - a).total_seconds()), 0) for a, b, _ in pieces]
        if sum(weights) == 0:
            weights = [1] + [0] * (len(pieces) - 1)
        shares = split_by_weights(quantity, weights)
        rate_shares = [split_by_weights(r, weights) for r in trusted] if trusted else None
    lines: list[PriceLine] = []
    rate_total = [0, 0, 0, 0]
    used = month_used_before
    prev_month = _month_key(start, tz)
    for i, (a, b, v) in enumerate(pieces):
        if i and _month_key(a, tz) != prev_month:
            used, prev_month = 0, _month_key(a, tz)
        piece_rates = tuple(rs[i] for rs in rate_shares) if rate_shares else None
        new_lines, split = _price_piece(v, a, b, shares[i], tz, used, piece_rates)
        lines += new_lines
        rate_total = [x + y for x, y in zip(rate_total, split)]
        used += shares[i]
    if _month_key(end, tz) != prev_month:
        used = 0
    return Priced(tuple(lines), quantity, tuple(rate_total), used)  # type: ignore[arg-type]


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


def _price_piece(v: TariffVersion, a: datetime, b: datetime, qty: int, tz: ZoneInfo, used: int,
                 rates: tuple[int, ...] | None) -> tuple[list[PriceLine], list[int]]:
    t = v.tariff
    if isinstance(t, Flat):
        return [line("flat", qty, t.price, v.id)], [0, 0, qty, 0]
    if isinstance(t, Tiered):
        return tiered_lines(t, used, qty, v.id), [0, 0, qty, 0]
    assert isinstance(t, TimeOfUse)
    split = list(rates) if rates is not None else _split_by_windows(t, a, b, qty, tz)
    lines = [line(r, q, t.prices[r], v.id) for r, q in zip(RATES, split) if q]
    return lines, split


def _split_by_windows(t: TimeOfUse, a: datetime, b: datetime, qty: int, tz: ZoneInfo) -> list[int]:
    """Share qty among rates by the time [a, b) spends in each rate's windows."""
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
    return split_by_weights(qty, seconds)


def _next_boundary(t: TimeOfUse, local: datetime) -> datetime:
    """The next local time after `local` at which some TOU window starts or ends."""
    marks = t.marks
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    now_min = (local - day).total_seconds() / 60
    for m in marks:
        if m > now_min:
            return (day.replace(tzinfo=None) + timedelta(minutes=m)).replace(tzinfo=local.tzinfo)
    return (day.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=local.tzinfo)
