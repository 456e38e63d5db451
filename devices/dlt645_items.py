"""DL/T 645-2007 data identifiers (appendix A) as a table: DI -> size, decimals, sign, key.

DIs are written here high byte first (DI3 DI2 DI1 DI0), as the standard's tables print them;
on the wire they go low byte first (dlt645.read_request does that).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from devices.dlt645 import bcd_decode, bcd_encode, signed_bcd_decode, signed_bcd_encode


@dataclass(frozen=True, slots=True)
class DataItem:
    """One value format: `length` BCD bytes with `decimals` implied decimal places."""

    di: int
    name: str
    length: int
    decimals: int
    signed: bool = False

    def decode(self, raw: bytes) -> Decimal:
        number = signed_bcd_decode(raw) if self.signed else bcd_decode(raw)
        return Decimal(number).scaleb(-self.decimals)

    def encode(self, value: Decimal | int) -> bytes:
        number = int(Decimal(value).scaleb(self.decimals).to_integral_value())
        return signed_bcd_encode(number, self.length) if self.signed else bcd_encode(number, self.length)


def _item(di: int, name: str, length: int, decimals: int, signed: bool = False) -> DataItem:
    return DataItem(di, name, length, decimals, signed)


ITEMS: dict[int, DataItem] = {
    i.di: i
    for i in (
        _item(0x00010000, "forward active energy total, kWh", 4, 2),
        _item(0x00010100, "forward active energy rate 1 (sharp), kWh", 4, 2),
        _item(0x00010200, "forward active energy rate 2 (peak), kWh", 4, 2),
        _item(0x00010300, "forward active energy rate 3 (flat), kWh", 4, 2),
        _item(0x00010400, "forward active energy rate 4 (valley), kWh", 4, 2),
        _item(0x00020000, "reverse active energy total, kWh", 4, 2),
        _item(0x02010100, "phase A voltage, V", 2, 1),
        _item(0x02010200, "phase B voltage, V", 2, 1),
        _item(0x02010300, "phase C voltage, V", 2, 1),
        _item(0x02020100, "phase A current, A", 3, 3, True),
        _item(0x02020200, "phase B current, A", 3, 3, True),
        _item(0x02020300, "phase C current, A", 3, 3, True),
        _item(0x02030000, "total active power, kW", 3, 4, True),
        _item(0x02060000, "total power factor", 2, 3, True),
        _item(0x02800002, "grid frequency, Hz", 2, 2),
        _item(0x04000503, "meter running status word 3 (bit 4: relay open)", 2, 0),
        _item(0x00900200, "remaining amount, yuan", 4, 2),
        _item(0x03330201, "purchase count after last purchase", 2, 0),
        _item(0x04050101, "rate 1 price of tariff set 1, yuan/kWh", 4, 4),
    )
}

# 00 01 FF 00 reads total + rates 1..4 in one frame: five 4-byte values in this order.
ENERGY_BLOCK = 0x0001FF00
ENERGY_BLOCK_PARTS = (0x00010000, 0x00010100, 0x00010200, 0x00010300, 0x00010400)
STATUS_WORD_3 = 0x04000503
RELAY_OPEN_BIT = 0x0010  # status word 3, bit 4: 0 = relay closed (power on), 1 = open

# Not in the standard: real meters take remote credit only through ESAM security
# authentication (control code 03). The simulator and this driver use a vendor-range write
# carrying purchase count (2 bytes BCD) + amount in fen (4 bytes BCD).
VENDOR_CREDIT = 0x04FE0001
CREDIT_FORMAT = (DataItem(VENDOR_CREDIT, "purchase count", 2, 0), DataItem(VENDOR_CREDIT, "amount, fen", 4, 0))


def decode_block(raw: bytes) -> dict[int, Decimal]:
    """Split an energy block reply into its five DI values."""
    out: dict[int, Decimal] = {}
    for n, di in enumerate(ENERGY_BLOCK_PARTS):
        out[di] = ITEMS[di].decode(raw[n * 4 : n * 4 + 4])
    return out


def encode_block(values: dict[int, Decimal]) -> bytes:
    return b"".join(ITEMS[di].encode(values[di]) for di in ENERGY_BLOCK_PARTS)

# DI -> (MeterSample / profile key, factor from the DI's unit to the base unit: Wh, W, fen, 1e-4 yuan)
SAMPLE_KEYS: dict[int, tuple[str, Decimal]] = {
    0x00010000: ("energy_total", Decimal(1000)),
    0x00010100: ("rate_sharp", Decimal(1000)),
    0x00010200: ("rate_peak", Decimal(1000)),
    0x00010300: ("rate_flat", Decimal(1000)),
    0x00010400: ("rate_valley", Decimal(1000)),
    0x02010100: ("voltage_v", Decimal(1)),
    0x02020100: ("current_a", Decimal(1)),
    0x02030000: ("power_w", Decimal(1000)),
    0x02060000: ("power_factor", Decimal(1)),
    0x02800002: ("frequency_hz", Decimal(1)),
    0x00900200: ("meter_balance_fen", Decimal(100)),
    0x03330201: ("purchase_count", Decimal(1)),
    0x04050101: ("price_e4", Decimal(10000)),
}
PRICE_DI, DATE_DI, TIME_DI = 0x04050101, 0x04000101, 0x04000102
