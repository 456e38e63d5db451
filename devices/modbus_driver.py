"""Modbus driver (pymodbus): RTU frames over a transparent TCP gateway, or Modbus TCP."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from devices.driver import BusEndpoint, sample_from_values
from devices.errors import DeviceError, MeterRejected, MeterTimeout, NotSupported
from devices.profiles import ModbusProfile, Profile, decode_registers
from devices.sample import MeterSample

FRAMERS = {"modbus_rtu_tcp": FramerType.RTU, "modbus_tcp": FramerType.SOCKET}


class ModbusDriver:
    """One pymodbus client per bus; the hub guarantees one request at a time."""

    def __init__(self, bus: BusEndpoint, profiles: Mapping[str, ModbusProfile], timeout_s: float = 1.0) -> None:
        self.bus, self.profiles, self.timeout_s = bus, profiles, timeout_s
        self._client: AsyncModbusTcpClient | None = None

    async def _connected(self) -> AsyncModbusTcpClient:
        if self._client is None or not self._client.connected:
            if self._client is not None:
                self._client.close()
            client = AsyncModbusTcpClient(
                self.bus.host, port=self.bus.tcp_port, framer=FRAMERS[self.bus.protocol],
                timeout=self.timeout_s, retries=0, reconnect_delay=0,
            )  # fmt: skip
            if not await client.connect():
                client.close()
                raise MeterTimeout(f"gateway {self.bus.gateway}:{self.bus.port} not reachable")
            self._client = client
        return self._client

    async def _call(self, address: str, op: Callable[[AsyncModbusTcpClient, int], Awaitable[Any]]) -> Any:
        """Run one request; translate pymodbus failures (raised or isError()) into DeviceError."""
        client = await self._connected()
        try:
            response = await asyncio.wait_for(op(client, int(address)), self.timeout_s + 0.5)
        except (ModbusException, asyncio.TimeoutError, ConnectionError, OSError) as ex:
            await self.close()  # a late reply would desynchronise RTU framing: start clean
            raise MeterTimeout(f"meter {self.bus.gateway}:{self.bus.port}/{address}: {ex}") from ex
        if response.isError():
            code = getattr(response, "exception_code", None)
            raise MeterRejected(f"meter {address} answered exception {code}", code=code)
        return response

    def _profile(self, address: str) -> ModbusProfile:
        try:
            return self.profiles[address]
        except KeyError as ex:
            raise NotSupported(f"no profile bound for address {address}") from ex

    async def _read_words(self, address: str, start: int, count: int) -> list[int]:
        rr = await self._call(address, lambda c, d: c.read_holding_registers(start, count=count, device_id=d))
        if len(rr.registers) != count:
            raise DeviceError(f"meter {address} returned {len(rr.registers)} registers, asked {count}")
        return list(rr.registers)

    async def _write(self, address: str, start: int, words: list[int]) -> None:
        await self._call(address, lambda c, d: c.write_registers(start, words, device_id=d))

    async def _read_key(self, address: str, key: str) -> int:
        profile = self._profile(address)
        reg = profile.by_key.get(key)
        if reg is None:
            raise NotSupported(f"{profile.key} has no {key} register")
        words = await self._read_words(address, reg.address, reg.count)
        single = ModbusProfile(profile.key, profile.name, profile.medium, (reg,))
        return int(decode_registers(single, reg.address, words)[key])

    async def read(self, address: str, profile: Profile) -> MeterSample:
        """Read the profile's whole register span in one request."""
        if not isinstance(profile, ModbusProfile):
            raise NotSupported(f"{profile.key} is not a Modbus profile")
        start, count = profile.span
        words = await self._read_words(address, start, count)
        taken_at = datetime.now(timezone.utc)
        return sample_from_values(self.bus, address, taken_at, decode_registers(profile, start, words))

    async def set_relay(self, address: str, closed: bool) -> None:
        profile = self._profile(address)
        if profile.relay_address is None:
            raise NotSupported(f"{profile.key} has no relay")
        await self._write(address, profile.relay_address, list(profile.relay_close if closed else profile.relay_open))

    async def read_relay(self, address: str) -> bool:
        return bool(await self._read_key(address, "relay_closed"))

    async def push_credit(self, address: str, amount_fen: int, purchase_count: int) -> None:
        profile = self._profile(address)
        if profile.credit_address is None:
            raise NotSupported(f"{profile.key} takes no credit")
        words = [purchase_count >> 16, purchase_count & 0xFFFF, amount_fen >> 16, amount_fen & 0xFFFF]
        await self._write(address, profile.credit_address, words)

    async def read_purchase_count(self, address: str) -> int:
        return await self._read_key(address, "purchase_count")

    async def set_price(self, address: str, price_e4: int) -> None:
        reg = self._profile(address).by_key.get("price_e4")
        if reg is None:
            raise NotSupported("no price register")
        await self._write(address, reg.address, [price_e4 >> 16, price_e4 & 0xFFFF])

    async def read_price(self, address: str) -> int:
        return await self._read_key(address, "price_e4")

    async def time_sync(self, address: str, now: datetime) -> None:
        clock = self._clock_address(address)
        utc = now.astimezone(timezone.utc)
        await self._write(address, clock, [utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second])

    async def read_clock(self, address: str) -> datetime:
        y, mo, d, h, mi, s = await self._read_words(address, self._clock_address(address), 6)
        try:
            return datetime(y, mo, d, h, mi, s, tzinfo=timezone.utc)
        except ValueError as ex:
            raise DeviceError(f"meter {address} clock unreadable") from ex

    def _clock_address(self, address: str) -> int:
        clock = self._profile(address).clock_address
        if clock is None:
            raise NotSupported("no clock registers")
        return clock

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
