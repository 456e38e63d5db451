"""The database command store: claims never overlap between executors, and a cancelled credit is given back."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timezone

from sqlalchemy import select

from billing.money import Money
from services import ledger, meter_commands, meter_credit, relay
from services.meter_commands import DbCommandStore
from services.uow import in_transaction
from services.wallets import balance
from store.models import Meter
from tests.integration.conftest import build_site

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


async def test_two_executors_claiming_at_once_never_get_the_same_command(sessions):
    site = await build_site(sessions, {"1": {}})

    async def queue(s):
        for n in range(20):
            await relay.queue_command(s, site.meters["1"], "time_sync", f"sync-{n}", now=NOW)

    await in_transaction(sessions, queue)
    a, b = DbCommandStore(sessions), DbCommandStore(sessions)
    first, second = await asyncio.gather(a.due(NOW, limit=12), b.due(NOW, limit=12))
    ids_a, ids_b = {c.id for c in first}, {c.id for c in second}
    assert not ids_a & ids_b and len(ids_a | ids_b) == 20
    assert await a.due(NOW) == []  # claimed: invisible until the lease runs out


async def test_a_cancelled_credit_returns_its_hold_to_the_wallet_once(sessions):
    site = await build_site(sessions, {"1": {"billing_side": "meter"}}, credit_fen=0)
    cmd = await in_transaction(sessions, lambda s: meter_credit.sell_credit(
        s, site.accounts["1"], site.meters["1"], Money(20_00), "pay-1"))
    assert cmd.params["purchase_count"] == 1
    async with sessions() as s:
        assert (await balance(s, site.accounts["1"])).total == Money(0)  # held, on its way to the meter
    for _ in range(2):
        await in_transaction(sessions, lambda s: meter_commands.cancel(s, cmd.id, actor="staff:bob"))
    async with sessions() as s:
        assert (await balance(s, site.accounts["1"])).total == Money(20_00)
        assert await ledger.balance_of(s, site.site_id, meter_credit.pending_code(site.meters["1"])) == Money(0)
        assert (await ledger.verify(s)).ok
    again = await in_transaction(sessions, lambda s: meter_credit.queue_credit(s, site.meters["1"], Money(5_00), "c-2"))
    assert again.params["purchase_count"] == 1  # a cancelled purchase does not use up its counter


async def test_credits_confirmed_in_one_round_are_each_settled_once(sessions):
    """A busy round confirms several credits: one bulk ledger post settles each, a repeat settles nothing."""
    site = await build_site(sessions, {str(n): {"billing_side": "meter"} for n in range(1, 5)}, credit_fen=0)
    cmds = []
    for n in range(1, 5):
        cmds.append(await in_transaction(sessions, lambda s, n=n: meter_credit.sell_credit(
            s, site.accounts[str(n)], site.meters[str(n)], Money(10_00 * n), f"pay-{n}")))
    store = DbCommandStore(sessions)
    sent = [replace(meter_commands.to_command(c, site.gateway, 1, str(n)), state="sent", attempts=1)
            for n, c in enumerate(cmds, start=1)]
    assert await store.save_many(sent) == set()
    done = [replace(c, state="confirmed") for c in sent]
    assert await store.save_many(done) == set()
    assert await store.save_many(done) == {c.id for c in done}  # settled already: refused, nothing posted
    async with sessions() as s:
        for n in range(1, 5):
            assert await ledger.balance_of(s, site.site_id, meter_credit.pending_code(site.meters[str(n)])) == Money(0)
        assert await ledger.balance_of(s, site.site_id, "revenue:electricity") == Money(100_00)
        meters = {m.id: m.purchase_count for m in await s.scalars(select(Meter).where(Meter.site_id == site.site_id))}
        assert set(meters.values()) == {1}
        assert (await ledger.verify(s)).ok
