"""Fee items charged at month-end: deducted once, prorated on move-in, billed when so configured."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import func, select

from services import fees
from services.errors import Conflict, ServiceError
from services.uow import in_transaction
from store.models import BillLine, LedgerTransaction
from tests.charges.support import MARCH, SHANGHAI, balance, books_ok, build_world

RENT = dict(code="rent", name="Rent", basis="fixed", amount_fen=150000, recurrence="monthly",
            starts_on="2026-01-01")


async def _item(sessions, site_id, **spec):
    return await in_transaction(sessions, lambda s: fees.create_fee_item(s, site_id, spec, actor="staff"))


async def _deduct(sessions, site_id, period=MARCH):
    return await in_transaction(sessions, lambda s: fees.deduct_fees(s, site_id, period))


async def test_a_mid_month_move_in_is_charged_the_occupied_days_only(sessions):
    # Moves in on 15 March (local): 17 of 31 days, 150000 x 17 / 31 = 82258.06 -> 82258 fen.
    w = await build_world(sessions, areas=("30.00",), opened=datetime(2026, 3, 15, 9, tzinfo=SHANGHAI))
    await _item(sessions, w.site_id, **RENT)
    run = await _deduct(sessions, w.site_id)
    assert (run.deducted, run.deducted_fen) == (1, 82258)
    assert await balance(sessions, w.site_id, f"wallet:{w.accounts[0]}") == 1000_00 - 82258
    assert await balance(sessions, w.site_id, "revenue:fee:rent") == 82258
    async with sessions() as s:
        keys = list(await s.scalars(select(LedgerTransaction.key).where(LedgerTransaction.kind == "fee")))
    assert keys == [f"fee:rent:{w.rooms[0]}:{w.accounts[0]}:2026-03-01/2026-04-01"]


async def test_running_the_fees_of_a_month_twice_charges_once(sessions):
    w = await build_world(sessions)
    await _item(sessions, w.site_id, **RENT)
    first = await _deduct(sessions, w.site_id)
    again = await _deduct(sessions, w.site_id)
    assert (first.deducted, again.deducted, again.skipped) == (3, 0, 3)
    assert await balance(sessions, w.site_id, "revenue:fee:rent") == 3 * 150000
    await books_ok(sessions)


async def test_a_per_square_metre_fee_follows_each_rooms_area(sessions):
    # Property fee 2.50 yuan per m2 per month: 20 m2 -> 50.00, 30 m2 -> 75.00, 50 m2 -> 125.00.
    w = await build_world(sessions)
    await _item(sessions, w.site_id, code="property", name="Property fee", basis="per_m2", rate_per_m2="2.50",
                recurrence="monthly", starts_on="2026-01-01")
    await _deduct(sessions, w.site_id)
    charged = [1000_00 - await balance(sessions, w.site_id, f"wallet:{a}") for a in w.accounts]
    assert charged == [5000, 7500, 12500]


async def test_a_fee_for_chosen_rooms_charges_only_those_rooms(sessions):
    w = await build_world(sessions)
    await _item(sessions, w.site_id, **dict(RENT, code="parking", scope="rooms", room_ids=[w.rooms[1]]))
    run = await _deduct(sessions, w.site_id)
    assert run.deducted == 1
    assert await balance(sessions, w.site_id, f"wallet:{w.accounts[1]}") == 1000_00 - 150000


async def test_a_fee_collected_by_bill_leaves_the_wallet_alone(sessions):
    w = await build_world(sessions, areas=("30.00",))
    await _item(sessions, w.site_id, **dict(RENT, collection="bill"))
    run = await _deduct(sessions, w.site_id)
    assert (run.deducted, run.billed) == (0, 1)
    assert await balance(sessions, w.site_id, f"wallet:{w.accounts[0]}") == 1000_00
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(BillLine)) == 0


async def test_bad_fee_items_are_refused_with_a_reason(sessions):
    w = await build_world(sessions, areas=("30.00",))
    await _item(sessions, w.site_id, **RENT)
    with pytest.raises(Conflict):
        await _item(sessions, w.site_id, **RENT)
    with pytest.raises(ServiceError, match="invalid fee item"):
        await _item(sessions, w.site_id, **dict(RENT, code="bad:code"))
    with pytest.raises(ServiceError, match="scope"):
        await _item(sessions, w.site_id, **dict(RENT, code="b", scope="building"))
    with pytest.raises(ServiceError, match="float"):
        await _item(sessions, w.site_id, **dict(RENT, code="c", basis="per_m2", rate_per_m2=2.5))
