"""Closing an account settles each wallet in the ledger once (key `settle:<account>:<wallet>`)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from billing.money import Money
from services import ledger
from services.accounts import OpenAccount, close_account, open_account
from services.errors import Conflict
from services.uow import in_transaction
from services.wallets import recharge
from store.models import LedgerTransaction, Order
from tests.factories import add_meter, make_site


async def _account_with_credit(sessions, credit: Money) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    async def build(s):  # type: ignore[no-untyped-def]
        kit = await make_site(s)
        meter = await add_meter(s, kit, "101", None)
        acc = await open_account(s, OpenAccount(kit.site.id, "T1", "13800000001", (meter.id,)))
        await recharge(s, acc.id, credit, "opening-credit")
        return kit.site.id, acc.id
    return await in_transaction(sessions, build)


async def test_closing_twice_refunds_the_credit_once(sessions):
    site_id, acc = await _account_with_credit(sessions, Money(12_34))
    await in_transaction(sessions, lambda s: close_account(s, acc, []))
    with pytest.raises(Conflict):
        await in_transaction(sessions, lambda s: close_account(s, acc, []))
    async with sessions() as s:
        settled = (await s.execute(select(LedgerTransaction.key, LedgerTransaction.order_id).where(
            LedgerTransaction.kind == "settle"))).all()
        refund = await s.scalar(select(Order).where(Order.kind == "refund"))
        assert refund is not None and settled == [(f"settle:{acc}:wallet:{acc}", refund.id)]
        assert (await ledger.balance_of(s, site_id, f"wallet:{acc}")) == Money(0)
        assert (await ledger.balance_of(s, site_id, "cash:cash")) == Money(0)  # 12.34 in, 12.34 back
        assert (await ledger.verify(s)).ok
