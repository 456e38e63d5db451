"""A simulated prepaid meter: load curve, relay, meter-side balance, purchase counter, clock."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

# time-of-use rate per hour of day: 0 sharp, 1 peak, 2 flat, 3 valley
TOU_BY_HOUR = (3,) * 7 + (2,) + (1,) * 3 + (0,) * 1 + (2,) * 6 + (1,) * 1 + (0,) * 2 + (1,) * 2 + (3,) * 1


@dataclass
class SimClock:
    """Simulated wall time, optionally accelerated (speed x real time)."""

    speed: float = 1.0
    start: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    _t0: float = field(default_factory=time.monotonic)

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self._t0) * self.speed)


@dataclass
class SimMeter:
    """State of one meter; `advance()` integrates consumption up to the clock's now."""

    address: str
    profile_key: str
    clock: SimClock
    medium: str = "electricity"
    base_load_w: float = 800.0  # for water: litres per hour
    meter_billing: bool = True  # meter-side billing: balance decrements, relay trips at zero
    relay_closed: bool = True
    balance_fen: float = 5000.0
    purchase_count: int = 0
    price_e4: int = 6000  # 0.6000 yuan per kWh (or per m3)
    energy: float = 0.0  # Wh or litres
    rates: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])
    dead: bool = False  # never answers (fault injection)
    clock_offset_s: float = 0.0
    credits_applied: list[tuple[int, int]] = field(default_factory=list)
    relay_writes: int = 0
    writes: int = 0  # relay and credit writes received, accepted or not
    _last: datetime | None = None
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._last = self.clock.now()  # consumption is counted from creation, read or not

    def load(self, at: datetime) -> float:
        """Daily double-hump curve with noise; zero while the relay is open."""
        if not self.relay_closed:
            return 0.0
        hour = at.hour + at.minute / 60
        shape = 0.35 + 0.4 * math.exp(-((hour - 8) ** 2) / 4) + 0.9 * math.exp(-((hour - 20) ** 2) / 6)
        return self.base_load_w * shape * (0.9 + 0.2 * self._rng.random())

    def advance(self) -> None:
        now = self.clock.now()
        if self._last is not None and now > self._last:
            hours = (now - self._last).total_seconds() / 3600
            used = self.load(now) * hours  # Wh, or litres for water
            self.energy += used
            self.rates[TOU_BY_HOUR[now.hour]] += used
            if self.meter_billing:
                self._debit(used)
        self._last = now

    def _debit(self, used: float) -> None:
        per_unit_fen = self.price_e4 / 100 / 1000  # price per kWh (m3) -> fen per Wh (L)
        self.balance_fen -= used * per_unit_fen
        if self.balance_fen <= 0 and self.relay_closed:
            self.relay_closed = False  # meter-side billing trips its own relay

    def set_relay(self, closed: bool) -> bool:
        """False when refused: a meter-billed meter will not close with no credit."""
        self.advance()
        self.relay_writes += 1
        self.writes += 1
        if closed and self.meter_billing and self.balance_fen <= 0:
            return False
        self.relay_closed = closed
        return True

    def apply_credit(self, purchase_count: int, amount_fen: int) -> bool:
        """Accept only the next purchase: a repeated or skipped counter is rejected."""
        self.advance()
        self.writes += 1
        if purchase_count != self.purchase_count + 1 or amount_fen <= 0:
            return False
        self.purchase_count = purchase_count
        self.balance_fen += amount_fen
        self.credits_applied.append((purchase_count, amount_fen))
        return True

    def meter_time(self) -> datetime:
        return self.clock.now() + timedelta(seconds=self.clock_offset_s)

    def set_time(self, when: datetime) -> None:
        self.clock_offset_s = (when - self.clock.now()).total_seconds()

    def values(self) -> dict[str, float | int]:
        """Current readings keyed like profile registers / MeterSample fields."""
        self.advance()
        now = self.clock.now()
        power = self.load(now)
        volts = 220.0 + 6 * math.sin(now.timestamp() / 600)
        return {
            "energy_total": int(self.energy),
            "rate_sharp": int(self.rates[0]),
            "rate_peak": int(self.rates[1]),
            "rate_flat": int(self.rates[2]),
            "rate_valley": int(self.rates[3]),
            "voltage_v": round(volts, 1),
            "current_a": round(power / volts / 0.95, 2),
            "power_w": int(power),
            "power_factor": 0.95 if power else 1.0,
            "frequency_hz": 50.0,
            "relay_closed": int(self.relay_closed),
            "meter_balance_fen": int(self.balance_fen),
            "purchase_count": self.purchase_count,
            "price_e4": self.price_e4,
        }
