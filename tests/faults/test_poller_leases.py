"""Pollers share the wired gateways fairly, never poll one gateway twice, and take over a dead one's gateways."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from meterpay.cluster_fleet import FleetSpec, seed_fleet
from services.poller_process import PollerOptions, PollerProcess, fair_share, heartbeat_and_claim
from services.uow import in_transaction
from store.models import Gateway, PollerSeen

SPEC = FleetSpec(gateways=5, meters_per_gateway=1, mqtt_gateways=2, mqtt_meters=1, site_code="LEASE")


def poller(sessions, name: str) -> PollerProcess:  # type: ignore[no-untyped-def]
    return PollerProcess(sessions, PollerOptions(name=name, owner=f"{name}@test", ttl_s=1.0, renew_s=0.2))


async def owners(sessions) -> dict[str, str | None]:  # type: ignore[no-untyped-def]
    async with sessions() as s:
        return dict((await s.execute(select(Gateway.code, Gateway.lease_owner))).all())


def test_the_fair_share_rounds_up_so_no_gateway_is_left_over():
    assert [fair_share(5, n) for n in (0, 1, 2, 3, 5, 6)] == [5, 5, 3, 2, 1, 1]


async def test_two_pollers_split_the_wired_gateways_without_overlap(sessions):
    await seed_fleet(sessions, SPEC)
    a, b = poller(sessions, "a"), poller(sessions, "b")
    try:
        for _ in range(3):
            await a.tick()
            await b.tick()
        assert a.polling.isdisjoint(b.polling)
        assert len(a.polling | b.polling) == 5 and {len(a.polling), len(b.polling)} == {2, 3}
        held = await owners(sessions)
        assert all(held[c] == "a@test" for c in a.polling) and all(held[c] == "b@test" for c in b.polling)
    finally:
        await a._fence()
        await b._fence()


async def test_a_dead_pollers_gateways_are_taken_over_after_its_lease_runs_out(sessions):
    await seed_fleet(sessions, SPEC)
    a, b = poller(sessions, "a"), poller(sessions, "b")
    try:
        for _ in range(3):
            await a.tick()
            await b.tick()
        lost = set(a.polling)
        await a._fence()  # "killed": it stops without releasing anything
        await b.tick()
        assert b.polling.isdisjoint(lost)  # not before the lease expires
        await asyncio.sleep(1.1)
        await b.tick()
        assert len(b.polling) == 5 and lost <= b.polling
    finally:
        await a._fence()
        await b._fence()


async def test_a_stopped_poller_releases_its_leases_and_its_heartbeat(sessions):
    await seed_fleet(sessions, SPEC)
    stop = asyncio.Event()
    p = poller(sessions, "c")
    task = asyncio.create_task(p.run(stop))
    for _ in range(50):
        await asyncio.sleep(0.05)
        if p.polling:
            break
    assert len(p.polling) == 5
    stop.set()
    await task
    assert set((await owners(sessions)).values()) == {None}
    async with sessions() as s:
        assert list(await s.scalars(select(PollerSeen.owner))) == []


async def test_only_one_poller_holds_the_mqtt_token(sessions):
    await seed_fleet(sessions, SPEC)
    held = [await in_transaction(sessions, lambda s, n=n: heartbeat_and_claim(s, f"p{n}@test", 5.0)) for n in range(3)]
    assert [h.bridge for h in held] == [True, False, False]
    again = await in_transaction(sessions, lambda s: heartbeat_and_claim(s, "p0@test", 5.0))
    assert again.bridge
