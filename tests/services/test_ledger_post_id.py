"""ledger.post_id, every single posting's path: once per key, postings summing to zero, cached balances
for wallets and receivables only, missing ledger accounts created owned by the tenant's account."""

from __future__ import annotations

from sqlalchemy import func, select

from billing.ledger import Posting as Leg, Transaction, transfer
from billing.money import Money
from services import ledger
from services.accounts import OpenAccount, open_account
from services.uow import in_transaction
from store.models import LedgerAccount, LedgerTransaction, Posting
from tests.factories import add_meter, make_site


async def _site(sessions) -> int:  # type: ignore[no-untyped-def]
    async def build(s):  # type: ignore[no-untyped-def]
        return (await make_site(s)).site.id
    return await in_transaction(sessions, build)


async def _account(sessions) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """A site and an account of it (site id, account id)."""
    async def build(s):  # type: ignore[no-untyped-def]
        kit = await make_site(s)
        meter = await add_meter(s, kit, "101", None)
        return kit.site.id, (await open_account(s, OpenAccount(kit.site.id, "T9", "13800000009", (meter.id,)))).id
    return await in_transaction(sessions, build)


async def test_a_first_posting_creates_its_ledger_accounts_and_moves_only_cached_balances(sessions):
    site_id = await _site(sessions)
    txn = transfer("recharge:T1", "recharge", "cash:alipay", "wallet:7", Money(1_00), memo="m")
    txn_id, created = await in_transaction(sessions, lambda s: ledger.post_id(s, site_id, txn, actor="a"))
    assert created
    async with sessions() as s:
        accounts = {a.code: a for a in await s.scalars(select(LedgerAccount))}
        assert accounts["wallet:7"].balance_fen == 1_00 and accounts["cash:alipay"].balance_fen == 0
        legs = (await s.execute(select(Posting.ledger_account_id, Posting.amount_fen).where(
            Posting.txn_id == txn_id).order_by(Posting.id))).all()
        assert legs == [(accounts["cash:alipay"].id, -1_00), (accounts["wallet:7"].id, 1_00)]
        assert (await ledger.verify(s)).ok


async def test_posting_a_key_again_returns_the_first_transaction_and_changes_nothing(sessions):
    site_id = await _site(sessions)
    first = transfer("recharge:T2", "recharge", "cash:alipay", "wallet:8", Money(2_00))
    again = transfer("recharge:T2", "recharge", "cash:alipay", "wallet:8", Money(9_00))
    txn_id, _ = await in_transaction(sessions, lambda s: ledger.post_id(s, site_id, first))
    repeat = await in_transaction(sessions, lambda s: ledger.post_id(s, site_id, again))
    assert repeat == (txn_id, False)
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(LedgerTransaction)) == 1
        assert await s.scalar(select(func.count()).select_from(Posting)) == 2
        assert (await ledger.balance_of(s, site_id, "wallet:8")) == Money(2_00)
        assert (await ledger.verify(s)).ok


async def test_a_posting_records_its_actor_and_order_and_owns_a_new_wallet_by_the_account(sessions):
    site_id, account_id = await _account(sessions)
    for key in ("a", "b"):
        await in_transaction(sessions, lambda s, key=key: ledger.post_id(s, site_id, transfer(
            key, "recharge", "cash:cash", "wallet:9", Money(3_00)), actor="x", order_id=5, account_id=account_id))
    async with sessions() as s:
        rows = (await s.execute(select(LedgerTransaction.key, LedgerTransaction.kind, LedgerTransaction.actor,
                                       LedgerTransaction.order_id).order_by(LedgerTransaction.id))).all()
        assert rows == [("a", "recharge", "x", 5), ("b", "recharge", "x", 5)]
        assert (await ledger.balance_of(s, site_id, "wallet:9")) == Money(6_00)
        owner = await s.scalar(select(LedgerAccount.account_id).where(LedgerAccount.code == "wallet:9"))
        assert owner == account_id
        assert (await ledger.verify(s)).ok


async def test_a_posting_that_moves_a_receivable_and_a_wallet_moves_both_once(sessions):
    """A bill payment with change: two cached balances in one transaction (on PostgreSQL written
    statement by statement, not by the one-statement path), recorded once per key."""
    site_id, account_id = await _account(sessions)
    paid = Transaction("billpay:P1", "bill_payment", (
        Leg("cash:alipay", Money(-5_00)), Leg(f"receivable:{account_id}", Money(4_00)),
        Leg(f"wallet:{account_id}", Money(1_00))))
    first = await in_transaction(sessions, lambda s: ledger.post_id(s, site_id, paid, account_id=account_id))
    again = await in_transaction(sessions, lambda s: ledger.post_id(s, site_id, paid, account_id=account_id))
    assert first[1] and again == (first[0], False)
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Posting).where(Posting.txn_id == first[0])) == 3
        assert (await ledger.balance_of(s, site_id, f"receivable:{account_id}")) == Money(4_00)
        assert (await ledger.balance_of(s, site_id, f"wallet:{account_id}")) == Money(1_00)
        owners = set(await s.scalars(select(LedgerAccount.account_id).where(
            LedgerAccount.code.in_((f"receivable:{account_id}", f"wallet:{account_id}")))))
        assert owners == {account_id}
        assert (await ledger.verify(s)).ok
