"""The embedded default: worker, simulator and MQTT bridge running inside the web process (no Redis needed)."""

from __future__ import annotations

import logging

from aiohttp import web

from devices.mqtt import Topics
from devices.poller import PollPolicy
from devices.sim import SimulatorHandle
from meterpay.web import SESSIONS, SETTINGS
from services.meter_io import ReadingSink
from services.meter_mqtt import MqttBridge
from services.meter_mqtt_commands import MqttCommandRuntime
from services.meter_runtime import MeterRuntime, RuntimeOptions, load_fleet, poll_targets
from services.meter_sim import fleet_simulator, sim_endpoints

log = logging.getLogger(__name__)

SIMULATOR = web.AppKey("simulator", SimulatorHandle)
METER_RUNTIME = web.AppKey("meter_runtime", MeterRuntime)
MQTT_BRIDGE = web.AppKey("mqtt_bridge", MqttBridge)
# Consumption runs 10x real time: lively, yet under every meter's plausible-rate limit.
DEMO_SPEED = 10.0
DEMO_OPTIONS = RuntimeOptions(policy=PollPolicy(interval_s=30.0, request_timeout_s=1.0, online_window_s=120.0),
                              lost_after_s=180.0, lost_check_s=30.0)


async def worker_ctx(app: web.Application):  # type: ignore[no-untyped-def]
    """Jobs (outbox, alerts, payments follow-up, roll-ups, batches) in this process when REDIS_URL is unset."""
    from jobs.inprocess import InProcessWorker

    async with InProcessWorker(app[SESSIONS], settings=app[SETTINGS]):
        yield


async def simulator_ctx(app: web.Application):  # type: ignore[no-untyped-def]
    """Simulate every wired meter in the database and poll it like the field (demo only).

    Gateway rows are not touched: the poller is pointed at the simulator's ports in memory.
    """
    sessions = app[SESSIONS]
    async with sessions() as session:
        fleet = await load_fleet(session)
    if not fleet:
        log.info("no wired meters in the database: nothing to simulate")
        yield
        return
    speed = float(app[SETTINGS].get("SIM_SPEED") or DEMO_SPEED)
    sim = await fleet_simulator(fleet, speed=speed)
    runtime = MeterRuntime(sessions, poll_targets(fleet, sim_endpoints(sim)), DEMO_OPTIONS)
    app[SIMULATOR], app[METER_RUNTIME] = sim, runtime
    await runtime.start()
    log.info("simulating %d meters on %d buses (consumption x%g)", len(fleet), len(sim.buses), speed)
    try:
        yield
    finally:
        await runtime.stop()
        await sim.stop()


async def mqtt_ctx(app: web.Application):  # type: ignore[no-untyped-def]
    """The MQTT bridge for 4G gateways, when MQTT_URL is set; otherwise nothing."""
    settings = app[SETTINGS]
    if not settings.mqtt_url:
        yield
        return
    bridge = MqttBridge(settings.mqtt_url, Topics(settings.mqtt_prefix), ReadingSink.for_sessions(app[SESSIONS]),
                        shared_group=settings.get("MQTT_SHARED_GROUP"))
    commands = MqttCommandRuntime(app[SESSIONS], settings.mqtt_url, Topics(settings.mqtt_prefix))
    app[MQTT_BRIDGE] = bridge
    bridge.start()
    commands.start()
    try:
        yield
    finally:
        await commands.stop()
        await bridge.stop()
