"""The demo's field: simulated buses and meters built from the database's gateways and meters.

Each simulated meter starts where the database left it (register total, relay/valve state,
purchase counter, meter-side balance) so the first live reading continues the history rather
than looking like a reset. Platform-billed meters do not trip on their own balance; meter-side
ones do. `speed` accelerates consumption only: readings are stamped by the driver in real time.
"""

from __future__ import annotations

from collections import defaultdict

from devices.driver import BusEndpoint
from devices.profiles import Profile
from devices.sim import SimulatorHandle
from devices.sim.bus import Faults, SimBus
from devices.sim.meter import SimClock, SimMeter
from services.meter_runtime import BusKey, FleetMeter

WATER_BASE_L_PER_H = 60.0
ELECTRIC_BASE_W = 800.0


def sim_meter(f: FleetMeter, clock: SimClock, seed: int) -> SimMeter:
    water = f.profile.medium == "water"
    meter = SimMeter(f.address, f.profile.key, clock, medium=f.profile.medium,
                     base_load_w=WATER_BASE_L_PER_H if water else ELECTRIC_BASE_W,
                     meter_billing=f.billing_side == "meter", relay_closed=f.relay_closed,
                     balance_fen=float(f.meter_balance_fen or 0) if f.billing_side == "meter" else 0.0,
                     purchase_count=f.purchase_count, energy=float(_round_up(f.last_total, _resolution(f.profile))))
    if f.base_rates and sum(f.base_rates) <= f.last_total:
        meter.rates = [float(r) for r in f.base_rates]
    meter._rng.seed(seed)
    return meter


def _resolution(profile: Profile) -> int:
    """Base units per step of the total register (0.01 kWh = 10 Wh unless the map says otherwise)."""
    reg = getattr(profile, "by_key", {}).get("energy_total")
    return max(int(reg.scale), 1) if reg is not None else 10


def _round_up(total: int, step: int) -> int:
    """Start on a register step at or above the last reading, so the first read is never backward."""
    return -(-total // step) * step


async def fleet_simulator(fleet: list[FleetMeter], speed: float = 1.0, faults: dict[str, Faults] | None = None,
                          baud: int | None = None, host: str = "127.0.0.1", seed: int = 1) -> SimulatorHandle:
    """One simulated bus per (gateway, downlink) of the fleet, each on an OS-chosen port."""
    clock = SimClock(speed=speed)
    by_bus: dict[BusKey, list[FleetMeter]] = defaultdict(list)
    for f in fleet:
        by_bus[(f.gateway, f.port)].append(f)
    buses = []
    for n, ((gateway, port), members) in enumerate(sorted(by_bus.items()), start=1):
        meters = {f.address: sim_meter(f, clock, seed * 100_003 + f.meter_id) for f in members}
        bus_faults = (faults or {}).get(gateway) or Faults()
        buses.append(SimBus(gateway, port, members[0].protocol, meters, bus_faults, baud, seed + n, host))
    handle = SimulatorHandle(buses, clock)
    try:
        for bus in buses:
            await bus.start()
    except OSError:
        await handle.stop()
        raise
    return handle


def sim_endpoints(handle: SimulatorHandle) -> dict[BusKey, BusEndpoint]:
    """Where each simulated bus listens: what the poller is pointed at instead of the DB's host/port."""
    return {(b.gateway, b.port): b.endpoint for b in handle.buses}
