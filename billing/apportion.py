"""Common-area apportionment: split a master meter's cost (or energy) among its members exactly.

Rules:
- Methods: by fixed ratio, by room area (m²), or by each member's own usage (Wh or litres).
  The method only chooses each member's weight; the split is the same for all three.
- Largest-remainder split: each member's exact quota is ``whole x weight / sum of weights``
  (exact rational arithmetic, no float, no intermediate rounding). Each member first gets the
  quota rounded down; the fen left over (fewer than the number of members) go one each to the
  members with the **largest fractional remainder first; ties go to the smaller member id**
  (string order), so the result does not depend on the order members are listed in.
- Hence parts always sum exactly to the whole, never differ from their quota by a fen or more,
  are never negative for a non-negative whole, and a larger weight never gets a smaller part.
- All weights zero (e.g. no sub used anything this month): the whole is split **equally**, by
  the same rule, rather than refusing and blocking month-end. Negative weights, an empty group
  and duplicate member ids are errors.
- A negative whole (a credit being passed back) is split as its magnitude and negated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from fractions import Fraction

from billing.money import Money


class ApportionError(ValueError):
    """Raised for a group that cannot be split."""


class Method(Enum):
    """What each member's weight is."""

    RATIO = "ratio"
    AREA = "area"
    USAGE = "usage"


@dataclass(frozen=True, slots=True)
class Member:
    """A sub-meter or room in an apportionment group, with every weight it may be split by."""

    member_id: str
    ratio: Decimal = Decimal(0)
    area_m2: Decimal = Decimal(0)
    usage: int = 0


@dataclass(frozen=True, slots=True)
class Part:
    """One member's share of the master's cost."""

    member_id: str
    weight: Decimal
    amount: Money


@dataclass(frozen=True, slots=True)
class EnergyShare:
    """One member's share of the master's energy (Wh) or water (litres)."""

    member_id: str
    weight: Decimal
    quantity: int


_WEIGHT: dict[Method, Callable[[Member], Decimal]] = {
    Method.RATIO: lambda m: m.ratio,
    Method.AREA: lambda m: m.area_m2,
    Method.USAGE: lambda m: Decimal(m.usage),
}


def _check(ids: Sequence[str], weights: Sequence[Decimal]) -> None:
    if not ids:
        raise ApportionError("an apportionment group needs at least one member")
    if len(set(ids)) != len(ids):
        raise ApportionError(f"duplicate member ids in group: {sorted(ids)}")
    if any(not w.is_finite() or w < 0 for w in weights):
        raise ApportionError(f"weights must be finite and non-negative: {list(weights)}")


def largest_remainder(whole: int, ids: Sequence[str], weights: Sequence[Decimal]) -> list[int]:
    """Split the integer ``whole`` by ``weights``; parts sum exactly to ``whole`` (see module)."""
    _check(ids, weights)
    if whole < 0:
        return [-p for p in largest_remainder(-whole, ids, weights)]
    # Exact integer arithmetic (as fast as it is exact): the weights over one common denominator,
    # quota_i = whole * w_i / total; the floor and remainder of that division order the same as Fractions.
    ratios = [Fraction(w).as_integer_ratio() for w in weights]
    common = math.lcm(*(d for _, d in ratios)) if ratios else 1
    scaled = [n * (common // d) for n, d in ratios]
    total_weight = sum(scaled)
    if total_weight == 0:
        scaled, total_weight = [1] * len(ids), len(ids)
    split = [divmod(whole * w, total_weight) for w in scaled]
    parts = [q for q, _ in split]
    left = whole - sum(parts)
    order = sorted(range(len(ids)), key=lambda i: (-split[i][1], ids[i]))
    for i in order[:left]:
        parts[i] += 1
    return parts


def split_by_weights(cost: Money, weights: Sequence[tuple[str, Decimal]]) -> tuple[Part, ...]:
    """Split ``cost`` among ``(member_id, weight)`` pairs, in the order given."""
    ids = [member_id for member_id, _ in weights]
    values = [weight for _, weight in weights]
    fen = largest_remainder(cost.fen, ids, values)
    return tuple(Part(i, w, Money(f)) for i, w, f in zip(ids, values, fen))


def apportion(cost: Money, members: Sequence[Member], method: Method) -> tuple[Part, ...]:
    """Split the master's priced ``cost`` among ``members`` by ``method``."""
    weigh = _WEIGHT[method]
    return split_by_weights(cost, [(m.member_id, weigh(m)) for m in members])


def energy_shares(
    master_quantity: int, members: Sequence[Member], method: Method = Method.USAGE
) -> tuple[EnergyShare, ...]:
    """Split the master's energy (Wh) or water (litres) itself, e.g. to price each share with
    the member's own tariff; the shares sum exactly to ``master_quantity``."""
    weigh = _WEIGHT[method]
    ids = [m.member_id for m in members]
    weights = [weigh(m) for m in members]
    quantities = largest_remainder(master_quantity, ids, weights)
    return tuple(EnergyShare(i, w, q) for i, w, q in zip(ids, weights, quantities))
