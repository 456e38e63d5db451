"""The meter simulator: N gateways x M meters over Modbus RTU-over-TCP, Modbus TCP, DL/T 645.

`run_simulator(config)` binds every bus on a loopback port and returns a handle; tests and
`python app.py simulate` (via `cli_main`) both use it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from dataclasses import dataclass, field

from devices.driver import BusEndpoint, BusProtocol
from devices.mqtt import Topics
from devices.profiles import PROFILES, Dlt645Profile, Profile
from devices.sim.bus import Faults, SimBus
from devices.sim.meter import SimClock, SimMeter
from devices.sim.mqtt_gateway import SimMqttGateway


@dataclass(frozen=True)
class GatewaySpec:
    """One gateway: its protocol, downlinks (buses) and meters per bus, all of one profile."""

    code: str
    protocol: BusProtocol = "modbus_rtu_tcp"
    buses: int = 1
    meters_per_bus: int = 4
    profile: str = "acrel_ddsy1352"
    faults: Faults = field(default_factory=Faults)


@dataclass(frozen=True)
class SimConfig:
    gateways: tuple[GatewaySpec, ...] = (GatewaySpec("gw1"),)
    speed: float = 1.0  # simulated seconds per real second
    baud: int | None = None  # serial timing mode (e.g. 9600) when set
    host: str = "127.0.0.1"
    seed: int = 1
    mqtt_gateways: int = 0  # 4G gateways publishing to the broker below
    mqtt_meters: int = 4
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_prefix: str = "meterpay"
    mqtt_interval_s: float = 5.0


def meter_address(protocol: BusProtocol, gateway_no: int, bus_no: int, n: int) -> str:
    """Modbus unit id (1..247) or a 12-digit DL/T 645 address unique in the simulator."""
    return f"{gateway_no:04d}{bus_no:02d}{n:06d}" if protocol == "dlt645_tcp" else str(n)


@dataclass
class SimulatorHandle:
    buses: list[SimBus]
    clock: SimClock
    mqtt: list[SimMqttGateway] = field(default_factory=list)

    @property
    def endpoints(self) -> list[BusEndpoint]:
        return [b.endpoint for b in self.buses]

    def bus(self, gateway: str, port: int) -> SimBus:
        return next(b for b in self.buses if b.gateway == gateway and b.port == port)

    def meter(self, gateway: str, port: int, address: str) -> SimMeter:
        return self.bus(gateway, port).meters[address]

    def meter_list(self) -> list[tuple[BusEndpoint, str, Profile]]:
        """(bus, address, profile) for every simulated meter: what a poller is configured with."""
        return [(b.endpoint, a, PROFILES[m.profile_key]) for b in self.buses for a, m in b.meters.items()]

    def set_gateway_offline(self, gateway: str, offline: bool) -> None:
        for bus in self.buses:
            if bus.gateway == gateway:
                bus.set_offline(offline)

    async def stop(self) -> None:
        await asyncio.gather(*(b.stop() for b in self.buses), *(g.stop() for g in self.mqtt))


def _meter(address: str, profile_key: str, clock: SimClock, seed: int) -> SimMeter:
    medium = PROFILES[profile_key].medium
    meter = SimMeter(address, profile_key, clock, medium=medium, base_load_w=60.0 if medium == "water" else 800.0)
    meter._rng.seed(seed)
    return meter


async def run_simulator(config: SimConfig) -> SimulatorHandle:
    """Start every bus server; ports are chosen by the OS (port 0)."""
    clock = SimClock(speed=config.speed)
    buses: list[SimBus] = []
    for g, spec in enumerate(config.gateways, start=1):
        if (spec.protocol == "dlt645_tcp") != isinstance(PROFILES[spec.profile], Dlt645Profile):
            raise ValueError(f"profile {spec.profile} does not speak {spec.protocol}")
        for p in range(1, spec.buses + 1):
            meters = {}
            for n in range(1, spec.meters_per_bus + 1):
                address = meter_address(spec.protocol, g, p, n)
                meters[address] = _meter(address, spec.profile, clock, config.seed * 100_003 + g * 1000 + p * 100 + n)
            seed = config.seed + g * 31 + p
            buses.append(SimBus(spec.code, p, spec.protocol, meters, spec.faults, config.baud, seed, config.host))
    handle = SimulatorHandle(buses, clock, _mqtt_gateways(config, clock))
    try:
        for bus in buses:
            await bus.start()
    except OSError:
        await handle.stop()
        raise
    for gateway in handle.mqtt:
        gateway.start()
    return handle


def _mqtt_gateways(config: SimConfig, clock: SimClock) -> list[SimMqttGateway]:
    topics = Topics(config.mqtt_prefix)
    out = []
    for g in range(1, config.mqtt_gateways + 1):
        meters = {str(n): _meter(str(n), "acrel_ddsy1352", clock, config.seed * 7919 + g * 100 + n) for n in range(1, config.mqtt_meters + 1)}
        out.append(SimMqttGateway(f"4g{g}", meters, topics, config.mqtt_host, config.mqtt_port, config.mqtt_interval_s))
    return out


def parse_args(argv: list[str]) -> tuple[SimConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="simulate", description="Run the meter simulator.")
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--buses", type=int, default=2, help="RS485 downlinks per gateway")
    parser.add_argument("--meters", type=int, default=8, help="meters per bus")
    parser.add_argument("--protocol", default="modbus_rtu_tcp", choices=["modbus_rtu_tcp", "modbus_tcp", "dlt645_tcp"])
    parser.add_argument("--profile", default=None, help="profile key (default fits the protocol)")
    parser.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second")
    parser.add_argument("--baud", type=int, default=None, help="emulate serial timing at this baud rate")
    parser.add_argument("--drop", type=float, default=0.0, help="probability a reply is dropped")
    parser.add_argument("--mqtt-gateways", type=int, default=0, help="4G gateways publishing over MQTT")
    parser.add_argument("--mqtt", default="127.0.0.1:1883", help="broker host:port")
    parser.add_argument("--mqtt-prefix", default="meterpay")
    args = parser.parse_args(argv)
    profile = args.profile or ("dlt645_single_phase" if args.protocol == "dlt645_tcp" else "acrel_ddsy1352")
    faults = Faults(drop_rate=args.drop)
    gateways = tuple(
        GatewaySpec(f"gw{g}", args.protocol, args.buses, args.meters, profile, faults) for g in range(1, args.gateways + 1)
    )
    host, _, port = args.mqtt.rpartition(":")
    mqtt = {"mqtt_gateways": args.mqtt_gateways, "mqtt_host": host, "mqtt_port": int(port), "mqtt_prefix": args.mqtt_prefix}
    return SimConfig(gateways, speed=args.speed, baud=args.baud, **mqtt), args


async def serve_forever(config: SimConfig) -> None:
    """Run until SIGINT/SIGTERM, printing one JSON line per bus so tools can find the ports."""
    handle = await run_simulator(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    for bus in handle.buses:
        line = {"gateway": bus.gateway, "port": bus.port, "tcp_port": bus.tcp_port, "protocol": bus.protocol}
        print(json.dumps(line | {"meters": list(bus.meters)}), flush=True)
    try:
        await stop.wait()
    finally:
        await handle.stop()


def cli_main(argv: list[str]) -> int:
    """Entry for `python app.py simulate ...` and `python -m devices.sim ...`."""
    config, _ = parse_args(argv)
    asyncio.run(serve_forever(config))
    return 0
