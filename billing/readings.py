"""Turning cumulative meter registers into billable deltas, safely.

A meter reports cumulative registers; what is billed is the difference from the **baseline**,
the last reading that was billed (or the base a meter starts from). The verdicts:

- BASE       first reading of a meter (or of a replaced meter): becomes the baseline, bills nothing.
- BILL       later in time and not lower: the delta is billed and the reading becomes the baseline.
- DUPLICATE  same time and same value as the baseline: nothing happens.
- CONFLICT   same time as the baseline but another value: kept and flagged, the first one stands.
- LATE       older than the baseline (a store-and-forward replay behind a newer reading): kept for
             history; its energy is already inside a billed interval, so it bills nothing.
- ROLLOVER   lower, but the baseline was near the register's top and the wrapped delta is
             plausible: the wrapped delta is billed.
- BACKWARD   lower otherwise (a glitch or a reset): kept and flagged, bills nothing, and the
             baseline is NOT moved, so a later normal reading bills only what was really used.
- IMPLAUSIBLE higher by more than the meter could draw in the elapsed time (a corrupted read):
             kept and flagged, bills nothing, baseline not moved.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

Rates = tuple[int, int, int, int]


class Verdict(str, enum.Enum):
    BASE = "base"
    BILL = "billed"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    LATE = "late"
    ROLLOVER = "rollover"
    BACKWARD = "backward"
    IMPLAUSIBLE = "implausible"

    @property
    def bills(self) -> bool:
        return self in BILLING

    @property
    def flagged(self) -> bool:
        return self in FLAGGED


BILLING = frozenset({Verdict.BILL, Verdict.ROLLOVER})
FLAGGED = frozenset({Verdict.CONFLICT, Verdict.BACKWARD, Verdict.IMPLAUSIBLE})


class Baseline(NamedTuple):  # tuples, not frozen dataclasses: ingest makes two per reading
    taken_at: datetime
    total: int
    rates: Rates | None = None


@dataclass(frozen=True, slots=True)
class RegisterLimits:
    """What a meter can physically do: where its register wraps and how fast it can count."""

    modulus: int = 100_000_000 * 10  # 99,999,999.99 kWh display at 0.01 kWh -> wraps at 10^9 Wh
    max_rate_per_h: int = 66_000  # Wh per hour (100 A three-phase) or litres per hour
    slack: int = 1_000  # always-allowed delta, for clock skew between close readings


class Assessment(NamedTuple):
    verdict: Verdict
    quantity: int = 0
    rates: Rates | None = None
    baseline: Baseline | None = None  # the new baseline; None means unchanged

    @property
    def bills(self) -> bool:
        return self.verdict in BILLING


def assess(base: Baseline | None, taken_at: datetime, total: int, rates: Rates | None,
           limits: RegisterLimits = RegisterLimits()) -> Assessment:
    """Decide what one reading means for billing, given the meter's current baseline."""
    if total < 0 or total >= limits.modulus:
        return Assessment(Verdict.IMPLAUSIBLE)
    if base is None:
        return Assessment(Verdict.BASE, baseline=Baseline(taken_at, total, rates))
    if taken_at == base.taken_at:
        same = total == base.total
        return Assessment(Verdict.DUPLICATE if same else Verdict.CONFLICT)
    if taken_at < base.taken_at:
        return Assessment(Verdict.LATE)
    allowed = _allowed(limits, base.taken_at, taken_at)
    if total >= base.total:
        delta = total - base.total
        if delta > allowed:
            return Assessment(Verdict.IMPLAUSIBLE)
        return Assessment(Verdict.BILL, delta, _rate_deltas(base.rates, rates, limits), Baseline(taken_at, total, rates))
    wrapped = limits.modulus - base.total + total
    if base.total >= limits.modulus * 9 // 10 and wrapped <= allowed:
        return Assessment(Verdict.ROLLOVER, wrapped, _rate_deltas(base.rates, rates, limits),
                          Baseline(taken_at, total, rates))
    return Assessment(Verdict.BACKWARD)


def _allowed(limits: RegisterLimits, start: datetime, end: datetime) -> int:
    seconds = (end - start).total_seconds()
    return int(limits.max_rate_per_h * seconds / 3600 * 1.2) + limits.slack


def _rate_deltas(old: Rates | None, new: Rates | None, limits: RegisterLimits) -> Rates | None:
    if old is None or new is None:
        return None
    out = []
    for a, b in zip(old, new):
        d = b - a
        if d < 0:
            d += limits.modulus if a >= limits.modulus * 9 // 10 else 0
        out.append(d)
    return tuple(out)  # type: ignore[return-value]
