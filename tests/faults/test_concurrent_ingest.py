"""Two processes ingesting the same meter at once (a lease handover, two MQTT consumers) must not bill twice.

Found by bench/faults.py: on PostgreSQL, services.ingest reads the meter's baseline without a row
lock, so a second transaction that starts before the first commits bills from the same baseline
(overlapping intervals, energy charged twice). Strict xfail on PostgreSQL until ingest locks the
batch's meters (SELECT ... FOR UPDATE ORDER BY id); SQLite's BEGIN IMMEDIATE already serialises.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from billing.money import Money
from services.accounts import OpenAccount, open_account
from services.ingest import ReadingIn, ingest
from services.uow import in_transaction
from services.wallets import recharge
from store.models import Reading
from tests.factories import FLAT_1, add_meter, add_tariff, make_site

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
M = timedelta(minutes=1)


async def _meter(sessions) -> int:  # type: ignore[no-untyped-def]
    async def build(s):  # type: ignore[no-untyped-def]
        kit = await make_site(s)
        m = await add_meter(s, kit, "101", await add_tariff(s, kit, "t", FLAT_1))
        acc = await open_account(s, OpenAccount(kit.site.id, "Li Lei", "13900000000", (m.id,)))
        acc.opened_at = T0 - M
        await recharge(s, acc.id, Money(100_00), "opening")
        await ingest(s, [ReadingIn(m.id, T0, 1_000_000)])
        return m.id
    return await in_transaction(sessions, build)


async def test_two_overlapping_ingest_transactions_of_one_meter_bill_each_interval_once(sessions):
    meter = await _meter(sessions)
    first = sessions()
    await first.begin()
    await ingest(first, [ReadingIn(meter, T0 + 2 * M, 1_002_000)])
    await first.flush()
    second = asyncio.create_task(in_transaction(sessions, lambda s: ingest(s, [ReadingIn(meter, T0 + M, 1_001_000)])))
    await asyncio.sleep(0.5)  # the second transaction is now in flight (blocked or not)
    await first.commit()
    await first.close()
    await second
    async with sessions() as s:
        billed = list((await s.execute(select(Reading.from_at, Reading.taken_at, Reading.quantity).where(
            Reading.meter_id == meter, Reading.verdict == "billed").order_by(Reading.taken_at))).all())
    assert sum(q for _, _, q in billed) == 2_000  # the register advanced 2 kWh in all
    for (_, prev_to, _), (nxt_from, _, _) in zip(billed, billed[1:]):
        assert nxt_from >= prev_to
