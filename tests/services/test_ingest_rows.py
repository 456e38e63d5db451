"""What ingest stores, now that it writes rows through the driver: the same values the ORM reads back,
and on the meter only what a batch's readings moved (live values, relay and counters survive plain readings)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from billing.money import Money
from services.accounts import OpenAccount, open_account
from services.ingest import ReadingIn, ingest
from services.uow import in_transaction
from services.wallets import recharge
from store.models import Meter, Reading
from tests.factories import FLAT_1, add_meter, add_tariff, make_site

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
H = timedelta(hours=1)
SH = timezone(timedelta(hours=8))


async def _meter(sessions) -> int:  # type: ignore[no-untyped-def]
    async def build(s):  # type: ignore[no-untyped-def]
        kit = await make_site(s)
        m = await add_meter(s, kit, "101", await add_tariff(s, kit, "t", FLAT_1))
        acc = await open_account(s, OpenAccount(kit.site.id, "Li Lei", "13900000000", (m.id,)))
        acc.opened_at = T0 - H
        await recharge(s, acc.id, Money(100_00), "opening")
        await ingest(s, [ReadingIn(m.id, T0, 1_000_000, live={"U": 230.1}, relay_closed=True,
                                   meter_balance_fen=500, purchase_count=3)])
        return m.id
    return await in_transaction(sessions, build)


async def test_a_billed_reading_is_stored_with_its_lines_times_and_ledger_transaction(sessions):
    meter = await _meter(sessions)
    at = (T0 + H).astimezone(SH)  # any zone in, UTC stored
    [r] = await in_transaction(sessions, lambda s: ingest(s, [ReadingIn(meter, at, 1_001_500, rates=(0, 0, 1_001_500, 0))]))
    assert (r.verdict, r.amount) == ("billed", Money(150))
    async with sessions() as s:
        row = await s.scalar(select(Reading).where(Reading.taken_at == T0 + H))
    assert (row.from_at, row.taken_at, row.quantity, row.amount_fen) == (T0, T0 + H, 1_500, 150)
    assert row.lines == [{"label": "flat", "quantity": 1_500, "unit_price": "1.00", "fen": 150, "version_id": row.lines[0]["version_id"]}]
    assert row.rate_split == [0, 0, 1_500, 0] and row.rates == [0, 0, 1_001_500, 0] and row.txn_id is not None
    assert row.received_at.tzinfo is not None


async def test_a_plain_reading_moves_the_baseline_and_leaves_live_values_relay_and_counters_alone(sessions):
    meter = await _meter(sessions)
    await in_transaction(sessions, lambda s: ingest(s, [ReadingIn(meter, T0 + H, 1_001_000)]))
    async with sessions() as s:
        m = await s.get(Meter, meter)
    assert (m.base_at, m.base_total, m.last_reading_at, m.last_total) == (T0 + H, 1_001_000, T0 + H, 1_001_000)
    assert (m.live, m.relay_closed, m.meter_balance_fen, m.purchase_count) == ({"U": 230.1}, True, 500, 3)
    assert m.online and m.month_key == "2026-03" and m.month_used == 1_000


async def test_meter_copies_loaded_in_the_same_session_see_what_ingest_wrote(sessions):
    meter = await _meter(sessions)

    async def run(s):  # type: ignore[no-untyped-def]
        m = await s.get(Meter, meter)
        await ingest(s, [ReadingIn(meter, T0 + H, 1_000_400, live={"U": 229.0}), ReadingIn(meter, T0 + 2 * H, 1_000_300)])
        return m.base_total, m.flags, m.live, m.last_reading_at

    # the backward reading is flagged and leaves the baseline where the first one put it
    assert await in_transaction(sessions, run) == (1_000_400, 1, {"U": 229.0}, T0 + 2 * H)
