"""The field for scale-out trials: every gateway in the database simulated in one process, with a control API.

Wired gateways (one RS485 downlink each) listen on OS-chosen ports, which are written into the
gateway rows so pollers find them exactly as they would find real gateways; MQTT gateways
publish through the broker with store-and-forward. A small HTTP API lets benches inject faults
and read the meters back (the checker compares registers and purchase counters with the books):

    POST /faults {"drop_rate": 0.05}        POST /mqtt/{code}/offline | /online | /replay
    POST /freeze (consumption stops)        GET /meters, GET /stats

    DATABASE_URL=... MQTT_URL=... MQTT_PREFIX=... python -m meterpay.cluster_sim --control-port 8700
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy import select, update

from devices.mqtt import Topics
from devices.sample import MeterSample
from devices.sim import SimulatorHandle
from devices.sim.bus import Faults
from devices.sim.meter import SimClock, SimMeter
from devices.sim.mqtt_gateway import SimMqttGateway
from meterpay.settings import Settings
from services.meter_mqtt import broker_address
from services.meter_runtime import FleetMeter, load_fleet, profile_for
from services.meter_sim import fleet_simulator, sim_meter
from store.db import make_engine, make_sessionmaker
from store.models import Gateway, Meter

log = logging.getLogger(__name__)


class RecordingGateway(SimMqttGateway):
    """A simulated 4G gateway that also keeps everything it ever read, to replay it on demand."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.history: list[MeterSample] = []

    def take_readings(self) -> None:
        before = len(self.buffer)
        super().take_readings()
        self.history.extend(self.buffer[before:])

    def replay(self) -> int:
        """Queue the whole history again (oldest first), as a gateway re-sending its store does."""
        self.buffer[:0] = list(self.history)
        self._reconnect.set()
        return len(self.history)


@dataclass
class Field:
    """The simulated field and its shared fault switches."""

    wired: SimulatorHandle
    mqtt: dict[str, RecordingGateway]
    faults: Faults
    clocks: list[SimClock] = field(default_factory=list)
    replays: int = 0

    def freeze(self) -> None:
        """Stop consumption (registers keep their value) so the books can be compared with the meters."""
        for clock in self.clocks:
            clock.start, clock._t0, clock.speed = clock.now(), time.monotonic(), 0.0

    def meters(self) -> list[dict[str, Any]]:
        out = []
        for bus in self.wired.buses:
            out += [_meter_state(bus.gateway, bus.port, a, m) for a, m in bus.meters.items()]
        for code, gw in self.mqtt.items():
            out += [_meter_state(code, 1, a, m) for a, m in gw.meters.items()]
        return out

    def stats(self) -> dict[str, Any]:
        return {"buses": len(self.wired.buses), "mqtt_gateways": len(self.mqtt), "drop_rate": self.faults.drop_rate,
                "exchanges": sum(b.exchanges for b in self.wired.buses),
                "mqtt_published": sum(g.published for g in self.mqtt.values()),
                "mqtt_buffered": sum(len(g.buffer) for g in self.mqtt.values()), "replays": self.replays}

    async def stop(self) -> None:
        await self.wired.stop()
        await asyncio.gather(*(g.stop() for g in self.mqtt.values()))


def _meter_state(gateway: str, port: int, address: str, m: SimMeter) -> dict[str, Any]:
    m.advance()
    return {"gateway": gateway, "port": port, "address": address, "energy": m.energy, "relay_closed": m.relay_closed,
            "purchase_count": m.purchase_count, "balance_fen": m.balance_fen, "credits": m.credits_applied,
            "relay_writes": m.relay_writes}


async def mqtt_fleet(session: Any) -> dict[str, list[FleetMeter]]:
    """Meters behind MQTT gateways, as FleetMeters (their protocol field is unused)."""
    rows = await session.execute(select(Meter, Gateway).join(Gateway, Gateway.id == Meter.gateway_id)
                                 .where(Gateway.protocol == "mqtt").order_by(Gateway.code, Meter.id))
    out: dict[str, list[FleetMeter]] = {}
    for m, gw in rows.all():
        out.setdefault(gw.code, []).append(FleetMeter(
            m.id, gw.code, m.port, m.address, "modbus_rtu_tcp", profile_for(m.model, m.utility, "mqtt"),
            m.billing_side, m.relay_closed, m.last_total or 0, None, m.purchase_count or 0, m.meter_balance_fen,
            None, None))
    return out


async def start_field(settings: Settings, speed: float, mqtt_interval_s: float, drop_rate: float = 0.0) -> Field:
    """Simulate every gateway in the database; point the wired gateway rows at the simulator."""
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    try:
        async with sessions() as session:
            fleet = [f for f in await load_fleet(session) if f.port == 1]
            by_mqtt = await mqtt_fleet(session)
        faults = Faults(drop_rate=drop_rate)
        wired = await fleet_simulator(fleet, speed=speed, faults={f.gateway: faults for f in fleet})
        async with sessions.begin() as session:
            for bus in wired.buses:
                await session.execute(update(Gateway).where(Gateway.code == bus.gateway)
                                      .values(host=bus.host, port=bus.tcp_port))
    finally:
        await engine.dispose()
    clocks = [wired.clock]
    mqtt: dict[str, RecordingGateway] = {}
    if by_mqtt and settings.mqtt_url:
        host, port, _, _ = broker_address(settings.mqtt_url)
        clock = SimClock()  # MQTT readings carry the meter's own clock: real time, with consumption x speed
        clocks.append(clock)
        for n, (code, members) in enumerate(sorted(by_mqtt.items()), start=1):
            meters = {}
            for f in members:
                meter = sim_meter(f, clock, 7919 * n + f.meter_id)
                meter.base_load_w *= speed
                meters[f.address] = meter
            mqtt[code] = RecordingGateway(code, meters, Topics(settings.mqtt_prefix), host, port, mqtt_interval_s)
            mqtt[code].start()
    return Field(wired, mqtt, faults, clocks)


def control_app(fld: Field) -> web.Application:
    """The control API (loopback only)."""
    async def faults(request: web.Request) -> web.Response:
        body = await request.json()
        fld.faults.drop_rate = float(body.get("drop_rate", fld.faults.drop_rate))
        return web.json_response(fld.stats())

    async def mqtt(request: web.Request) -> web.Response:
        gw, action = fld.mqtt[request.match_info["code"]], request.match_info["action"]
        if action == "replay":
            fld.replays += 1
            return web.json_response({"replayed": gw.replay()})
        gw.set_online(action == "online")
        return web.json_response({"online": gw.online, "buffered": len(gw.buffer)})

    async def freeze(_: web.Request) -> web.Response:
        fld.freeze()
        return web.json_response({"frozen": True})

    app = web.Application()
    app.router.add_post("/faults", faults)
    app.router.add_post("/mqtt/{code}/{action:offline|online|replay}", mqtt)
    app.router.add_post("/freeze", freeze)
    app.router.add_get("/meters", lambda _: _json(fld.meters()))
    app.router.add_get("/stats", lambda _: _json(fld.stats()))
    return app


async def _json(data: Any) -> web.Response:
    return web.json_response(data)


async def serve(settings: Settings, control_port: int, speed: float, mqtt_interval_s: float, drop_rate: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    fld = await start_field(settings, speed, mqtt_interval_s, drop_rate)
    runner = web.AppRunner(control_app(fld), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", control_port)
    await site.start()
    port = runner.addresses[0][1]
    print(json.dumps({"ready": True, "control": f"http://127.0.0.1:{port}", **fld.stats()}), flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        with contextlib.suppress(Exception):
            await fld.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--speed", type=float, default=10.0, help="consumption speed-up")
    parser.add_argument("--mqtt-interval", type=float, default=5.0, help="seconds between 4G gateway reports")
    parser.add_argument("--drop", type=float, default=0.0, help="share of wired replies dropped")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s sim: %(message)s")
    asyncio.run(serve(Settings.from_env(), args.control_port, args.speed, args.mqtt_interval, args.drop))


if __name__ == "__main__":
    main()


__all__ = ["Field", "RecordingGateway", "control_app", "start_field"]
