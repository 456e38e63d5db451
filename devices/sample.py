"""The reading handed from devices/ to the ingest service: one meter, one moment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class MeterSample:
    """One reading of one meter; registers are cumulative, never deltas."""

    gateway: str  # gateway code
    port: int  # gateway downlink (one RS485 bus)
    address: str  # modbus unit id as decimal str, or 12-digit DL/T 645 address
    taken_at: datetime  # tz-aware UTC, original time of the reading (store-and-forward keeps it)
    energy_total: int  # cumulative register: Wh (electricity) or litres (water)
    energy_rates: tuple[int, int, int, int] | None = None  # sharp, peak, flat, valley Wh
    voltage_v: float | None = None
    current_a: float | None = None
    power_w: float | None = None
    power_factor: float | None = None
    frequency_hz: float | None = None
    relay_closed: bool | None = None  # True = power/water on
    meter_balance_fen: int | None = None  # meter-side billing balance
    purchase_count: int | None = None  # meter-side purchase counter


@dataclass(frozen=True, slots=True)
class MeterRef:
    """Where a meter lives: gateway code, downlink (bus) and address on that bus."""

    gateway: str
    port: int
    address: str

    def __str__(self) -> str:
        return f"{self.gateway}/{self.port}/{self.address}"
