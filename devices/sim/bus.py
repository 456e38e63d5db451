"""One simulated RS485 bus behind a gateway TCP port: framing, faults and serial timing."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Protocol

from devices.driver import BusEndpoint, BusProtocol
from devices.sim.dlt645_server import Dlt645Side
from devices.sim.meter import SimMeter
from devices.sim.modbus_server import ModbusRtuSide, ModbusTcpSide

BITS_PER_BYTE = 11  # Modbus RTU character: start, 8 data, parity (or 2nd stop), stop
SILENCE_CHARS = 3.5  # Modbus inter-frame gap, counted before the request and the reply


def byte_time_s(baud: int) -> float:
    return BITS_PER_BYTE / baud


def exchange_time_s(wire_bytes: int, baud: int) -> float:
    """Wire time of one request/reply exchange on the bus, gaps included."""
    return (wire_bytes + 2 * SILENCE_CHARS) * byte_time_s(baud)


@dataclass
class Faults:
    """Fault injection for one bus; rates are probabilities per request."""

    drop_rate: float = 0.0
    corrupt_rate: float = 0.0
    latency_s: float = 0.0
    offline_windows: tuple[tuple[float, float], ...] = ()  # (from_s, to_s) after start, real time
    lose_write_replies: int = 0  # the next N writes are applied but their reply is lost


class Side(Protocol):
    async def read_request(self, reader: asyncio.StreamReader) -> bytes: ...
    def respond(self, raw: bytes) -> tuple[SimMeter | None, bytes | None, int]: ...


SIDES = {"modbus_rtu_tcp": ModbusRtuSide, "modbus_tcp": ModbusTcpSide, "dlt645_tcp": Dlt645Side}


@dataclass
class SimBus:
    """A gateway downlink: its meters, one request at a time, optional 9600-baud timing."""

    gateway: str
    port: int
    protocol: BusProtocol
    meters: dict[str, SimMeter]
    faults: Faults = field(default_factory=Faults)
    baud: int | None = None  # serial timing mode when set
    seed: int = 0
    host: str = "127.0.0.1"
    tcp_port: int = 0
    forced_offline: bool = False
    exchanges: int = 0
    wire_s: float = 0.0  # serial wire time of every exchange so far (timing mode): how long the bus was busy
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _t0: float = field(default_factory=time.monotonic)
    _rng: random.Random = field(default_factory=random.Random)

    @property
    def endpoint(self) -> BusEndpoint:
        return BusEndpoint(self.gateway, self.port, self.host, self.tcp_port, self.protocol)

    @property
    def offline(self) -> bool:
        elapsed = time.monotonic() - self._t0
        return self.forced_offline or any(a <= elapsed < b for a, b in self.faults.offline_windows)

    async def start(self) -> None:
        self._rng.seed(self.seed)
        self._server = await asyncio.start_server(self._serve, self.host, self.tcp_port)
        self.tcp_port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._drop_connections()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    def set_offline(self, offline: bool) -> None:
        """Gateway link down: existing connections cut, new ones closed at once."""
        self.forced_offline = offline
        if offline:
            self._drop_connections()

    def _drop_connections(self) -> None:
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.offline:
            writer.close()
            return
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        side: Side = SIDES[self.protocol](self.meters)
        try:
            while not self.offline:
                raw = await side.read_request(reader)
                reply = await self._exchange(side, raw)
                if reply is not None and not self.offline:
                    writer.write(reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # client gone or simulator stopping: either way this connection is over
        finally:
            self._handlers.discard(task)  # type: ignore[arg-type]
            self._writers.discard(writer)
            writer.close()

    async def _exchange(self, side: Side, raw: bytes) -> bytes | None:
        """Hold the bus for the exchange's wire time; apply faults to the reply."""
        async with self._lock:
            writes = sum(m.writes for m in self.meters.values()) if self.faults.lose_write_replies else 0
            meter, reply, wire = side.respond(raw)
            self.exchanges += 1
            if meter is not None and meter.dead:
                reply = None
            if self.faults.lose_write_replies and sum(m.writes for m in self.meters.values()) > writes:
                self.faults.lose_write_replies -= 1
                reply = None
            if reply is None:
                wire = len(raw)
            elif self._rng.random() < self.faults.drop_rate:
                reply = None
            elif self._rng.random() < self.faults.corrupt_rate:
                at = self._rng.randrange(len(reply) // 2, len(reply))  # body / checksum, not the preamble
                reply = reply[:at] + bytes([reply[at] ^ 0x5A]) + reply[at + 1 :]
            wire_time = exchange_time_s(wire, self.baud) if self.baud else 0.0
            self.wire_s += wire_time
            delay = self.faults.latency_s + wire_time
            if delay:
                await asyncio.sleep(delay)
            return reply
