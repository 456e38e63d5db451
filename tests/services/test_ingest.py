"""Ingesting readings: each pain of the field (doubles, spikes, resets, replays) made impossible."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from billing.money import Money
from services import ledger
from services.accounts import OpenAccount, close_account, open_account
from services.ingest import ReadingIn, ingest
from services.meters import replace_meter
from services.uow import in_transaction
from services.wallets import balance, recharge
from store.models import LedgerAccount, Meter, MeterCommand, Outbox, Reading, TariffVersion
from tests.factories import FLAT_1, add_meter, add_tariff, make_site

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)


async def _setup(sessions, spec=FLAT_1, credit: int = 100_00, **acc_kw):
    async def build(s):
        kit = await make_site(s)
        t = await add_tariff(s, kit, "t", spec)
        m = await add_meter(s, kit, "101", t)
        acc = await open_account(s, OpenAccount(kit.site.id, "Han Meimei", "13900000000", (m.id,), **acc_kw),
                                 actor="test")
        acc.opened_at = T0 - H
        if credit:
            await recharge(s, acc.id, Money(credit), "opening-credit")
        await ingest(s, [ReadingIn(m.id, T0, 1_000_000)])
        return acc.id, m.id
    return await in_transaction(sessions, build)


async def _feed(sessions, readings):
    return await in_transaction(sessions, lambda s: ingest(s, readings))


async def _bal(sessions, acc):
    return (await in_transaction(sessions, lambda s: balance(s, acc))).total


async def test_a_normal_reading_debits_the_wallet_at_the_tariff(sessions):
    acc, m = await _setup(sessions)
    [r] = await _feed(sessions, [ReadingIn(m, T0 + H, 1_002_500)])  # 2.5 kWh at 1.00
    assert (r.verdict, r.amount) == ("billed", Money(250))
    assert await _bal(sessions, acc) == Money(100_00 - 250)


async def test_a_duplicate_reading_bills_nothing_the_second_time(sessions):
    acc, m = await _setup(sessions)
    reading = ReadingIn(m, T0 + H, 1_001_000)
    await _feed(sessions, [reading])
    again = await _feed(sessions, [reading, reading])
    assert [r.verdict for r in again] == ["duplicate", "duplicate"]
    assert await _bal(sessions, acc) == Money(100_00 - 100)


async def test_out_of_order_readings_bill_each_kwh_exactly_once(sessions):
    acc, m = await _setup(sessions)
    await _feed(sessions, [ReadingIn(m, T0 + 3 * H, 1_003_000)])
    late = await _feed(sessions, [ReadingIn(m, T0 + H, 1_001_000), ReadingIn(m, T0 + 2 * H, 1_002_000)])
    assert [r.verdict for r in late] == ["late", "late"]
    await _feed(sessions, [ReadingIn(m, T0 + 4 * H, 1_004_000)])
    assert await _bal(sessions, acc) == Money(100_00 - 400)


async def test_a_store_and_forward_replay_in_one_batch_bills_the_same_as_live(sessions):
    acc, m = await _setup(sessions)
    replay = [ReadingIn(m, T0 + i * H, 1_000_000 + 500 * i) for i in range(1, 25)]
    await _feed(sessions, list(reversed(replay)))
    assert await _bal(sessions, acc) == Money(100_00 - 24 * 50)
    await _feed(sessions, replay)  # the gateway replays the same day again
    assert await _bal(sessions, acc) == Money(100_00 - 24 * 50)


async def test_a_backward_reading_is_flagged_and_never_becomes_a_spike(sessions):
    acc, m = await _setup(sessions)
    [back] = await _feed(sessions, [ReadingIn(m, T0 + H, 5)])  # a glitch / reset reads almost zero
    assert back.verdict == "backward" and back.amount == Money(0)
    [nxt] = await _feed(sessions, [ReadingIn(m, T0 + 2 * H, 1_001_200)])
    assert (nxt.verdict, nxt.amount) == ("billed", Money(120))
    async with sessions() as s:
        meter = await s.get(Meter, m)
        assert meter.flags == 1
    assert await _bal(sessions, acc) == Money(100_00 - 120)


async def test_register_rollover_bills_the_wrapped_delta(sessions):
    acc, m = await _setup(sessions, credit=0)
    async def near_top(s):
        meter = await s.get(Meter, m)
        meter.base_total = meter.register_modulus - 1_000
    await in_transaction(sessions, near_top)
    [r] = await _feed(sessions, [ReadingIn(m, T0 + H, 2_000)])
    assert (r.verdict, r.amount) == ("rollover", Money(300))


async def test_an_implausible_jump_is_flagged_not_billed(sessions):
    acc, m = await _setup(sessions)
    [r] = await _feed(sessions, [ReadingIn(m, T0 + H, 900_000_000)])  # corrupted read
    assert r.verdict == "implausible" and await _bal(sessions, acc) == Money(100_00)


async def test_a_replaced_meter_starts_from_its_new_base_without_a_spike(sessions):
    acc, m = await _setup(sessions)
    await in_transaction(sessions, lambda s: replace_meter(
        s, m, T0 + 2 * H, new_base_total=0, final_old=ReadingIn(m, T0 + H, 1_001_000)))
    [r] = await _feed(sessions, [ReadingIn(m, T0 + 3 * H, 700)])
    assert (r.verdict, r.amount) == ("billed", Money(70))
    assert await _bal(sessions, acc) == Money(100_00 - 100 - 70)


async def test_bad_readings_get_a_clear_error_and_store_nothing(sessions):
    acc, m = await _setup(sessions)
    res = await _feed(sessions, [ReadingIn(999, T0 + H, 1), ReadingIn(m, T0 - 5 * H, 999_000),
                                 ReadingIn(m, datetime(2026, 3, 1, 5), 1_000_100)])
    assert res[0].error == "unknown meter 999" or any("unknown meter" in (r.error or "") for r in res)
    assert all(r.error for r in res)
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Reading)) == 1


async def test_each_reading_keeps_the_tariff_version_it_was_priced_with(sessions):
    acc, m = await _setup(sessions)
    async def add_version(s):
        meter = await s.get(Meter, m)
        s.add(TariffVersion(tariff_id=meter.tariff_id, effective_from=T0 + H, spec={"kind": "flat", "price": "2.00"}))
    await in_transaction(sessions, add_version)
    [r] = await _feed(sessions, [ReadingIn(m, T0 + 2 * H, 1_002_000)])  # 1 kWh each side of the change
    assert r.amount == Money(100 + 200)
    async with sessions() as s:
        row = await s.scalar(select(Reading).where(Reading.verdict == "billed"))
        assert len({ln["version_id"] for ln in row.lines}) == 2
        assert sum(ln["fen"] for ln in row.lines) == row.amount_fen == 300


async def test_running_out_cuts_off_and_paying_restores(sessions):
    acc, m = await _setup(sessions, credit=100)
    await _feed(sessions, [ReadingIn(m, T0 + H, 1_001_500)])  # costs 1.50, balance -0.50
    async with sessions() as s:
        cmds = list(await s.scalars(select(MeterCommand).where(MeterCommand.meter_id == m)))
    assert [c.kind for c in cmds] == ["relay_open"]
    await _feed(sessions, [ReadingIn(m, T0 + 2 * H, 1_001_600)])  # still out: no second command
    await in_transaction(sessions, lambda s: recharge(s, acc, Money(1000), "topup"))
    async with sessions() as s:
        cmds = list(await s.scalars(select(MeterCommand).where(MeterCommand.meter_id == m).order_by(MeterCommand.id)))
    assert [(c.kind, c.state) for c in cmds] == [("relay_open", "cancelled")]


async def test_closing_an_account_refunds_credit_after_the_final_reading(sessions):
    acc, m = await _setup(sessions, credit=1000)
    await in_transaction(sessions, lambda s: close_account(s, acc, [ReadingIn(m, T0 + H, 1_002_000)]))
    assert await _bal(sessions, acc) == Money(0)
    async with sessions() as s:
        assert (await ledger.verify(s)).ok
        cash = (await ledger.balances(s))["cash:cash"]
        assert cash == -1000 + 800  # 10.00 in, 8.00 refunded


async def test_closing_an_account_in_debt_books_the_amount_due(sessions):
    acc, m = await _setup(sessions, credit=0, overdraft=Money(5000))
    await in_transaction(sessions, lambda s: close_account(s, acc, [ReadingIn(m, T0 + H, 1_003_000)]))
    async with sessions() as s:
        due = await s.scalar(select(LedgerAccount.balance_fen).where(LedgerAccount.code == f"receivable:{acc}"))
    assert due == -300


async def test_a_package_account_pays_only_beyond_its_allowance(sessions):
    acc, m = await _setup(sessions, balance_model="package", package_units=5_000)
    await _feed(sessions, [ReadingIn(m, T0 + H, 1_004_000)])   # 4 kWh: inside the package
    await _feed(sessions, [ReadingIn(m, T0 + 2 * H, 1_008_000)])  # 4 more: 1 free, 3 paid
    assert await _bal(sessions, acc) == Money(100_00 - 300)


async def test_ingest_and_recharges_racing_on_the_same_accounts_take_turns_without_deadlock(sessions):
    """Ingest locks accounts, then meters, then wallets — the order a payment takes — so the two
    queue behind each other; run with no retry, any deadlock would surface as an error here."""
    async def build(s):
        kit = await make_site(s)
        kit.site.settings = {**(kit.site.settings or {}), "alerts": {"levels": [
            {"name": f"L{k + 1}", "threshold_fen": 29_00 - 100 * k} for k in range(3)]}}
        t = await add_tariff(s, kit, "t", FLAT_1)
        out = []
        for i in range(4):
            m = await add_meter(s, kit, f"10{i}", t)
            acc = await open_account(s, OpenAccount(kit.site.id, f"T{i}", f"1390000000{i}", (m.id,)), actor="test")
            acc.opened_at = T0 - H
            await recharge(s, acc.id, Money(30_00), f"open-{i}")  # by the alert levels: each round trips one
            await ingest(s, [ReadingIn(m.id, T0, 1_000_000)])
            out.append((acc.id, m.id))
        return out
    pairs = await in_transaction(sessions, build)
    for k in range(1, 9):
        batch = [ReadingIn(m, T0 + k * H, 1_000_000 + k * 2_000) for _, m in pairs]
        jobs = [in_transaction(sessions, lambda s, b=batch: ingest(s, b), attempts=1)]
        jobs += [in_transaction(sessions, lambda s, a=a, k=k: recharge(s, a, Money(150), f"top-{a}-{k}"), attempts=1)
                 for a, _ in reversed(pairs)]
        await asyncio.gather(*jobs)
    for acc, _ in pairs:
        assert await _bal(sessions, acc) == Money(30_00 + 8 * 150 - 8 * 200)
    async with sessions() as s:
        assert (await ledger.verify(s)).ok
        tripped = await s.scalar(select(func.count()).select_from(Outbox).where(Outbox.topic == "notify"))
    assert tripped >= 8  # the alert levels did move inside the racing batches
