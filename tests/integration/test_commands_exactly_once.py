"""Commands through the database: a gateway cut for a while, then each command lands exactly once."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from billing.money import Money
from devices.sim.bus import Faults
from services import ledger, meter_credit, relay
from services.uow import in_transaction
from services.wallets import balance
from store.models import AuditEntry, LedgerTransaction, Meter, MeterCommand, Reading
from tests.integration.conftest import build_site, eventually, reading_count


async def _commands(sessions) -> list[MeterCommand]:
    async with sessions() as s:
        return list(await s.scalars(select(MeterCommand).order_by(MeterCommand.id)))


async def test_a_relay_command_and_a_credit_queued_while_the_gateway_is_away_each_land_exactly_once(
        sessions, start_field):
    site = await build_site(sessions, {"1": {}, "2": {"billing_side": "meter", "meter_balance_fen": 500}})
    faults = Faults()
    sim, runtime = await start_field(faults={site.gateway: faults})
    platform_meter, credit_meter = sim.meter(site.gateway, 1, "1"), sim.meter(site.gateway, 1, "2")
    await eventually(lambda: reading_count(sessions, site.meters["2"]))
    sim.set_gateway_offline(site.gateway, True)

    async def queue(s):
        await relay.queue_command(s, site.meters["1"], "relay_open", "staff-off:1", reason="unpaid fees",
                                  actor="staff:alice")
        await meter_credit.sell_credit(s, site.accounts["2"], site.meters["2"], Money(30_00), "pay-2-1")

    await in_transaction(sessions, queue)
    await eventually(lambda: _all_tried_twice(sessions))
    assert {c.state for c in await _commands(sessions)} == {"queued"}  # nothing confirmed while away
    assert platform_meter.writes == credit_meter.writes == 0
    faults.lose_write_replies = 2  # on return each write is applied but its reply is lost
    sim.set_gateway_offline(site.gateway, False)

    async def settled() -> bool:
        return {c.state for c in await _commands(sessions)} == {"confirmed"}

    await eventually(settled)
    assert (platform_meter.relay_closed, platform_meter.relay_writes) == (False, 1)
    assert credit_meter.credits_applied == [(1, 30_00)] and credit_meter.writes == 1
    for c in await _commands(sessions):
        assert c.sent_at is not None and c.confirmed_at is not None and c.attempts >= 3
    await _assert_books(sessions, site)

    await runtime.stop()  # a restart: a fresh executor on the same rows re-sends nothing
    again = await in_transaction(sessions, lambda s: meter_credit.sell_credit(  # the same payment, notified twice
        s, site.accounts["2"], site.meters["2"], Money(30_00), "pay-2-1"))
    _, second = await start_field(sim=sim)
    await asyncio.sleep(0.5)
    assert (platform_meter.writes, credit_meter.writes) == (1, 1)
    assert [c.id for c in await _commands(sessions)] == [1, 2] and again.id == 2
    await _assert_books(sessions, site)


async def _all_tried_twice(sessions) -> bool:
    return all(c.attempts >= 2 for c in await _commands(sessions))


async def _assert_books(sessions, site) -> None:
    async def mirrored() -> bool:  # a reading taken just before the trip may land just after it
        async with sessions() as s:
            m1, m2 = await s.get(Meter, site.meters["1"]), await s.get(Meter, site.meters["2"])
            return (m1.relay_closed, m2.purchase_count) == (False, 1)

    await eventually(mirrored, timeout_s=2.0)
    async with sessions() as s:
        credits = list(await s.scalars(select(LedgerTransaction).where(LedgerTransaction.kind == "meter_credit")))
        assert len(credits) == 1
        assert await ledger.balance_of(s, site.site_id, meter_credit.pending_code(site.meters["2"])) == Money(0)
        # the tenant paid 30.00 into a meter-billed account: it went into the meter, not the wallet
        assert (await balance(s, site.accounts["2"])).total == Money(100_00)
        audits = await s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "meter_command.confirmed"))
        assert audits == 2
        verdicts = set(await s.scalars(select(Reading.verdict).distinct()))
        assert verdicts <= {"base", "billed"}
        assert (await ledger.verify(s)).ok
