"""The port every meter driver implements, the bus endpoint it talks to, and sample building."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from devices.profiles import Profile
from devices.sample import MeterSample

BusProtocol = Literal["modbus_rtu_tcp", "modbus_tcp", "dlt645_tcp"]


@dataclass(frozen=True, slots=True)
class BusEndpoint:
    """One RS485 bus: gateway code, downlink number, and the TCP socket that reaches it."""

    gateway: str
    port: int
    host: str
    tcp_port: int
    protocol: BusProtocol = "modbus_rtu_tcp"


class MeterDriver(Protocol):
    """Talks to the meters of one bus. Prices are integer 0.0001 yuan per kWh (or per m3)."""

    async def read(self, address: str, profile: Profile) -> MeterSample: ...
    async def set_relay(self, address: str, closed: bool) -> None: ...
    async def read_relay(self, address: str) -> bool: ...
    async def push_credit(self, address: str, amount_fen: int, purchase_count: int) -> None: ...
    async def read_purchase_count(self, address: str) -> int: ...
    async def set_price(self, address: str, price_e4: int) -> None: ...
    async def read_price(self, address: str) -> int: ...
    async def time_sync(self, address: str, now: datetime) -> None: ...
    async def read_clock(self, address: str) -> datetime: ...
    async def close(self) -> None: ...


def sample_from_values(bus: BusEndpoint, address: str, taken_at: datetime, values: dict[str, float | int]) -> MeterSample:
    """Decoded values keyed like MeterSample fields (plus rate_*) -> MeterSample."""
    rate_keys = ("rate_sharp", "rate_peak", "rate_flat", "rate_valley")
    rates = tuple(int(values[k]) for k in rate_keys) if all(k in values for k in rate_keys) else None
    optional = {k: values.get(k) for k in ("voltage_v", "current_a", "power_w", "power_factor", "frequency_hz")}
    return MeterSample(
        gateway=bus.gateway,
        port=bus.port,
        address=address,
        taken_at=taken_at,
        energy_total=int(values["energy_total"]),
        energy_rates=rates,  # type: ignore[arg-type]
        **{k: (None if v is None else float(v)) for k, v in optional.items()},
        relay_closed=None if "relay_closed" not in values else bool(values["relay_closed"]),
        meter_balance_fen=_int_or_none(values.get("meter_balance_fen")),
        purchase_count=_int_or_none(values.get("purchase_count")),
    )


def _int_or_none(value: float | int | None) -> int | None:
    return None if value is None else int(value)


def make_driver(bus: BusEndpoint, profiles: dict[str, Profile], timeout_s: float = 1.0) -> MeterDriver:
    """The driver for a bus's protocol; `profiles` maps address -> profile (live dict)."""
    from devices.dlt645_driver import Dlt645Driver
    from devices.modbus_driver import ModbusDriver

    if bus.protocol == "dlt645_tcp":
        return Dlt645Driver(bus, timeout_s=timeout_s)
    return ModbusDriver(bus, profiles, timeout_s=timeout_s)  # type: ignore[arg-type]
