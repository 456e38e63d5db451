"""DL/T 645-2007 driver over a transparent RS485-to-TCP gateway socket."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from decimal import Decimal

from devices import dlt645
from devices.dlt645 import Frame
from devices.dlt645_items import (
    CREDIT_FORMAT, DATE_DI, ENERGY_BLOCK, ITEMS, PRICE_DI, RELAY_OPEN_BIT, SAMPLE_KEYS,
    STATUS_WORD_3, TIME_DI, VENDOR_CREDIT, decode_block,
)  # fmt: skip
from devices.driver import BusEndpoint, sample_from_values
from devices.errors import DeviceError, MeterTimeout, NotSupported
from devices.profiles import Dlt645Profile, Profile
from devices.sample import MeterSample

RELAY_VALID_FOR_S = 600  # validity window carried in a 1C command


class Dlt645Driver:
    """One TCP stream per bus; frames out, the first matching reply back (garbage skipped)."""

    def __init__(self, bus: BusEndpoint, timeout_s: float = 1.0, password: bytes = b"\x02\x00\x00\x00",
                 operator: bytes = b"\x00\x00\x00\x00") -> None:  # fmt: skip
        self.bus, self.timeout_s, self.password, self.operator = bus, timeout_s, password, operator
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def _stream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._conn is None:
            try:
                self._conn = await asyncio.wait_for(asyncio.open_connection(self.bus.host, self.bus.tcp_port), self.timeout_s)
            except (OSError, asyncio.TimeoutError) as ex:
                raise MeterTimeout(f"gateway {self.bus.gateway}:{self.bus.port} not reachable") from ex
        return self._conn

    async def _send(self, request: Frame) -> None:
        _, writer = await self._stream()
        try:
            writer.write(dlt645.encode_frame(request))
            await writer.drain()
        except OSError as ex:
            await self.close()
            raise MeterTimeout(f"gateway {self.bus.gateway}:{self.bus.port} write failed") from ex

    async def exchange(self, request: Frame) -> Frame:
        """Send one frame and wait for its reply; MeterRejected for an abnormal reply."""
        await self._send(request)
        reader, _ = await self._stream()
        decoder = dlt645.StreamDecoder()
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    chunk = await reader.read(512)
                    if not chunk:
                        raise ConnectionResetError("gateway closed the connection")
                    for item in decoder.feed(chunk):
                        if isinstance(item, Frame) and item.is_reply and item.address == request.address:
                            return dlt645.check_reply(item, request)
        except (asyncio.TimeoutError, OSError) as ex:
            await self.close()  # a late reply must not be taken for the next request's answer
            raise MeterTimeout(f"meter {request.address}: no reply ({type(ex).__name__})") from ex

    async def read_di(self, address: str, di: int) -> bytes:
        reply = await self.exchange(dlt645.read_request(address, di))
        if reply.data[:4] != di.to_bytes(4, "little"):
            raise DeviceError(f"meter {address} answered DI {reply.data[:4][::-1].hex()}, asked {di:08x}")
        return reply.data[4:]

    async def _values(self, address: str, di: int) -> dict[str, float | int]:
        raw = await self.read_di(address, di)
        if di == ENERGY_BLOCK:
            return {SAMPLE_KEYS[d][0]: int(v * SAMPLE_KEYS[d][1]) for d, v in decode_block(raw).items()}
        if di == STATUS_WORD_3:
            return {"relay_closed": int(not int.from_bytes(raw[:2], "little") & RELAY_OPEN_BIT)}
        if di not in SAMPLE_KEYS:
            raise NotSupported(f"DI {di:08x} has no sample key")
        key, factor = SAMPLE_KEYS[di]
        value = ITEMS[di].decode(raw[: ITEMS[di].length]) * factor
        return {key: int(value) if key in ("energy_total", "meter_balance_fen", "purchase_count", "price_e4") else float(value)}

    async def read(self, address: str, profile: Profile) -> MeterSample:
        """One frame per DI in the profile; taken_at is when the first answered."""
        if not isinstance(profile, Dlt645Profile):
            raise NotSupported(f"{profile.key} is not a DL/T 645 profile")
        values: dict[str, float | int] = {}
        taken_at = datetime.now(timezone.utc)
        for di in profile.reads:
            values |= await self._values(address, di)
        return sample_from_values(self.bus, address, taken_at, values)

    async def set_relay(self, address: str, closed: bool) -> None:
        """1C: trip, or allow closing (the tenant's switch or the meter then closes)."""
        op = dlt645.RELAY_ALLOW_CLOSE if closed else dlt645.RELAY_TRIP
        until = datetime.now(timezone.utc).replace(microsecond=0) + _seconds(RELAY_VALID_FOR_S)
        await self.exchange(dlt645.relay_request(address, op, until, self.password, self.operator))

    async def read_relay(self, address: str) -> bool:
        return bool((await self._values(address, STATUS_WORD_3))["relay_closed"])

    async def push_credit(self, address: str, amount_fen: int, purchase_count: int) -> None:
        value = CREDIT_FORMAT[0].encode(purchase_count) + CREDIT_FORMAT[1].encode(amount_fen)
        await self.exchange(dlt645.write_request(address, VENDOR_CREDIT, value, self.password, self.operator))

    async def read_purchase_count(self, address: str) -> int:
        return int((await self._values(address, 0x03330201))["purchase_count"])

    async def set_price(self, address: str, price_e4: int) -> None:
        value = ITEMS[PRICE_DI].encode(Decimal(price_e4).scaleb(-4))
        await self.exchange(dlt645.write_request(address, PRICE_DI, value, self.password, self.operator))

    async def read_price(self, address: str) -> int:
        return int((await self._values(address, PRICE_DI))["price_e4"])

    async def time_sync(self, address: str, now: datetime) -> None:
        """Broadcast 08 (no reply by design); `address` is ignored: every meter on the bus syncs."""
        await self._send(dlt645.time_sync_request(now.astimezone(timezone.utc)))

    async def read_clock(self, address: str) -> datetime:
        date, clock = await self.read_di(address, DATE_DI), await self.read_di(address, TIME_DI)
        _, dd, mo, yy = (dlt645.bcd_decode(date[i : i + 1]) for i in range(4))
        ss, mi, hh = (dlt645.bcd_decode(clock[i : i + 1]) for i in range(3))
        try:
            return datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=timezone.utc)
        except ValueError as ex:
            raise DeviceError(f"meter {address} clock unreadable") from ex

    async def close(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
            self._conn = None


def _seconds(n: int):  # noqa: ANN202 - tiny helper keeps set_relay on one line
    from datetime import timedelta

    return timedelta(seconds=n)
