"""The batch benchmark's simulator process: `python -m devices.sim` plus the buses' wire counters.

Prints one JSON line per bus (as devices.sim does); then, for each line read on stdin, one JSON
line {"gateway:port": {"exchanges": n, "wire_s": s}}: the serial wire time of the frames each
bus actually carried, which bench/report.py divides the batch's wall time by.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devices.sim import parse_args, run_simulator  # noqa: E402


async def main(argv: list[str]) -> None:
    config, _ = parse_args(argv)
    handle = await run_simulator(config)
    for bus in handle.buses:
        line = {"gateway": bus.gateway, "port": bus.port, "tcp_port": bus.tcp_port, "protocol": bus.protocol}
        print(json.dumps(line | {"meters": list(bus.meters)}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while await reader.readline():
            stats = {f"{b.gateway}:{b.port}": {"exchanges": b.exchanges, "wire_s": b.wire_s} for b in handle.buses}
            print(json.dumps(stats), flush=True)
    finally:
        await handle.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
