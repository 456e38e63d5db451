"""Batch tasks over simulated meters: done where the meter answers, failed where not, retried once back."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

from sqlalchemy import func, select

from billing.money import Money
from services import batches
from services.accounts import OpenAccount, open_account
from services.batches import Selector
from services.uow import in_transaction
from store.models import AuditEntry, BatchItem, LedgerTransaction, Meter, MeterCommand, Order, Outbox, Tariff, TariffVersion
from store.types import utcnow
from tests.reports.field import add_fleet, running_field

GATEWAYS, PER_GATEWAY = 8, 125


async def settle(sessions, task_id, want, within_s=60.0):
    """Run the batch job until no item is pending or in flight; the final progress."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        await batches.run_due_batches(sessions)
        async with sessions() as s:
            p = await batches.progress(s, task_id)
        if p["counts"]["pending"] == 0 and p["counts"]["sent"] == 0 and p["state"] == want:
            return p
        assert asyncio.get_running_loop().time() < deadline, p
        await asyncio.sleep(0.2)


async def test_a_batch_over_a_thousand_meters_fails_the_offline_ones_and_retries_them_once_back(sessions):
    site = await add_fleet(sessions, GATEWAYS, PER_GATEWAY)
    async with running_field(sessions, site) as field:
        offline = set(random.Random(7).sample(sorted(field.meters), len(field.meters) // 20))
        for mid in offline:
            field.sim_meter(mid).dead = True
        task = await in_transaction(sessions, lambda s: batches.create_task(
            s, Selector(site), "relay_off", {}, "operator1", max_attempts=2))
        p = await settle(sessions, task.id, "done")
        assert p["counts"]["done"] == 950 and p["counts"]["failed"] == 50
        async with sessions() as s:
            failed = set(await s.scalars(select(BatchItem.meter_id).where(BatchItem.task_id == task.id,
                                                                          BatchItem.state == "failed")))
        assert failed == offline
        assert all(field.sim_meter(m).relay_closed == (m in offline) for m in field.meters)
        for mid in offline:
            field.sim_meter(mid).dead = False
        assert await in_transaction(sessions, lambda s: batches.retry_failed(s, task.id, "operator1")) == 50
        p = await settle(sessions, task.id, "done")
        assert p["counts"]["done"] == 1000
    assert all(not field.sim_meter(m).relay_closed for m in field.meters)
    assert all(field.sim_meter(m).relay_writes == 1 for m in field.meters)  # nothing done twice
    async with sessions() as s:
        states = dict((await s.execute(select(MeterCommand.state, func.count()).group_by(MeterCommand.state))).all())
        closed = await s.scalar(select(func.count()).select_from(Meter).where(Meter.relay_closed.is_(True)))
        entries = list(await s.scalars(select(AuditEntry).where(AuditEntry.action.like("batch.%"))))
        topics = set(await s.scalars(select(Outbox.topic)))
    assert states == {"confirmed": 1000, "cancelled": 50} and closed == 0
    assert topics <= {"notify"}  # the executors took the commands from meter_commands: no outbox rows
    actions = [e.action for e in entries]
    assert [actions.count(a) for a in ("batch.create", "batch.start", "batch.retry")] == [1, 1, 1]
    assert actions.count("batch.finish") == 2  # done, then done again after the retry
    settled = [e.after for e in entries if e.action == "batch.settled"]
    assert sum(len(a.get("done", [])) for a in settled) == 1000
    assert sorted(m for a in settled for m in a.get("failed", [])) == sorted(offline)
    sent = [m for e in entries if e.action == "batch.step" for m in e.after.get("sent", [])]
    assert len(sent) == 1050 and set(sent) == set(field.meters)


async def _small_site(sessions):
    site = await add_fleet(sessions, 1, 6, code="S")

    async def go(s):
        meters = list(await s.scalars(select(Meter).where(Meter.site_id == site).order_by(Meter.id)))
        t = Tariff(site_id=site, name="new", utility="electricity", kind="flat")
        s.add(t)
        await s.flush()
        s.add(TariffVersion(tariff_id=t.id, effective_from=utcnow() - timedelta(days=1), spec={"kind": "flat", "price": "1.10"}))
        a = await open_account(s, OpenAccount(site, "Two meters", "13900000009", (meters[0].id, meters[1].id)))
        b = await open_account(s, OpenAccount(site, "One meter", "13900000008", (meters[2].id,)))
        return [m.id for m in meters], t.id, a.id, b.id
    return site, *await in_transaction(sessions, go)


async def test_a_recharge_batch_credits_each_account_once_and_skips_meters_without_one(sessions):
    site, meters, _, a, b = await _small_site(sessions)
    task = await in_transaction(sessions, lambda s: batches.create_task(
        s, Selector(site), "recharge", {"amount": Money(50_00)}, "cashier1"))
    await batches.run_task(sessions, task.id)
    await batches.run_task(sessions, task.id)  # a second run does nothing more
    async with sessions() as s:
        p = await batches.progress(s, task.id)
        orders = dict((await s.execute(select(Order.account_id, func.sum(Order.amount_fen)).group_by(Order.account_id))).all())
        txns = await s.scalar(select(func.count()).select_from(LedgerTransaction).where(LedgerTransaction.kind == "recharge"))
    assert p["state"] == "done" and p["counts"]["done"] == 3 and p["counts"]["skipped"] == 3
    assert orders == {a: 50_00, b: 50_00} and txns == 2


async def test_a_scheduled_tariff_batch_waits_for_its_time_and_can_be_filtered_to_a_list(sessions):
    site, meters, tariff, _, _ = await _small_site(sessions)
    later = utcnow() + timedelta(hours=1)
    task = await in_transaction(sessions, lambda s: batches.create_task(
        s, Selector(site, meter_ids=tuple(meters[:4])), "set_tariff", {"tariff_id": tariff}, "op", run_at=later))
    assert await batches.run_due_batches(sessions) == []
    assert await batches.run_due_batches(sessions, later + timedelta(seconds=1)) == [task.id]
    async with sessions() as s:
        got = dict((await s.execute(select(Meter.id, Meter.tariff_id).where(Meter.site_id == site))).all())
        p = await batches.progress(s, task.id)
    assert [got[m] for m in meters] == [tariff] * 4 + [None] * 2 and p["counts"]["done"] == 4


async def test_cancelling_a_task_cancels_its_queued_commands_and_pending_items(sessions):
    site, meters, _, _, _ = await _small_site(sessions)
    task = await in_transaction(sessions, lambda s: batches.create_task(s, Selector(site), "relay_off", {}, "op"))
    await in_transaction(sessions, lambda s: batches.run_chunk(s, task.id, utcnow(), limit=4))
    n = await in_transaction(sessions, lambda s: batches.cancel_task(s, task.id, "op"))
    await batches.run_due_batches(sessions)
    async with sessions() as s:
        p = await batches.progress(s, task.id)
        cmds = set(await s.scalars(select(MeterCommand.state)))
    assert n == 6 and p["state"] == "cancelled" and p["counts"]["cancelled"] == 6 and cmds == {"cancelled"}


async def test_alert_amounts_and_time_sync_batches(sessions):
    site, meters, _, a, _ = await _small_site(sessions)
    t1 = await in_transaction(sessions, lambda s: batches.create_task(
        s, Selector(site, state="with_account"), "alert_amounts", {"thresholds_fen": {"L1": 3000}}, "op"))
    t2 = await in_transaction(sessions, lambda s: batches.create_task(s, Selector(site), "time_sync", {}, "op"))
    await batches.run_due_batches(sessions)
    async with sessions() as s:
        from store.models import Account
        acc = await s.get(Account, a)
        p1, p2 = await batches.progress(s, t1.id), await batches.progress(s, t2.id)
        kinds = set(await s.scalars(select(MeterCommand.kind)))
    assert acc.alert_settings["thresholds_fen"] == {"L1": 3000} and p1["counts"]["done"] == 3
    assert p2["counts"]["sent"] == 6 and kinds == {"time_sync"}
