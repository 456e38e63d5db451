"""A queued command wakes its gateway's lanes at commit: delivered at once, not at the next look."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from sqlalchemy import select

from services import command_wake, relay
from services.uow import in_transaction
from store.db import make_engine, make_sessionmaker
from store.models import Meter, MeterCommand
from tests.integration.conftest import FAST, build_site, eventually

SLOW_LOOK = dataclasses.replace(FAST, command_interval_s=3600.0)  # without a wake-up: an hour


async def _gateway_of(sessions, meter_id: int) -> int:
    async with sessions() as s:
        return int(await s.scalar(select(Meter.gateway_id).where(Meter.id == meter_id)))


async def test_a_commit_that_queued_commands_wakes_subscribers_with_their_gateways(sessions):
    site = await build_site(sessions, {"1": {}})
    meter_id = site.meters["1"]
    gateway_id = await _gateway_of(sessions, meter_id)
    woken: list[frozenset[int]] = []
    unsubscribe = command_wake.subscribe(woken.append)
    try:
        await in_transaction(sessions, lambda s: relay.queue_command(s, meter_id, "relay_open", "w1",
                                                                     gateway_id=gateway_id))
        assert woken == [frozenset({gateway_id})]

        async def queue_then_fail(s):
            await relay.queue_command(s, meter_id, "relay_close", "w2", gateway_id=gateway_id)
            raise RuntimeError("the transaction fails after queueing")

        with pytest.raises(RuntimeError):
            await in_transaction(sessions, queue_then_fail)
        await in_transaction(sessions, lambda s: relay.queue_command(s, meter_id, "relay_close", "w3"))
    finally:
        unsubscribe()
    assert woken == [frozenset({gateway_id}), frozenset({command_wake.ANY})]  # nothing from the rolled-back one
    async with sessions() as s:
        assert set(await s.scalars(select(MeterCommand.key))) == {"w1", "w3"}


def test_wake_up_payloads_round_trip_and_garbage_means_look():
    assert command_wake.decode(command_wake.encode([3, 1, 3])) == {1, 3}
    assert command_wake.decode(command_wake.encode([1, command_wake.ANY])) == {command_wake.ANY}
    assert command_wake.decode("1,x") == {command_wake.ANY}


async def test_postgres_listeners_hear_only_committed_commands(pg_url):
    engine = make_engine(pg_url)
    sessions = make_sessionmaker(engine)
    heard: asyncio.Queue[frozenset[int]] = asyncio.Queue()
    listener = asyncio.create_task(command_wake.listen(engine, heard.put_nowait))
    try:
        assert await asyncio.wait_for(heard.get(), 10) == {command_wake.ANY}  # listening: look once
        site = await build_site(sessions, {"1": {}}, code="WAKE")
        meter_id = site.meters["1"]
        gateway_id = await _gateway_of(sessions, meter_id)
        async with sessions() as s, s.begin():  # rolled back: nobody hears of it
            await relay.queue_command(s, meter_id, "relay_open", "pg-w0", gateway_id=gateway_id)
            await s.rollback()
        await in_transaction(sessions, lambda s: relay.queue_command(s, meter_id, "relay_open", "pg-w1",
                                                                     gateway_id=gateway_id))
        assert await asyncio.wait_for(heard.get(), 10) == {gateway_id}
        assert heard.empty()
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await engine.dispose()


async def test_a_runtime_delivers_a_command_queued_elsewhere_without_waiting_for_its_next_look(sessions, start_field):
    site = await build_site(sessions, {"1": {}})
    sim, _ = await start_field(options=SLOW_LOOK)
    meter = sim.meter(site.gateway, 1, "1")
    await asyncio.sleep(0.5)  # the lanes have looked once at start and now sleep for an hour
    other = make_engine(str(sessions.kw["bind"].url.render_as_string(hide_password=False)))
    try:  # another engine: on PostgreSQL the wake-up crosses connections as a NOTIFY
        started = time.monotonic()
        gateway_id = await _gateway_of(sessions, site.meters["1"])
        await in_transaction(make_sessionmaker(other), lambda s: relay.queue_command(
            s, site.meters["1"], "relay_open", "elsewhere-1", gateway_id=gateway_id))

        async def confirmed() -> bool:
            async with sessions() as s:
                return await s.scalar(select(MeterCommand.state).where(MeterCommand.key == "elsewhere-1")) == "confirmed"

        await eventually(confirmed, timeout_s=10)
        assert time.monotonic() - started < 5 and meter.relay_closed is False
    finally:
        await other.dispose()
