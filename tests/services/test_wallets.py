"""Recharge, refund, balance: exactly-once, refusals that change nothing, and no double spend."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from billing.money import Money, MoneyError
from services import bulk, ledger
from services.accounts import OpenAccount, open_account
from services.errors import Conflict, InsufficientBalance, NotFound, ServiceError
from services.uow import in_transaction
from services.wallets import balance, recharge, refund
from store.models import Account, LedgerAccount, Order
from tests.factories import FLAT_1, add_meter, add_tariff, make_site


async def _account(sessions, model: str = "merged", meters: int = 1, overdraft: int = 0) -> tuple[int, list[int]]:
    async def build(s):
        kit = await make_site(s)
        t = await add_tariff(s, kit, "flat", FLAT_1)
        ms = [await add_meter(s, kit, f"10{i}", t) for i in range(meters)]
        acc = await open_account(s, OpenAccount(kit.site.id, "Li Lei", "13800138000", tuple(m.id for m in ms),
                                                balance_model=model, overdraft=Money(overdraft)))
        return acc.id, [m.id for m in ms]
    return await in_transaction(sessions, build)


async def _balance(sessions, account_id: int) -> Money:
    return (await in_transaction(sessions, lambda s: balance(s, account_id))).total


async def test_recharge_credits_the_wallet_once_per_idempotency_key(sessions):
    acc, _ = await _account(sessions)
    for _ in range(3):
        await in_transaction(sessions, lambda s: recharge(s, acc, Money.yuan("50"), "desk-1"))
    assert await _balance(sessions, acc) == Money(5000)


async def test_same_key_for_a_different_amount_is_a_conflict(sessions):
    acc, _ = await _account(sessions)
    await in_transaction(sessions, lambda s: recharge(s, acc, Money(100), "k"))
    with pytest.raises(Conflict):
        await in_transaction(sessions, lambda s: recharge(s, acc, Money(200), "k"))
    assert await _balance(sessions, acc) == Money(100)


@pytest.mark.parametrize("amount", [Money(0), Money(-5), 12.5, 100])
async def test_non_positive_or_non_money_amounts_are_refused(sessions, amount):
    acc, _ = await _account(sessions)
    with pytest.raises(ServiceError):
        await in_transaction(sessions, lambda s: recharge(s, acc, amount, "bad"))
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Order)) == 0


def test_money_refuses_floats_and_sub_fen_amounts():
    with pytest.raises(MoneyError):
        Money.yuan(1.5)  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        Money.yuan("1.005")
    assert Money.yuan("12.34") == Money(1234)


async def test_refund_above_the_balance_is_refused_and_changes_nothing(sessions):
    acc, _ = await _account(sessions)
    await in_transaction(sessions, lambda s: recharge(s, acc, Money(1000), "r1"))
    with pytest.raises(InsufficientBalance):
        await in_transaction(sessions, lambda s: refund(s, acc, Money(1001), "f1"))
    assert await _balance(sessions, acc) == Money(1000)
    await in_transaction(sessions, lambda s: refund(s, acc, Money(400), "f2"))
    assert await _balance(sessions, acc) == Money(600)


async def test_a_stated_overdraft_allows_refunding_below_zero_only_when_invoked(sessions):
    acc, _ = await _account(sessions, overdraft=500)
    await in_transaction(sessions, lambda s: recharge(s, acc, Money(100), "r1"))
    with pytest.raises(InsufficientBalance):
        await in_transaction(sessions, lambda s: refund(s, acc, Money(300), "f1"))
    await in_transaction(sessions, lambda s: refund(s, acc, Money(300), "f2", use_overdraft=True))
    assert await _balance(sessions, acc) == Money(-200)


async def test_concurrent_refunds_cannot_double_spend(sessions):
    acc, _ = await _account(sessions)
    await in_transaction(sessions, lambda s: recharge(s, acc, Money(1000), "r1"))

    async def one(i: int) -> str:
        try:
            await in_transaction(sessions, lambda s: refund(s, acc, Money(700), f"race-{i}"))
            return "ok"
        except InsufficientBalance:
            return "refused"
    outcomes = await asyncio.gather(*(one(i) for i in range(4)))
    assert sorted(outcomes) == ["ok", "refused", "refused", "refused"]
    assert await _balance(sessions, acc) == Money(300)


async def test_concurrent_duplicate_recharges_credit_once(sessions):
    acc, _ = await _account(sessions)
    await asyncio.gather(*(in_transaction(sessions, lambda s: recharge(s, acc, Money(800), "dup"))
                           for _ in range(5)))
    assert await _balance(sessions, acc) == Money(800)
    async with sessions() as s:
        assert (await ledger.verify(s)).ok


async def test_per_meter_balances_need_a_meter_and_stay_apart(sessions):
    acc, meters = await _account(sessions, model="per_meter", meters=2)
    with pytest.raises(ServiceError):
        await in_transaction(sessions, lambda s: recharge(s, acc, Money(100), "x"))
    await in_transaction(sessions, lambda s: recharge(s, acc, Money(100), "a", meter_id=meters[0]))
    await in_transaction(sessions, lambda s: recharge(s, acc, Money(250), "b", meter_id=meters[1]))
    b = await in_transaction(sessions, lambda s: balance(s, acc))
    assert b.total == Money(350) and sorted(m.fen for m in b.wallets.values()) == [100, 250]


async def test_unknown_account_is_not_found(sessions):
    await _account(sessions)
    with pytest.raises(NotFound):
        await in_transaction(sessions, lambda s: recharge(s, 999, Money(1), "nope"))


async def test_a_ledger_account_created_by_two_transactions_at_once_is_one_row(sessions):
    """The first payments of a site arrive together: both create its `cash:alipay`; one row, both use it."""
    acc, _ = await _account(sessions)
    async with sessions() as s:
        site_id = (await s.get(Account, acc)).site_id
    first_inserted = asyncio.Event()

    async def first(s):
        ids = await bulk.ledger_ids(s, site_id, ["cash:race"], {})
        first_inserted.set()
        await asyncio.sleep(0.3)  # the second one now waits on the unique key (PostgreSQL) or the write lock
        return ids

    async def second():
        await first_inserted.wait()
        return await in_transaction(sessions, lambda s: bulk.ledger_ids(s, site_id, ["cash:race"], {}), attempts=1)

    a, b = await asyncio.gather(in_transaction(sessions, first, attempts=1), second())
    assert a == b and set(a) == {"cash:race"}
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(LedgerAccount).where(
            LedgerAccount.code == "cash:race")) == 1
