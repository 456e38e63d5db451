"""The command path takes locks in the order every writer takes them: accounts, then command rows and
meters, then wallets. Found by bench/faults.py: a credit outcome locked its command row and meter
first and the wallet last, while a payment held the account and wallet and wanted the meter: 40P01.

Transactions here run once (no `in_transaction` retry), so a deadlock fails the test instead of
being retried away.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from billing.money import Money
from devices.commands import Command
from services import ledger, meter_commands, meter_credit, wallets
from services.meter_commands import DbCommandStore
from services.uow import in_transaction
from store.models import MeterCommand
from store.types import utcnow
from tests.integration.conftest import Site, build_site

T = TypeVar("T")
ON_POSTGRES = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # row locks: SQLite has one writer


async def once(sessions: async_sessionmaker[AsyncSession], fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """One transaction, no retry: a lost race or a deadlock raises."""
    async with sessions() as s, s.begin():
        return await fn(s)


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        seen.append((" ".join(sql.split()), params))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


def first(seen: list[tuple[str, Any]], *parts: str) -> int:
    """Index of the first statement holding every part (case-insensitive); fails if none does."""
    for i, (sql, _) in enumerate(seen):
        if all(p.lower() in sql.lower() for p in parts):
            return i
    raise AssertionError(f"no statement with {parts}: {[sql for sql, _ in seen]}")


async def credit_site(sessions: async_sessionmaker[AsyncSession], tenants: int = 2, sales: int = 2) -> Site:
    """Meter-side meters, each with `sales` credits sold (held in the ledger, queued for the meter)."""
    site = await build_site(sessions, {str(n): {"billing_side": "meter"} for n in range(1, tenants + 1)}, credit_fen=0)
    for address, meter in site.meters.items():
        for n in range(sales):
            await in_transaction(sessions, lambda s: meter_credit.sell_credit(
                s, site.accounts[address], meter, Money(10_00), f"sale-{address}-{n}"))
    return site


async def claimed(sessions: async_sessionmaker[AsyncSession]) -> dict[tuple[int, int], Command]:
    """Every open command, claimed, by (meter id, purchase counter)."""
    got = await DbCommandStore(sessions).claim(utcnow() + timedelta(days=1), 1000, None)
    async with sessions() as s:
        meter_of = dict((await s.execute(select(MeterCommand.id, MeterCommand.meter_id))).all())
    return {(meter_of[int(c.id)], int(c.params["purchase_count"])): c for c in got}


@ON_POSTGRES
async def test_a_credit_outcome_locks_its_accounts_before_the_command_rows_meters_and_wallets(sessions, engine):
    site = await credit_site(sessions)
    commands = await claimed(sessions)
    one, two = site.meters["1"], site.meters["2"]
    outcomes = [replace(commands[(two, 1)], state="failed", last_error="meter refused"),
                replace(commands[(one, 1)], state="confirmed")]
    store = DbCommandStore(sessions)
    with statements(engine) as seen:
        await store.save_many(outcomes)
    accounts = first(seen, "FROM accounts", "FOR NO KEY UPDATE")
    rows = first(seen, "FROM meter_commands", "FOR UPDATE OF meter_commands")
    meters = first(seen, "FROM meters", "FOR NO KEY UPDATE")
    wallets_ = first(seen, "UPDATE ledger_accounts")
    assert accounts < rows < meters < wallets_
    assert set(seen[accounts][1]) >= {site.accounts["1"], site.accounts["2"]}  # both, in one statement
    assert sum("from accounts" in sql.lower() and "for " in sql.lower() for sql, _ in seen) == 1


@ON_POSTGRES
async def test_a_sent_mark_writes_only_its_row_and_locks_no_account(sessions, engine):
    site = await credit_site(sessions, tenants=1, sales=1)
    [command] = (await claimed(sessions)).values()
    with statements(engine) as seen:
        await DbCommandStore(sessions).save_many([replace(command, state="sent")])
    assert not [sql for sql, _ in seen if "accounts" in sql.lower() and "for " in sql.lower()]
    assert site.accounts  # the sale was real


@ON_POSTGRES
async def test_cancelling_a_credit_locks_its_account_before_its_row(sessions, engine):
    site = await credit_site(sessions, tenants=1, sales=1)
    [command] = (await claimed(sessions)).values()
    with statements(engine) as seen:
        assert await once(sessions, lambda s: meter_commands.cancel(s, int(command.id), "staff:ann"))
    assert first(seen, "FROM accounts", "FOR NO KEY UPDATE") < first(seen, "FROM meter_commands", "FOR UPDATE") \
        < first(seen, "UPDATE ledger_accounts")
    async with sessions() as s:
        assert (await wallets.balance(s, site.accounts["1"])).total == Money(10_00)  # the hold came back


async def test_a_credit_outcome_and_a_payment_crossing_on_one_account_both_commit_without_a_retry(sessions):
    """The payment holds the account and its wallet, then wants the meter (to queue a credit); the
    outcome confirms one credit of that meter and voids another (wallet). Before the fix the outcome
    held the meter and waited for the wallet: a deadlock, one of the two rolled back."""
    site = await credit_site(sessions, tenants=1, sales=2)
    meter, account = site.meters["1"], site.accounts["1"]
    commands = await claimed(sessions)
    outcomes = [replace(commands[(meter, 1)], state="confirmed"),
                replace(commands[(meter, 2)], state="failed", last_error="meter refused")]
    payment = sessions()
    await payment.begin()
    try:
        await wallets.recharge(payment, account, Money(5_00), "pay-crossing", meter_id=meter)  # account + wallet
        outcome = asyncio.create_task(once(sessions, lambda s: meter_commands.save_outcomes(s, outcomes)))
        await asyncio.sleep(0.5)  # the outcome is in flight: waiting for the account (before: holding the meter)
        cmd = await meter_credit.queue_credit(payment, meter, Money(5_00), "credit:pay-crossing")
        await payment.commit()
    finally:
        await payment.close()
    assert await outcome == set()
    async with sessions() as s:
        assert cmd.params["purchase_count"] == 3
        assert (await wallets.balance(s, account)).total == Money(10_00)  # the voided purchase 2 came back
        assert await ledger.balance_of(s, site.site_id, meter_credit.pending_code(meter)) == Money(5_00)  # purchase 3
        assert (await ledger.verify(s)).ok


async def test_credit_outcomes_payments_and_recharges_of_the_same_accounts_run_at_once_without_a_retry(sessions):
    tenants = 4
    site = await credit_site(sessions, tenants=tenants, sales=2)
    commands = await claimed(sessions)
    meters = sorted(site.meters.values())
    account_of = {m: site.accounts[a] for a, m in site.meters.items()}
    # one group per purchase counter, each spanning every account: confirmations (meter) and failures (wallet)
    groups = [[replace(commands[(m, n)], state="confirmed" if (m + n) % 2 else "failed", last_error=None)
               for m in (meters if n == 1 else meters[::-1])] for n in (1, 2)]
    jobs: list[Awaitable[Any]] = [once(sessions, lambda s, g=g: meter_commands.save_outcomes(s, g)) for g in groups]
    for m in meters[::-1]:  # payments walk the accounts in the other direction
        jobs.append(once(sessions, lambda s, m=m: meter_credit.sell_credit(s, account_of[m], m, Money(3_00),
                                                                           f"race-sale-{m}")))
        jobs.append(once(sessions, lambda s, m=m: wallets.recharge(s, account_of[m], Money(2_00), f"race-top-{m}",
                                                                   meter_id=m)))
    async with asyncio.timeout(60):
        results = await asyncio.gather(*jobs, return_exceptions=True)
    assert not [r for r in results if isinstance(r, BaseException)], results
    async with sessions() as s:
        assert (await ledger.verify(s)).ok
        for m in meters:
            voided = sum(10_00 for n in (1, 2) if (m + n) % 2 == 0)
            # sold 2 x 10.00 (held) + 3.00 (held) + 2.00 top-up; the failed purchases came back
            assert (await wallets.balance(s, account_of[m])).total == Money(2_00 + voided)


async def _hold_account(sessions: async_sessionmaker[AsyncSession], account_id: int) -> AsyncSession:
    """Another transaction (a payment, an ingest batch) holding an account, as they lock it."""
    holder = sessions()
    await holder.begin()
    await meter_commands.lock_accounts(holder, [account_id])
    return holder


async def _confirmed_at(sessions: async_sessionmaker[AsyncSession], command: Command) -> Any:
    async with sessions() as s:
        return await s.scalar(select(MeterCommand.confirmed_at).where(MeterCommand.id == int(command.id)))


@ON_POSTGRES
async def test_an_outcome_whose_account_is_busy_is_put_off_and_the_rest_of_the_round_is_written(sessions):
    site = await credit_site(sessions, tenants=2, sales=1)
    commands = await claimed(sessions)
    busy_meter, free_meter = site.meters["1"], site.meters["2"]
    holder = await _hold_account(sessions, site.accounts["1"])
    try:
        outcomes = [replace(commands[(busy_meter, 1)], state="confirmed"),
                    replace(commands[(free_meter, 1)], state="confirmed")]
        busy: set[str] = set()
        async with asyncio.timeout(5):  # it does not wait for the holder
            assert await once(sessions, lambda s: meter_commands.save_outcomes(s, outcomes, busy)) == set()
        assert busy == {commands[(busy_meter, 1)].id}
        assert await _confirmed_at(sessions, commands[(busy_meter, 1)]) is None
        assert await _confirmed_at(sessions, commands[(free_meter, 1)]) is not None
    finally:
        await holder.rollback()
        await holder.close()


@ON_POSTGRES
async def test_a_round_saves_sent_marks_while_a_confirmation_waits_for_its_busy_account(sessions):
    """The convoy this prevents: one confirmation waiting for a payment's account held up every bus's
    `sent` marks in the same round. The put-off confirmation is written once the account is free."""
    site = await credit_site(sessions, tenants=2, sales=1)
    commands = await claimed(sessions)
    busy_cmd, other = commands[(site.meters["1"], 1)], commands[(site.meters["2"], 1)]
    group = meter_commands.GroupCommit(DbCommandStore(sessions).save_many)
    holder = await _hold_account(sessions, site.accounts["1"])
    try:
        confirming = asyncio.create_task(group.save(replace(busy_cmd, state="confirmed")))
        async with asyncio.timeout(5):
            assert await group.save(replace(other, state="sent")) is False  # not behind the busy account
        assert not confirming.done() and group.deferred >= 1
        await asyncio.sleep(meter_commands.PATIENCE_S + 0.2)  # past its patience the round waits, still not done
        assert not confirming.done()
    finally:
        await holder.rollback()
        await holder.close()
    async with asyncio.timeout(5):
        assert await confirming is False
    assert await _confirmed_at(sessions, busy_cmd) is not None
    async with sessions() as s:
        assert (await ledger.verify(s)).ok
