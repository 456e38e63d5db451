"""What a simulated 4G gateway does with one `down/cmd` message: every devices.mqtt OP on its meters.

`ok` is False only when the meter refused a write (a repeated purchase counter, closing a
meter-billed relay with no credit) or the command is malformed/unknown; a read that returns
False (an open relay) is still ok; `transient` marks an ack worth retrying (no answer from the
meter on the RS485 side, a command that arrived too late). A command past its `expires_at` is dropped (ok False): a
late-delivered relay write must never override a newer decision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from devices.driver import BusEndpoint, sample_from_values
from devices.mqtt import sample_to_json
from devices.sim.meter import SimMeter

Ack = dict[str, Any]


def _expired(cmd: Mapping[str, Any]) -> bool:
    deadline = cmd.get("expires_at")
    return bool(deadline) and datetime.fromisoformat(deadline) <= datetime.now(timezone.utc)


def apply_command(gateway: str, meters: Mapping[str, SimMeter], cmd: Mapping[str, Any]) -> Ack:
    """The `up/ack` payload for one command: {"id", "ok", "result"} or {"id", "ok": False, "error"}."""
    cid = cmd.get("id") if isinstance(cmd, Mapping) else None
    try:
        if _expired(cmd):
            return {"id": cid, "ok": False, "error": "expired", "transient": True}
        meter = meters.get(str(cmd["address"]))
        if meter is None or meter.dead:
            return {"id": cid, "ok": False, "error": f"no meter {cmd['address']}", "transient": True}
        op = OPS.get(str(cmd["op"]))
        if op is None:
            return {"id": cid, "ok": False, "error": f"unsupported op {cmd['op']}"}
        ok, result = op(gateway, meter, dict(cmd.get("args") or {}))
    except (ValueError, KeyError, TypeError) as ex:
        return {"id": cid, "ok": False, "error": f"bad command: {ex}"}
    return {"id": cid, "ok": ok, "result": result} if ok else {"id": cid, "ok": False, "error": "refused by meter"}


def _read(gateway: str, m: SimMeter, _: dict[str, Any]) -> tuple[bool, Any]:
    return True, sample_to_json(sample_from_values(BusEndpoint(gateway, 1, "mqtt", 0), m.address, m.clock.now(), m.values()))  # type: ignore[arg-type]


def _read_relay(_: str, m: SimMeter, __: dict[str, Any]) -> tuple[bool, Any]:
    m.advance()  # the meter may have tripped itself since the last reading
    return True, m.relay_closed


def _set_price(_: str, m: SimMeter, args: dict[str, Any]) -> tuple[bool, Any]:
    m.advance()
    m.price_e4 = int(args["price_e4"])
    return True, m.price_e4


def _time_sync(_: str, m: SimMeter, args: dict[str, Any]) -> tuple[bool, Any]:
    m.set_time(datetime.fromisoformat(args["now"]))
    return True, m.meter_time().isoformat()


OPS: dict[str, Callable[[str, SimMeter, dict[str, Any]], tuple[bool, Any]]] = {
    "read": _read,
    "set_relay": lambda _, m, a: (m.set_relay(bool(a["closed"])), None),
    "read_relay": _read_relay,
    "push_credit": lambda _, m, a: (m.apply_credit(int(a["purchase_count"]), int(a["amount_fen"])), None),
    "read_purchase_count": lambda _, m, __: (True, m.purchase_count),
    "set_price": _set_price,
    "read_price": lambda _, m, __: (True, m.price_e4),
    "time_sync": _time_sync,
    "read_clock": lambda _, m, __: (True, m.meter_time().isoformat()),
}
