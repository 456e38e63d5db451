"""The monitor's live stream pushes a room again when a payment changes its balance."""

from __future__ import annotations

import asyncio
import json
import uuid

from billing.money import Money
from services.uow import in_transaction
from services.wallets import recharge
from tests.admin.conftest import make_app, make_settings, sign_in


async def _next_event(resp, name: str = "rooms"):  # type: ignore[no-untyped-def]
    event, data = None, None
    while True:
        line = (await asyncio.wait_for(resp.content.readline(), 5)).decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and data is not None:
            if event == name:
                return data
            event, data = None, None


async def test_the_stream_sends_a_snapshot_then_each_change(aiohttp_client, db_url, world, sessions):
    client = await aiohttp_client(make_app(make_settings(db_url, ADMIN_STREAM_INTERVAL_S="0.1")))
    await sign_in(client, "viewer")
    resp = await client.get(f"/admin/sites/{world.a.site}/rooms/stream?ids={world.a.room},{world.b.room}")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
    assert await _next_event(resp, "counts") == {"normal": 1, "vacant": 1}
    first = await _next_event(resp)
    assert [(c["id"], c["balance_fen"], c["state"]) for c in first] == [(world.a.room, 100_00, "normal")]
    await in_transaction(sessions, lambda s: recharge(s, world.a.account, Money(5_00), uuid.uuid4().hex))
    second = await _next_event(resp)
    assert [(c["id"], c["balance_fen"]) for c in second] == [(world.a.room, 105_00)]
    resp.close()


async def test_the_stream_of_another_site_is_not_found(client, world):
    await sign_in(client, "viewer")
    resp = await client.get(f"/admin/sites/{world.b.site}/rooms/stream?ids={world.b.room}")
    assert resp.status == 404
