"""Meter models as data: Modbus register maps and DL/T 645 read lists, no per-model code.

Addresses are protocol addresses (0-based). 32-bit values are two registers, high word first.
Only the DDSY1352 energy and relay registers follow Acrel's published map; every other
address below is this project's choice, used identically by the simulator and the drivers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

RegType = Literal["u16", "s16", "u32", "s32"]
Medium = Literal["electricity", "water"]
WIDTH = {"u16": 1, "s16": 1, "u32": 2, "s32": 2}
INT_KEYS = frozenset(
    {"energy_total", "rate_sharp", "rate_peak", "rate_flat", "rate_valley",
     "meter_balance_fen", "purchase_count", "price_e4", "relay_closed"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Register:
    """One value: raw register value x `scale` = value in `unit` (the key's base unit)."""

    key: str
    address: int
    type: RegType
    scale: float
    unit: str

    @property
    def count(self) -> int:
        return WIDTH[self.type]


@dataclass(frozen=True, slots=True)
class ModbusProfile:
    """A Modbus meter model: readable registers and writable control points."""

    key: str
    name: str
    medium: Medium
    registers: tuple[Register, ...]
    relay_address: int | None = None  # written with function 16
    relay_open: tuple[int, ...] = (0x0001, 0x0001)  # trip (power / water off)
    relay_close: tuple[int, ...] = (0x0001, 0x0000)  # restore
    credit_address: int | None = None  # 4 regs: purchase count u32, amount fen u32
    clock_address: int | None = None  # 6 regs: year, month, day, hour, minute, second (UTC)
    max_units: int = 1  # unit ids behind one port (a multi-user box has many)
    by_key: dict[str, Register] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_key", {r.key: r for r in self.registers})

    @property
    def span(self) -> tuple[int, int]:
        """(start, count) covering every register: one request reads the whole meter."""
        start = min(r.address for r in self.registers)
        end = max(r.address + r.count for r in self.registers)
        return start, end - start


@dataclass(frozen=True, slots=True)
class Dlt645Profile:
    """A DL/T 645 meter model: which data identifiers one poll reads."""

    key: str
    name: str
    medium: Medium
    reads: tuple[int, ...]


def decode_registers(profile: ModbusProfile, start: int, words: list[int]) -> dict[str, float | int]:
    """Register words read from `start` -> {key: value in base unit}."""
    out: dict[str, float | int] = {}
    for reg in profile.registers:
        at = reg.address - start
        raw = words[at] if reg.count == 1 else (words[at] << 16) | words[at + 1]
        if reg.type[0] == "s" and raw >= 1 << (16 * reg.count - 1):
            raw -= 1 << (16 * reg.count)
        value = round(raw * reg.scale, 6)  # 2299 * 0.1 -> 229.9, not 229.90000000000003
        out[reg.key] = round(value) if reg.key in INT_KEYS else value
    return out


def encode_registers(profile: ModbusProfile, values: dict[str, float | int]) -> dict[int, int]:
    """{key: value} -> {address: word}; the simulator's side of decode_registers."""
    out: dict[int, int] = {}
    for reg in profile.registers:
        if reg.key not in values:
            continue
        raw = round(values[reg.key] / reg.scale) & ((1 << (16 * reg.count)) - 1)
        if reg.count == 1:
            out[reg.address] = raw
        else:
            out[reg.address], out[reg.address + 1] = raw >> 16, raw & 0xFFFF
    return out


def _single_phase_registers(base: int) -> tuple[Register, ...]:
    return (
        Register("energy_total", base + 0x00, "u32", 10, "Wh"),  # 0.01 kWh
        Register("rate_sharp", base + 0x02, "u32", 10, "Wh"),
        Register("rate_peak", base + 0x04, "u32", 10, "Wh"),
        Register("rate_flat", base + 0x06, "u32", 10, "Wh"),
        Register("rate_valley", base + 0x08, "u32", 10, "Wh"),
        Register("voltage_v", base + 0x0A, "u16", 0.1, "V"),
        Register("current_a", base + 0x0B, "u16", 0.01, "A"),
        Register("power_w", base + 0x0C, "s32", 1, "W"),
        Register("power_factor", base + 0x0E, "s16", 0.001, ""),
        Register("frequency_hz", base + 0x0F, "u16", 0.01, "Hz"),
        Register("relay_closed", base + 0x10, "u16", 1, "1=closed"),
        Register("meter_balance_fen", base + 0x11, "s32", 1, "fen"),
        Register("purchase_count", base + 0x13, "u32", 1, ""),
        Register("price_e4", base + 0x15, "u32", 1, "0.0001 yuan/kWh"),
    )


# Acrel DDSY1352-style single-phase prepaid: energy 0x0000..0x0009 and relay 0x0057 per
# Acrel's map; U/I/P/PF/F/relay/balance/count/price at 0x000A..0x0016 are our choice.
ACREL_DDSY1352 = ModbusProfile(
    key="acrel_ddsy1352",
    name="Acrel DDSY1352-style single-phase prepaid meter",
    medium="electricity",
    registers=_single_phase_registers(0x0000),
    relay_address=0x0057,
    credit_address=0x0060,
    clock_address=0x0070,
)

# Three-phase meter: a different map on purpose (energy at 0x0100); voltage/current = phase A.
THREE_PHASE = ModbusProfile(
    key="three_phase_4q",
    name="Three-phase prepaid meter (DTSY-style)",
    medium="electricity",
    registers=(
        Register("voltage_v", 0x0100, "u16", 0.1, "V"),
        Register("current_a", 0x0103, "u16", 0.01, "A"),
        Register("power_w", 0x0106, "s32", 1, "W"),
        Register("power_factor", 0x0108, "s16", 0.001, ""),
        Register("frequency_hz", 0x0109, "u16", 0.01, "Hz"),
        Register("energy_total", 0x010A, "u32", 10, "Wh"),
        Register("rate_sharp", 0x010C, "u32", 10, "Wh"),
        Register("rate_peak", 0x010E, "u32", 10, "Wh"),
        Register("rate_flat", 0x0110, "u32", 10, "Wh"),
        Register("rate_valley", 0x0112, "u32", 10, "Wh"),
        Register("relay_closed", 0x0114, "u16", 1, "1=closed"),
        Register("meter_balance_fen", 0x0115, "s32", 1, "fen"),
        Register("purchase_count", 0x0117, "u32", 1, ""),
        Register("price_e4", 0x0119, "u32", 1, "0.0001 yuan/kWh"),
    ),
    relay_address=0x0157,
    credit_address=0x0160,
    clock_address=0x0170,
)

# Multi-user meter box (ADF400L-style): each metering unit answers on its own unit id
# (1..36) behind the box's single RS485 port; each unit has the single-phase map.
MULTI_USER_UNIT = ModbusProfile(
    key="multi_user_box_unit",
    name="Multi-user meter box, one metering unit",
    medium="electricity",
    registers=_single_phase_registers(0x0000)[:1] + _single_phase_registers(0x0000)[5:],
    relay_address=0x0057,
    credit_address=0x0060,
    clock_address=0x0070,
    max_units=36,
)

# Prepaid water meter with a motor valve: volume in litres (0.001 m3), valve as the relay.
WATER_VALVE = ModbusProfile(
    key="water_valve",
    name="Prepaid water meter with valve",
    medium="water",
    registers=(
        Register("energy_total", 0x0000, "u32", 1, "L"),
        Register("relay_closed", 0x0002, "u16", 1, "1=valve open (water on)"),
        Register("meter_balance_fen", 0x0003, "s32", 1, "fen"),
        Register("purchase_count", 0x0005, "u32", 1, ""),
        Register("price_e4", 0x0007, "u32", 1, "0.0001 yuan/m3"),
    ),
    relay_address=0x0020,
    credit_address=0x0030,
    clock_address=0x0040,
)

DLT645_SINGLE_PHASE = Dlt645Profile(
    key="dlt645_single_phase",
    name="DL/T 645-2007 single-phase prepaid meter",
    medium="electricity",
    reads=(0x0001FF00, 0x02010100, 0x02020100, 0x02030000, 0x04000503, 0x00900200, 0x03330201),
)

PROFILES: dict[str, ModbusProfile | Dlt645Profile] = {
    p.key: p for p in (ACREL_DDSY1352, THREE_PHASE, MULTI_USER_UNIT, WATER_VALVE, DLT645_SINGLE_PHASE)
}
Profile = ModbusProfile | Dlt645Profile
