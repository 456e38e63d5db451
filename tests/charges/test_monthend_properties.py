"""Property tests (12 examples per database, 24 in all): for random groups and usages the parts
add up to the master's cost exactly, re-running any period changes nothing, the books balance."""

from __future__ import annotations

import asyncio
import itertools

from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import func, select

from billing.periods import month
from services import apportionment, fees, ledger
from services.monthend import run_month_end
from services.uow import in_transaction
from store.db import create_all, make_engine, make_sessionmaker
from store.models import ApportionRun, ApportionShare, Bill, Reading
from services.ingest import ReadingIn
from tests.charges.support import BEFORE_MARCH, END_OF_MARCH, MARCH, balances, build_world, feed

_codes = itertools.count(1)
members = st.lists(st.tuples(st.sampled_from(["5.00", "12.50", "30.00", "77.77"]),
                             st.sampled_from(["0", "1", "2.5", "7"]), st.integers(0, 5_000),
                             st.sampled_from(["prepaid", "postpaid"])), min_size=1, max_size=5)
scenario = st.fixed_dictionaries(dict(
    members=members, master_wh=st.integers(0, 2_000_000), method=st.sampled_from(["ratio", "area", "usage"]),
    collection=st.sampled_from(["deduct", "bill"]), other=st.sampled_from([(2026, 2), (2026, 4), (2026, 3)])))


async def _scenario(url: str, sc: dict) -> None:
    engine = make_engine(url)
    await create_all(engine)
    sessions = make_sessionmaker(engine)
    try:
        code = f"P{next(_codes)}"
        areas, ratios, usages, modes = zip(*sc["members"])
        w = await build_world(sessions, areas=areas, modes=modes, code=code)
        subs = list(zip(w.meters, usages))
        await feed(sessions, [ReadingIn(w.master, BEFORE_MARCH, 1_000_000)] + [ReadingIn(m, BEFORE_MARCH, 1_000) for m, _ in subs])
        await feed(sessions, [ReadingIn(w.master, END_OF_MARCH, 1_000_000 + sc["master_wh"])]
                   + [ReadingIn(m, END_OF_MARCH, 1_000 + used) for m, used in subs])
        async def configure(s):
            await fees.create_fee_item(s, w.site_id, dict(code="svc", name="Service", basis="per_m2",
                                                          rate_per_m2="1.33", recurrence="monthly",
                                                          starts_on="2026-01-01", collection=sc["collection"]), "t")
            await apportionment.create_group(s, w.site_id, dict(
                code="g", name="g", master_meter_id=w.master, method=sc["method"], collection=sc["collection"],
                members=[dict(room_id=r, ratio=x) for r, x in zip(w.rooms, ratios)]), "t")
        await in_transaction(sessions, configure)

        for period in (MARCH, month(*sc["other"])):
            await run_month_end(sessions, w.site_id, period)
            before = await balances(sessions, w.site_id)
            async with sessions() as s:
                bills_before = list((await s.execute(select(Bill.key, Bill.total_fen, Bill.revision)
                                                     .where(Bill.site_id == w.site_id).order_by(Bill.key))).all())
            await run_month_end(sessions, w.site_id, period)
            assert await balances(sessions, w.site_id) == before
            async with sessions() as s:
                assert list((await s.execute(select(Bill.key, Bill.total_fen, Bill.revision)
                                             .where(Bill.site_id == w.site_id).order_by(Bill.key))).all()) == bills_before

        async with sessions() as s:
            check = await ledger.verify(s)
            assert check.ok, check
            [run] = list(await s.scalars(select(ApportionRun).where(
                ApportionRun.site_id == w.site_id, ApportionRun.period_start == MARCH.start)))
            parts = await s.scalar(select(func.sum(ApportionShare.amount_fen)).where(ApportionShare.run_id == run.id))
            master_fen = await s.scalar(select(func.coalesce(func.sum(Reading.amount_fen), 0)).where(
                Reading.meter_id == w.master))
        assert run.cost_fen == master_fen == sc["master_wh"] // 10 + (sc["master_wh"] % 10 >= 5)
        assert parts == run.cost_fen
    finally:
        await engine.dispose()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sc=scenario)
def test_random_groups_split_exactly_and_reruns_change_nothing(db_url, sc):
    asyncio.run(_scenario(db_url, sc))
