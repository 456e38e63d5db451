"""Money as integer fen (分), and the one rounding rule used everywhere.

Rounding rule (written down once, used everywhere): an amount with sub-fen precision
(a price per kWh times an energy quantity) is rounded to whole fen **half up** (away from
zero for .5), **once per line** — per priced segment of a consumption record, per fee line,
per apportioned share before remainder assignment. Totals are sums of already-rounded lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Union

FEN_PER_YUAN = 100


class MoneyError(ValueError):
    """Raised for anything that is not a whole number of fen."""


def round_half_up(value: Decimal) -> int:
    """Round a Decimal to the nearest integer, .5 away from zero."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True, slots=True, order=True)
class Money:
    """An amount in integer fen. Floats are refused: they cannot hold money exactly."""

    fen: int

    def __post_init__(self) -> None:
        if isinstance(self.fen, bool) or not isinstance(self.fen, int):
            raise MoneyError(f"money must be an integer number of fen, got {self.fen!r}")

    # -- construction -----------------------------------------------------------------
    @classmethod
    def zero(cls) -> Money:
        return cls(0)

    @classmethod
    def yuan(cls, amount: Union[int, str, Decimal]) -> Money:
        """Parse yuan given as int, str or Decimal ("12.34"); more than 2 decimals is an error."""
        if isinstance(amount, float) or isinstance(amount, bool):
            raise MoneyError(f"float amounts are refused, pass a string: {amount!r}")
        try:
            d = Decimal(str(amount).strip()) if not isinstance(amount, Decimal) else amount
        except InvalidOperation as ex:
            raise MoneyError(f"not an amount: {amount!r}") from ex
        if not d.is_finite():
            raise MoneyError(f"not an amount: {amount!r}")
        fen = d * FEN_PER_YUAN
        if fen != fen.to_integral_value():
            raise MoneyError(f"amount has more than 2 decimals: {amount!r}")
        return cls(int(fen))

    @classmethod
    def from_decimal_fen(cls, value: Decimal) -> Money:
        """Round a sub-fen amount to whole fen by the project rule (half up)."""
        return cls(round_half_up(value))

    # -- arithmetic ----------------------------------------------------------------------
    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        return Money(self.fen + other.fen)

    def __sub__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        return Money(self.fen - other.fen)

    def __neg__(self) -> Money:
        return Money(-self.fen)

    def __mul__(self, factor: int) -> Money:
        if isinstance(factor, bool) or not isinstance(factor, int):
            return NotImplemented
        return Money(self.fen * factor)

    __rmul__ = __mul__

    def __bool__(self) -> bool:
        return self.fen != 0

    @property
    def is_negative(self) -> bool:
        return self.fen < 0

    @property
    def is_positive(self) -> bool:
        return self.fen > 0

    def to_yuan_str(self) -> str:
        """'12.34' / '-0.05': the form shown to people and sent to payment providers."""
        sign = "-" if self.fen < 0 else ""
        whole, part = divmod(abs(self.fen), FEN_PER_YUAN)
        return f"{sign}{whole}.{part:02d}"

    def __str__(self) -> str:
        return f"¥{self.to_yuan_str()}"


def total(amounts: "list[Money] | tuple[Money, ...]") -> Money:
    """Sum of Money values (an empty sum is zero)."""
    return Money(sum(m.fen for m in amounts))
