"""The ledger refuses postings that point nowhere (both databases) and, on PostgreSQL, is append-only."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from billing.money import Money
from services.uow import in_transaction
from services.wallets import recharge
from store.models import LedgerAccount, LedgerTransaction, Posting
from tests.services.test_wallets import _account


async def _a_posting(sessions) -> Posting:
    acc, _ = await _account(sessions)
    await in_transaction(sessions, lambda s: recharge(s, acc, Money.yuan("50"), "desk-1"))
    async with sessions() as s:
        return (await s.scalars(select(Posting).limit(1))).one()


@pytest.mark.parametrize("column", ["txn_id", "ledger_account_id"])
async def test_a_posting_to_a_missing_account_or_transaction_is_refused(sessions, column):
    good = await _a_posting(sessions)
    rows = [dict(txn_id=good.txn_id, ledger_account_id=good.ledger_account_id, amount_fen=5),
            dict(txn_id=good.txn_id, ledger_account_id=good.ledger_account_id, amount_fen=-5)]
    rows[1][column] = 987_654  # one bad row among good ones: the whole statement is refused
    async with sessions() as s:
        before = await s.scalar(select(func.count()).select_from(Posting))
    async with sessions() as s:
        with pytest.raises(IntegrityError):
            async with s.begin():
                await s.execute(insert(Posting), rows)
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Posting)) == before


ON_POSTGRES = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


@ON_POSTGRES
async def test_postings_by_copy_are_checked_too(sessions):
    """Ingest writes postings with COPY on PostgreSQL: the statement trigger sees those rows as well."""
    good = await _a_posting(sessions)
    async with sessions() as s:
        conn = await s.connection()
        raw = (await conn.get_raw_connection()).driver_connection
        with pytest.raises(Exception, match="does not exist"):
            await raw.copy_records_to_table("ledger_postings", records=[(good.txn_id, 987_654, 1)],
                                            columns=["txn_id", "ledger_account_id", "amount_fen"])


@ON_POSTGRES
@pytest.mark.parametrize("statement", ["delete posting", "update posting", "delete transaction", "delete account"])
async def test_the_ledger_is_append_only_on_postgres(sessions, statement):
    good = await _a_posting(sessions)
    sql = {"delete posting": delete(Posting).where(Posting.id == good.id),
           "update posting": update(Posting).where(Posting.id == good.id).values(amount_fen=1),
           "delete transaction": delete(LedgerTransaction).where(LedgerTransaction.id == good.txn_id),
           "delete account": delete(LedgerAccount).where(LedgerAccount.id == good.ledger_account_id)}[statement]
    async with sessions() as s:
        with pytest.raises(DBAPIError, match="append-only"):
            async with s.begin():
                await s.execute(sql)
    async with sessions() as s:
        assert (await s.get(Posting, good.id)).amount_fen == good.amount_fen
