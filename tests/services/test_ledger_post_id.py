"""ledger.post_id, the payment path's posting: the same exactly-once rule and books as ledger.post."""

from __future__ import annotations

from sqlalchemy import func, select

from billing.ledger import transfer
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


async def test_post_id_and_post_record_the_same_rows(sessions):
    site_id, account_id = await _account(sessions)
    await in_transaction(sessions, lambda s: ledger.post(s, site_id, transfer(
        "a", "recharge", "cash:cash", "wallet:9", Money(3_00)), actor="x", order_id=5, account_id=account_id))
    await in_transaction(sessions, lambda s: ledger.post_id(s, site_id, transfer(
        "b", "recharge", "cash:cash", "wallet:9", Money(3_00)), actor="x", order_id=5, account_id=account_id))
    async with sessions() as s:
        rows = (await s.execute(select(LedgerTransaction.key, LedgerTransaction.kind, LedgerTransaction.actor,
                                       LedgerTransaction.order_id).order_by(LedgerTransaction.id))).all()
        assert rows == [("a", "recharge", "x", 5), ("b", "recharge", "x", 5)]
        assert (await ledger.balance_of(s, site_id, "wallet:9")) == Money(6_00)
        owner = await s.scalar(select(LedgerAccount.account_id).where(LedgerAccount.code == "wallet:9"))
        assert owner == account_id
        assert (await ledger.verify(s)).ok
