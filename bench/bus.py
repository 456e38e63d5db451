"""Bus benchmark: polls/s per RS485 bus against the 9600-baud wire-time limit, 1 / 4 / 16 buses.

The simulator runs in its own process with serial timing on (each byte costs 11 bits of wire
time, 3.5-character gaps before request and reply); this process runs the real poller with
the Modbus RTU-over-TCP driver and counts readings. Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devices.driver import BusEndpoint  # noqa: E402
from devices.poller import PollPolicy, Poller  # noqa: E402
from devices.profiles import ACREL_DDSY1352  # noqa: E402
from devices.sample import MeterSample  # noqa: E402
from devices.sim.bus import exchange_time_s  # noqa: E402

BAUD, METERS_PER_BUS = 9600, 8


def poll_wire_bytes() -> int:
    """RTU read of the profile's span: 8-byte request, 5 + 2n byte reply."""
    _, count = ACREL_DDSY1352.span
    return 8 + 5 + 2 * count


async def start_sim(buses: int) -> tuple[asyncio.subprocess.Process, list[BusEndpoint]]:
    args = ["-m", "devices.sim", "--gateways", str(buses), "--buses", "1", "--meters", str(METERS_PER_BUS), "--baud", str(BAUD), "--speed", "1"]
    proc = await asyncio.create_subprocess_exec(sys.executable, *args, stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent)
    endpoints = []
    assert proc.stdout is not None
    for _ in range(buses):
        line = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        endpoints.append(BusEndpoint(line["gateway"], line["port"], "127.0.0.1", line["tcp_port"], line["protocol"]))
    return proc, endpoints


async def measure(buses: int, seconds: float) -> dict[str, float]:
    proc, endpoints = await start_sim(buses)
    counted = {"n": 0}

    async def sink(batch: list[MeterSample]) -> None:
        counted["n"] += len(batch)

    meters = [(ep, str(n), ACREL_DDSY1352) for ep in endpoints for n in range(1, METERS_PER_BUS + 1)]
    poller = Poller(meters, sink, PollPolicy(interval_s=0.0, request_timeout_s=1.0, batch_size=500, flush_s=0.25))
    try:
        await poller.start()
        await asyncio.sleep(1.0)  # warm-up: connections open, first batch out
        await poller.flush()
        before, t0 = counted["n"] + len(poller._batch), time.monotonic()
        await asyncio.sleep(seconds)
        done, elapsed = counted["n"] + len(poller._batch), time.monotonic() - t0
    finally:
        await poller.stop()
        proc.terminate()
        await proc.wait()
    limit = 1 / exchange_time_s(poll_wire_bytes(), BAUD)
    per_bus = (done - before) / elapsed / buses
    return {"polls_per_s": round(per_bus * buses, 1), "per_bus_per_s": round(per_bus, 2), "ratio": round(per_bus / limit, 3)}


async def main(quick: bool) -> dict[str, float | str | int]:
    seconds = 5.0 if quick else 20.0
    limit = 1 / exchange_time_s(poll_wire_bytes(), BAUD)
    out: dict[str, float | str | int] = {"bench": "bus", "baud": BAUD, "meters_per_bus": METERS_PER_BUS,
                                         "limit_per_bus_per_s": round(limit, 2)}  # fmt: skip
    for buses in (1, 4, 16):
        result = await measure(buses, seconds)
        print(f"{buses:>2} buses: {result['polls_per_s']:7.1f} polls/s, {result['per_bus_per_s']:.2f}/bus "
              f"(limit {limit:.2f}/bus), ratio {result['ratio']:.3f}", flush=True)  # fmt: skip
        out[f"bus{buses}_ratio"] = result["ratio"]
        out[f"bus{buses}_polls_per_s"] = result["polls_per_s"]
    out["scaling_16_over_1"] = round(float(out["bus16_polls_per_s"]) / (16 * float(out["bus1_polls_per_s"])), 3)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5 s per configuration instead of 20 s")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    print(json.dumps(asyncio.run(main(parser.parse_args().quick))))
