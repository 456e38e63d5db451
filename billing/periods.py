"""Billing periods: half-open date ranges and the calendar arithmetic fees and bills share.

Rules:
- A `Period` is half-open, ``[start, end)``: ``end`` is the first day *not* in the period, so
  consecutive periods touch without overlapping and ``days`` is a plain subtraction.
- Calendar periods start on the 1st: a month, a quarter (Jan/Apr/Jul/Oct) or a year.
- ``label`` is the ISO 8601 interval ``"2026-03-01/2026-04-01"``; keys built from it are stable.
- Adding months clamps to the last day of a shorter month (31 Jan + 1 month = 28/29 Feb).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta
from enum import Enum


class PeriodError(ValueError):
    """Raised for an empty or inverted period."""


class Frequency(Enum):
    """How often a periodic item recurs; the value is the period's length in months."""

    MONTHLY = 1
    QUARTERLY = 3
    YEARLY = 12


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """A half-open range of days, ``[start, end)``."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise PeriodError(f"a period must end after it starts: {self.start} .. {self.end}")

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    @property
    def label(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"

    def contains(self, day: date) -> bool:
        return self.start <= day < self.end

    def overlap_days(self, start: date, end: date) -> int:
        """Days of ``[start, end)`` that fall inside this period (0 when disjoint)."""
        return max(0, (min(self.end, end) - max(self.start, start)).days)


def add_months(day: date, months: int) -> date:
    """Shift by whole months, clamping the day to the target month's length."""
    index = day.year * 12 + (day.month - 1) + months
    year, month0 = divmod(index, 12)
    last = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(day.day, last))


def month(year: int, month_no: int) -> Period:
    """The calendar month ``year-month_no``."""
    start = date(year, month_no, 1)
    return Period(start, add_months(start, 1))


def period_containing(day: date, frequency: Frequency) -> Period:
    """The calendar month, quarter or year that contains ``day``."""
    length = frequency.value
    first_month = ((day.month - 1) // length) * length + 1
    start = date(day.year, first_month, 1)
    return Period(start, add_months(start, length))


def periods_overlapping(span: Period, frequency: Frequency) -> tuple[Period, ...]:
    """Every calendar period of ``frequency`` that shares at least one day with ``span``."""
    found: list[Period] = []
    current = period_containing(span.start, frequency)
    while current.start < span.end:
        found.append(current)
        current = Period(current.end, add_months(current.end, frequency.value))
    return tuple(found)


def day_of_period(period: Period, day_no: int) -> date:
    """The ``day_no``-th day of ``period`` (1-based), clamped to its last day."""
    if day_no < 1:
        raise PeriodError(f"day of period counts from 1, got {day_no}")
    return min(period.start + timedelta(days=day_no - 1), period.last_day)
