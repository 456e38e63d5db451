"""Property test: random sequences of open/recharge/refund/ingest keep the books exact.

After every step: every transaction sums to zero, every cached balance equals its postings,
money in minus refunds out equals wallets plus revenue, revenue equals the billed readings,
and repeating the step (same key, same reading) changes nothing.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import func, select, text

from billing.money import Money
from services import ledger
from services.accounts import OpenAccount, open_account
from services.errors import ServiceError
from services.ingest import ReadingIn, ingest
from services.uow import in_transaction
from services.wallets import recharge, refund
from store.db import create_all, make_engine, make_sessionmaker
from store.models import Base, LedgerAccount, Reading
from tests.factories import add_meter, add_tariff, make_site

T0 = datetime(2026, 1, 31, 12, tzinfo=timezone.utc)
TOU = {"kind": "tou", "prices": {"sharp": "1.30", "peak": "1.05", "flat": "0.70", "valley": "0.35"},
       "windows": [{"start": "22:00", "end": "07:00", "rate": "valley"}, {"start": "07:00", "end": "10:00", "rate": "flat"},
                   {"start": "10:00", "end": "11:00", "rate": "sharp"}, {"start": "11:00", "end": "22:00", "rate": "peak"}]}
TIERED = {"kind": "tiered", "tiers": [{"upto": "2", "price": "0.50"}, {"upto": "5", "price": "0.80"}, {"price": "1.10"}]}


def _total(meter: int, hour: int) -> int:
    """A monotonic register series per meter, so any subset in any order is a realistic replay."""
    return 100_000 + sum(137 * ((meter + 3) * (h + 1) % 11) for h in range(hour))


ops = st.lists(st.one_of(
    st.tuples(st.just("recharge"), st.integers(0, 1), st.integers(1, 5000), st.integers(0, 4)),
    st.tuples(st.just("refund"), st.integers(0, 1), st.integers(1, 3000), st.integers(0, 4)),
    st.tuples(st.just("ingest"), st.integers(0, 2), st.integers(0, 40), st.just(0)),
), min_size=1, max_size=14)


async def _seed(sessions) -> tuple[list[int], list[int]]:
    async def build(s):
        kit = await make_site(s)
        flat = await add_tariff(s, kit, "flat", {"kind": "flat", "price": "0.85"})
        tou = await add_tariff(s, kit, "tou", TOU)
        tiered = await add_tariff(s, kit, "tiered", TIERED)
        ms = [await add_meter(s, kit, "1", flat), await add_meter(s, kit, "2", tou),
              await add_meter(s, kit, "3", tiered)]
        a = await open_account(s, OpenAccount(kit.site.id, "A", "1", (ms[0].id, ms[1].id), overdraft=Money(500)))
        b = await open_account(s, OpenAccount(kit.site.id, "B", "2", (ms[2].id,)))
        for acc in (a, b):
            acc.opened_at = T0 - timedelta(days=1)
        return [a.id, b.id], [m.id for m in ms]
    return await in_transaction(sessions, build)


async def _apply(sessions, op, accounts, meters) -> None:
    kind, who, amount, key = op
    try:
        if kind == "recharge":
            await in_transaction(sessions, lambda s: recharge(s, accounts[who], Money(amount), f"r{who}-{key}-{amount}"))
        elif kind == "refund":
            await in_transaction(sessions, lambda s: refund(s, accounts[who], Money(amount), f"f{who}-{key}-{amount}"))
        else:
            r = ReadingIn(meters[who], T0 + timedelta(hours=amount), _total(who, amount))
            await in_transaction(sessions, lambda s: ingest(s, [r]))
    except ServiceError:
        pass  # refused operations must change nothing: the invariants below check it


async def _books(sessions) -> dict[str, int]:
    async with sessions() as s:
        check = await ledger.verify(s)
        assert check.ok, check
        rows = await ledger.balances(s)
        billed = await s.scalar(select(func.coalesce(func.sum(Reading.amount_fen), 0)).where(Reading.txn_id.is_not(None)))
    cash = sum(v for k, v in rows.items() if k.startswith("cash:"))
    wallets = sum(v for k, v in rows.items() if k.startswith("wallet:"))
    revenue = sum(v for k, v in rows.items() if k.startswith("revenue:"))
    assert -cash == wallets + revenue, rows  # money in - refunds out == wallets + revenue
    assert revenue == billed
    return rows


async def _scenario(url: str, steps) -> None:
    engine = make_engine(url)
    if url.startswith("postgresql"):
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    else:
        await create_all(engine)
    sessions = make_sessionmaker(engine)
    try:
        accounts, meters = await _seed(sessions)
        for op in steps:
            await _apply(sessions, op, accounts, meters)
            before = await _books(sessions)
            await _apply(sessions, op, accounts, meters)  # the same operation again
            assert await _books(sessions) == before
    finally:
        await engine.dispose()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=ops)
def test_random_operations_keep_the_books_exact_and_repeats_change_nothing(db_url, steps):
    if db_url.startswith("sqlite"):
        import os
        path = db_url.split("///", 1)[1]
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    asyncio.run(_scenario(db_url, steps))
