"""Tariffs: flat, time-of-use and tiered prices, versioned by effective date.

Quantities are integer base units (Wh for electricity, litres for water); prices are Decimal
yuan per kWh / per m³ (i.e. per 1000 base units). A priced line is rounded to whole fen once,
half up (billing.money). Tariff specs are plain dicts so they can be stored as JSON and a
consumption record can be re-priced from the stored version years later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from billing.money import Money

UNITS_PER_BILLING_UNIT = 1000  # Wh per kWh, litres per m³
RATES = ("sharp", "peak", "flat", "valley")  # the order of TOU energy registers on meters


class TariffError(ValueError):
    """A tariff spec that cannot be priced with."""


@dataclass(frozen=True, slots=True)
class PriceLine:
    """One rounded line of a priced consumption: what, how much, at what price, for how much."""

    label: str  # "flat", "peak", "tier2", ...
    quantity: int  # base units
    unit_price: Decimal  # yuan per kWh / m³
    amount: Money
    version_id: int | None = None


def line(label: str, quantity: int, unit_price: Decimal, version_id: int | None = None) -> PriceLine:
    """Price one line: quantity/1000 x price yuan, in fen, rounded half up once (see line_fen)."""
    return PriceLine(label, quantity, unit_price, Money(line_fen(quantity, unit_price)), version_id)


def line_fen(quantity: int, unit_price: Decimal) -> int:
    """quantity/1000 x unit_price yuan in fen, rounded half up.

    In integers: the price is the exact fraction num/den fen per base unit, and half up (away
    from zero) of q*num/den is floor((2|q*num| + den) / 2den) — the same as rounding the Decimal
    product, without Decimal arithmetic on the ingest path (and exact at any size)."""
    num, den = _fen_per_unit(unit_price)
    product = quantity * num
    fen = (2 * abs(product) + den) // (2 * den)
    return fen if product >= 0 else -fen


_FRACTIONS: dict[Decimal, tuple[int, int]] = {}


def _fen_per_unit(price: Decimal) -> tuple[int, int]:
    found = _FRACTIONS.get(price)
    if found is None:
        if len(_FRACTIONS) > 4096:
            _FRACTIONS.clear()
        num, den = (price * 100).as_integer_ratio()
        found = _FRACTIONS[price] = (num, den * UNITS_PER_BILLING_UNIT)
    return found


def _price(value: Any) -> Decimal:
    if isinstance(value, float):
        raise TariffError(f"prices are decimal strings, not floats: {value!r}")
    try:
        d = Decimal(str(value))
    except InvalidOperation as ex:
        raise TariffError(f"not a price: {value!r}") from ex
    if not d.is_finite() or d < 0:
        raise TariffError(f"price must be a non-negative number: {value!r}")
    return d


@dataclass(frozen=True, slots=True)
class Flat:
    price: Decimal
    kind = "flat"


@dataclass(frozen=True, slots=True)
class TouWindow:
    start: time
    end: time  # exclusive; end <= start means the window crosses midnight
    rate: str

    def minutes(self) -> list[tuple[int, int]]:
        """Spans in minutes of the day, [a, b); a window across midnight gives two spans."""
        a = self.start.hour * 60 + self.start.minute
        b = self.end.hour * 60 + self.end.minute
        return [(a, b)] if a < b else [(a, 1440), (0, b)]


@dataclass(frozen=True, slots=True)
class TimeOfUse:
    prices: Mapping[str, Decimal]  # rate -> price
    windows: tuple[TouWindow, ...]
    kind = "tou"

    @property
    def marks(self) -> tuple[int, ...]:
        """Minutes of the day where some window starts or ends (and 1440), ascending."""
        return _marks(self.windows)

    def rate_at(self, local: datetime) -> str:
        """The rate in force at a local wall-clock time."""
        m = local.hour * 60 + local.minute
        for w in self.windows:
            if any(a <= m < b for a, b in w.minutes()):
                return w.rate
        raise TariffError(f"no TOU window covers {local.time()}")  # validated away at parse


_MARKS: dict[tuple[TouWindow, ...], tuple[int, ...]] = {}


def _marks(windows: tuple[TouWindow, ...]) -> tuple[int, ...]:
    cached = _MARKS.get(windows)
    if cached is None:
        cached = tuple(sorted({m for w in windows for span in w.minutes() for m in span} | {1440}))
        _MARKS[windows] = cached
    return cached


@dataclass(frozen=True, slots=True)
class Tier:
    upto: int | None  # monthly cumulative base units where this step ends; None = no limit
    price: Decimal


@dataclass(frozen=True, slots=True)
class Tiered:
    tiers: tuple[Tier, ...]
    kind = "tiered"


Tariff = Flat | TimeOfUse | Tiered


def parse_tariff(spec: Mapping[str, Any]) -> Tariff:
    """Build a tariff from its JSON spec, refusing anything ambiguous."""
    kind = spec.get("kind")
    if kind == "flat":
        return Flat(_price(spec["price"]))
    if kind == "tou":
        return _parse_tou(spec)
    if kind == "tiered":
        return _parse_tiered(spec)
    raise TariffError(f"unknown tariff kind {kind!r}")


def _parse_tou(spec: Mapping[str, Any]) -> TimeOfUse:
    prices = {r: _price(p) for r, p in spec["prices"].items()}
    if not set(prices) <= set(RATES):
        raise TariffError(f"TOU rates must be among {RATES}")
    windows = tuple(
        TouWindow(time.fromisoformat(w["start"]), time.fromisoformat(w["end"]), w["rate"])
        for w in spec["windows"]
    )
    covered = [0] * 1440
    for w in windows:
        if w.rate not in prices:
            raise TariffError(f"window rate {w.rate!r} has no price")
        for a, b in w.minutes():
            for m in range(a, b):
                covered[m] += 1
    if any(c != 1 for c in covered):
        raise TariffError("TOU windows must cover the day exactly once")
    return TimeOfUse(prices, windows)


def _parse_tiered(spec: Mapping[str, Any]) -> Tiered:
    tiers = []
    last = 0
    raw = spec["tiers"]
    for i, t in enumerate(raw):
        upto = t.get("upto")
        if upto is None and i != len(raw) - 1:
            raise TariffError("only the last tier may be open-ended")
        if upto is not None:
            upto = int(Decimal(str(upto)) * UNITS_PER_BILLING_UNIT)  # spec in kWh / m³
            if upto <= last:
                raise TariffError("tier limits must increase")
            last = upto
        tiers.append(Tier(upto, _price(t["price"])))
    if not tiers or tiers[-1].upto is not None:
        raise TariffError("the last tier must be open-ended")
    return Tiered(tuple(tiers))


@dataclass(frozen=True, slots=True)
class TariffVersion:
    """A tariff as it was from `effective_from` (aware datetime) until the next version."""

    id: int | None
    effective_from: datetime
    tariff: Tariff


def version_at(versions: "list[TariffVersion] | tuple[TariffVersion, ...]", at: datetime) -> TariffVersion:
    """The version in force at `at` (versions may be in any order)."""
    best = None
    for v in versions:
        if v.effective_from <= at and (best is None or v.effective_from > best.effective_from):
            best = v
    if best is None:
        raise TariffError(f"no tariff version in force at {at.isoformat()}")
    return best


LineParts = tuple[str, int, Decimal, int, "int | None"]  # a PriceLine as a tuple: label, quantity, price, fen, version


def tiered_lines(t: Tiered, used_before: int, quantity: int, version_id: int | None) -> list[PriceLine]:
    """Price `quantity` on top of `used_before` this month, crossing tiers as needed."""
    return [PriceLine(label, q, price, Money(fen), v) for label, q, price, fen, v in
            tiered_parts(t, used_before, quantity, version_id)]


def tiered_parts(t: Tiered, used_before: int, quantity: int, version_id: int | None) -> list[LineParts]:
    """tiered_lines as tuples (the ingest path builds no objects per line)."""
    out: list[LineParts] = []
    pos, left = used_before, quantity
    for i, tier in enumerate(t.tiers, start=1):
        if left <= 0:
            break
        top = tier.upto if tier.upto is not None else pos + left
        if pos < top:
            take = min(left, top - pos)
            out.append((f"tier{i}", take, tier.price, line_fen(take, tier.price), version_id))
            pos, left = pos + take, left - take
    return out


def month_start(local: datetime) -> datetime:
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(local: datetime) -> datetime:
    first = month_start(local)
    return (first + timedelta(days=32)).replace(day=1)
