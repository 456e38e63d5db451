"""The simulator's DL/T 645-2007 side: answers read, write, relay control and time sync."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from devices import dlt645
from devices.dlt645 import Frame
from devices.dlt645_items import (
    CREDIT_FORMAT, ENERGY_BLOCK, ENERGY_BLOCK_PARTS, ITEMS, RELAY_OPEN_BIT, STATUS_WORD_3,
    PRICE_DI, SAMPLE_KEYS, VENDOR_CREDIT, encode_block,
)  # fmt: skip
from devices.sim.meter import SimMeter

NO_DATA, OTHER = 0x02, 0x01

# date 04000101 is YYMMDDWW and time 04000102 hhmmss, both sent low byte first
CLOCK_DIS = {
    0x04000101: lambda t: (t.isoweekday() % 7, t.day, t.month, t.year % 100),
    0x04000102: lambda t: (t.second, t.minute, t.hour),
}


def _value(meter: SimMeter, di: int) -> bytes | None:
    values = meter.values()
    if di == ENERGY_BLOCK:
        return encode_block({d: Decimal(values[SAMPLE_KEYS[d][0]]) / SAMPLE_KEYS[d][1] for d in ENERGY_BLOCK_PARTS})
    if di == STATUS_WORD_3:
        return (0 if meter.relay_closed else RELAY_OPEN_BIT).to_bytes(2, "little")
    if di in CLOCK_DIS:
        t = meter.meter_time()
        return bytes(dlt645.bcd_encode(v, 1)[0] for v in CLOCK_DIS[di](t))
    if di not in SAMPLE_KEYS:
        return None
    key, factor = SAMPLE_KEYS[di]
    item = ITEMS[di]
    return item.encode((Decimal(str(values[key])) / factor).quantize(Decimal(1).scaleb(-item.decimals)))


def _read(meter: SimMeter, req: Frame) -> Frame:
    di = int.from_bytes(req.data[:4], "little")
    value = _value(meter, di)
    return dlt645.reply_for(req, error=NO_DATA) if value is None else dlt645.reply_for(req, req.data[:4] + value)


def _write(meter: SimMeter, req: Frame) -> Frame:
    di, value = int.from_bytes(req.data[:4], "little"), req.data[12:]
    if di == PRICE_DI and len(value) == 4:
        meter.price_e4 = int(ITEMS[PRICE_DI].decode(value).scaleb(4))
        return dlt645.reply_for(req)
    if di == VENDOR_CREDIT and len(value) == 6:
        count, amount = int(CREDIT_FORMAT[0].decode(value[:2])), int(CREDIT_FORMAT[1].decode(value[2:]))
        return dlt645.reply_for(req) if meter.apply_credit(count, amount) else dlt645.reply_for(req, error=OTHER)
    return dlt645.reply_for(req, error=OTHER)


RELAY_OPS = {dlt645.RELAY_TRIP: False, dlt645.RELAY_ALLOW_CLOSE: True, dlt645.RELAY_DIRECT_CLOSE: True}


def _relay(meter: SimMeter, req: Frame) -> Frame:
    op = req.data[8] if len(req.data) >= 16 else None
    if op in (dlt645.KEEP_POWER, dlt645.KEEP_POWER_RELEASE, dlt645.ALARM_ON, dlt645.ALARM_OFF):
        return dlt645.reply_for(req)
    if op not in RELAY_OPS:
        return dlt645.reply_for(req, error=OTHER)
    return dlt645.reply_for(req) if meter.set_relay(RELAY_OPS[op]) else dlt645.reply_for(req, error=OTHER)


HANDLERS = {dlt645.READ_DATA: _read, dlt645.WRITE_DATA: _write, dlt645.RELAY_CONTROL: _relay}


class Dlt645Side:
    """One connection's decoder; garbage in is skipped, as a meter's UART would."""

    def __init__(self, meters: dict[str, SimMeter]) -> None:
        self.meters = meters
        self._decoder = dlt645.StreamDecoder()
        self._pending: list[bytes] = []

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        while not self._pending:
            chunk = await reader.read(512)
            if not chunk:
                raise asyncio.IncompleteReadError(b"", None)
            for item in self._decoder.feed(chunk):
                if isinstance(item, Frame):
                    self._pending.append(dlt645.encode_frame(item, preamble=False))
        return self._pending.pop(0)

    def respond(self, raw: bytes) -> tuple[SimMeter | None, bytes | None, int]:
        req = dlt645.decode_frame(raw)
        wire = len(raw) + 4
        if req.function == dlt645.TIME_SYNC and req.address == dlt645.BROADCAST:
            when = dlt645.decode_datetime(req.data[:6])
            for meter in self.meters.values():
                meter.set_time(when.replace(tzinfo=meter.clock.now().tzinfo))
            return None, None, wire
        meter = self.meters.get(req.address)
        handler = HANDLERS.get(req.function)
        if meter is None or handler is None:
            return None, None, wire
        reply = dlt645.encode_frame(handler(meter, req))
        return meter, reply, wire + len(reply)
