"""Simulator fixtures: real sockets on loopback ports chosen by the OS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from devices.sim import GatewaySpec, SimConfig, SimulatorHandle, run_simulator

StartSim = Callable[..., Awaitable[SimulatorHandle]]


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    """Start simulators with any gateways; all are stopped after the test."""
    handles: list[SimulatorHandle] = []

    async def start(*gateways: GatewaySpec, speed: float = 1.0, baud: int | None = None) -> SimulatorHandle:
        handle = await run_simulator(SimConfig(gateways or (GatewaySpec("gw1"),), speed=speed, baud=baud))
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        await handle.stop()
