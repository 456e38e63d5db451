"""Online/lost is per meter: a dead meter is marked lost while its bus-mates stay online."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from devices.sample import MeterRef
from services.meter_io import mark_lost
from services.uow import in_transaction
from store.models import Meter
from tests.integration.conftest import build_site, eventually, reading_count


async def _online(sessions) -> dict[str, bool]:
    async with sessions() as s:
        return {m.address: m.online for m in await s.scalars(select(Meter))}


async def test_a_dead_meter_is_marked_lost_while_its_bus_mates_stay_online(sessions, start_field):
    seen_long_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    site = await build_site(sessions, {a: {"online": True, "last_seen_at": seen_long_ago} for a in ("1", "2", "3")})
    sim, runtime = await start_field()
    sim.meter(site.gateway, 1, "2").dead = True  # never answers; its gateway stays connected
    await eventually(lambda: reading_count(sessions, site.meters["3"], "billed"))
    await asyncio.sleep(1.0)
    lost = await in_transaction(sessions, lambda s: mark_lost(s, datetime.now(timezone.utc), after_s=2.0))

    assert lost == [site.meters["2"]]
    assert await _online(sessions) == {"1": True, "2": False, "3": True}
    assert runtime.poller.is_quarantined(MeterRef(site.gateway, 1, "2"))
    assert not sim.bus(site.gateway, 1).offline
    for mate in ("1", "3"):  # the dead meter's timeouts did not stall the bus
        assert await reading_count(sessions, site.meters[mate]) >= 5


async def test_a_lost_meter_is_online_again_with_its_next_reading(sessions, start_field):
    site = await build_site(sessions, {"1": {"online": False}})
    await start_field()
    await eventually(lambda: reading_count(sessions, site.meters["1"]))
    assert await _online(sessions) == {"1": True}
    assert await in_transaction(sessions, lambda s: mark_lost(s, datetime.now(timezone.utc), after_s=60)) == []
