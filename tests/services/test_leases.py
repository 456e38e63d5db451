"""Gateway leases: one poller per gateway, fair sharing, and takeover when a poller dies."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from services.leases import claim, release
from services.uow import in_transaction
from store.models import Gateway
from store.types import utcnow
from tests.factories import make_site


async def _gateways(sessions, n: int) -> None:
    async def build(s):
        kit = await make_site(s)
        for i in range(n - 1):
            s.add(Gateway(site_id=kit.site.id, code=f"gw-extra-{i}", protocol="modbus_tcp"))
    await in_transaction(sessions, build)


async def test_two_pollers_share_gateways_without_overlap(sessions):
    await _gateways(sessions, 6)
    a = await in_transaction(sessions, lambda s: claim(s, "poller-a", 10, limit=3))
    b = await in_transaction(sessions, lambda s: claim(s, "poller-b", 10, limit=3))
    assert len(a) == 3 and len(b) == 3 and not set(a) & set(b)


async def test_concurrent_claims_never_give_one_gateway_to_two_pollers(sessions):
    await _gateways(sessions, 8)
    results = await asyncio.gather(*(in_transaction(sessions, lambda s, o=f"p{i}": claim(s, o, 10))
                                     for i in range(4)))
    owned = [g for r in results for g in r]
    assert len(owned) == len(set(owned)) == 8


async def test_a_dead_pollers_gateways_are_taken_over_after_the_ttl(sessions):
    await _gateways(sessions, 3)
    t0 = utcnow()
    dead = await in_transaction(sessions, lambda s: claim(s, "dead", 5, now=t0))
    assert len(dead) == 3
    early = await in_transaction(sessions, lambda s: claim(s, "alive", 5, now=t0 + timedelta(seconds=2)))
    assert early == []
    late = await in_transaction(sessions, lambda s: claim(s, "alive", 5, now=t0 + timedelta(seconds=6)))
    assert late == dead


async def test_renewal_keeps_a_live_pollers_gateways(sessions):
    await _gateways(sessions, 2)
    t0 = utcnow()
    mine = await in_transaction(sessions, lambda s: claim(s, "live", 5, now=t0))
    await in_transaction(sessions, lambda s: claim(s, "live", 5, now=t0 + timedelta(seconds=4)))
    other = await in_transaction(sessions, lambda s: claim(s, "other", 5, now=t0 + timedelta(seconds=7)))
    assert other == [] and len(mine) == 2
    await in_transaction(sessions, lambda s: release(s, "live"))
    assert len(await in_transaction(sessions, lambda s: claim(s, "other", 5))) == 2
