"""The simulator's Modbus side: RTU / TCP framing and a PDU handler over a SimMeter."""

from __future__ import annotations

import asyncio
import struct
from datetime import datetime, timezone

from devices.profiles import PROFILES, ModbusProfile, encode_registers
from devices.sim.meter import SimMeter

ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE, DEVICE_FAILURE = 0x01, 0x02, 0x03, 0x04


def crc16(data: bytes) -> int:
    """Modbus CRC-16 (poly 0xA001 reflected, init 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(frame: bytes) -> bytes:
    return frame + struct.pack("<H", crc16(frame))


async def read_rtu_request(reader: asyncio.StreamReader) -> bytes:
    """One RTU request frame off the stream (length from the function code)."""
    head = await reader.readexactly(2)
    if head[1] in (15, 16):
        fixed = await reader.readexactly(5)
        return head + fixed + await reader.readexactly(fixed[4] + 2)
    return head + await reader.readexactly(6)


async def read_tcp_request(reader: asyncio.StreamReader) -> bytes:
    """One Modbus TCP ADU: MBAP header (7 bytes) + PDU."""
    mbap = await reader.readexactly(7)
    (length,) = struct.unpack(">H", mbap[4:6])
    return mbap + await reader.readexactly(length - 1)


def _words(meter: SimMeter, profile: ModbusProfile) -> dict[int, int]:
    words = encode_registers(profile, meter.values())
    if profile.clock_address is not None:
        t = meter.meter_time().astimezone(timezone.utc)
        for i, v in enumerate((t.year, t.month, t.day, t.hour, t.minute, t.second)):
            words[profile.clock_address + i] = v
    return words


def _read(meter: SimMeter, profile: ModbusProfile, pdu: bytes) -> bytes:
    start, count = struct.unpack(">HH", pdu[1:5])
    if not 1 <= count <= 125:
        return bytes([pdu[0] | 0x80, ILLEGAL_VALUE])
    words = _words(meter, profile)
    return bytes([pdu[0], count * 2]) + b"".join(struct.pack(">H", words.get(a, 0)) for a in range(start, start + count))


def _write(meter: SimMeter, profile: ModbusProfile, pdu: bytes) -> bytes:
    start, count = struct.unpack(">HH", pdu[1:5])
    values = list(struct.unpack(f">{count}H", pdu[6 : 6 + 2 * count]))
    ok = _apply_write(meter, profile, start, values)
    if ok is None:
        return bytes([pdu[0] | 0x80, ILLEGAL_ADDRESS])
    return pdu[:5] if ok else bytes([pdu[0] | 0x80, ILLEGAL_VALUE])


def _apply_write(meter: SimMeter, profile: ModbusProfile, start: int, values: list[int]) -> bool | None:
    """True applied, False refused, None no such writable address."""
    price = profile.by_key.get("price_e4")
    if start == profile.relay_address and tuple(values) in (profile.relay_open, profile.relay_close):
        return meter.set_relay(tuple(values) == profile.relay_close)
    if start == profile.credit_address and len(values) == 4:
        return meter.apply_credit((values[0] << 16) | values[1], (values[2] << 16) | values[3])
    if price is not None and start == price.address and len(values) == 2:
        meter.price_e4 = (values[0] << 16) | values[1]
        return True
    if start == profile.clock_address and len(values) == 6:
        try:
            meter.set_time(datetime(*values, tzinfo=timezone.utc))  # type: ignore[misc]
        except ValueError:
            return False
        return True
    return None


HANDLERS = {3: _read, 4: _read, 16: _write}


def handle_pdu(meter: SimMeter, pdu: bytes) -> bytes:
    """Request PDU -> reply PDU (an exception reply for what the meter refuses)."""
    profile = PROFILES[meter.profile_key]
    assert isinstance(profile, ModbusProfile)
    handler = HANDLERS.get(pdu[0])
    if handler is None:
        return bytes([pdu[0] | 0x80, ILLEGAL_FUNCTION])
    try:
        return handler(meter, profile, pdu)
    except struct.error:
        return bytes([pdu[0] | 0x80, ILLEGAL_VALUE])


class ModbusRtuSide:
    """RTU frames on the socket (transparent RS485 gateway); bad CRC -> silence, like a meter."""

    read_request = staticmethod(read_rtu_request)

    def __init__(self, meters: dict[str, SimMeter]) -> None:
        self.meters = meters

    def respond(self, raw: bytes) -> tuple[SimMeter | None, bytes | None, int]:
        """-> (meter addressed, reply bytes or None, bytes on the RS485 wire both ways)."""
        if crc16(raw[:-2]) != struct.unpack("<H", raw[-2:])[0]:
            return None, None, len(raw)
        meter = self.meters.get(str(raw[0]))
        if meter is None:
            return None, None, len(raw)
        reply = with_crc(raw[:1] + handle_pdu(meter, raw[1:-2]))
        return meter, reply, len(raw) + len(reply)


class ModbusTcpSide:
    """Modbus TCP gateway: MBAP in, RTU on the bus (wire size counted as RTU)."""

    read_request = staticmethod(read_tcp_request)

    def __init__(self, meters: dict[str, SimMeter]) -> None:
        self.meters = meters

    def respond(self, raw: bytes) -> tuple[SimMeter | None, bytes | None, int]:
        meter = self.meters.get(str(raw[6]))
        if meter is None:
            return None, None, len(raw) - 4
        pdu = handle_pdu(meter, raw[7:])
        reply = raw[:4] + struct.pack(">HB", len(pdu) + 1, raw[6]) + pdu
        return meter, reply, len(raw) - 4 + len(reply) - 4
