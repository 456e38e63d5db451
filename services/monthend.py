"""Month-end: fees, then common-area apportionment, then postpaid / dunning bills, for one site.

Each step is its own transaction and is idempotent on its own (ledger keys, one apportionment
run per group and period, one bill per account and period), so a crash between steps or a job
that runs twice (arq delivers at least once) is finished by simply running again. Apportionment
runs before bills so that bill-collected shares land on the same period's bills; on PostgreSQL fee
deductions and apportionment run at the same time (two transactions, see `_concurrent_writers`).

Jobs: `month_end_job(ctx, site_id, period)` runs one site by hand or from the queue (job id
``monthend:<site>:<YYYY-MM>``); `month_end_cron(ctx)` runs last month for every site and is
meant for an arq cron on the 1st at ~02:00 local time. Both need ``ctx["sessions"]``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.periods import Period, month
from services import apportionment, fees, postpaid
from services.occupancy import site_zone, tenancies
from services.uow import in_transaction
from store.models import AuditEntry, Site
from store.types import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MonthEnd:
    site_id: int
    period: str
    fees: dict[str, int]
    apportionment: dict[str, Any]
    bills: dict[str, int]


def parse_month(text: str) -> Period:
    """'2026-03' -> the calendar month."""
    year, month_no = (int(x) for x in text.split("-")[:2])
    return month(year, month_no)


@contextmanager
def few_collections() -> Iterator[None]:
    """Pause the cyclic garbage collector for a month-end run, then resume it.

    A run holds a few million small objects (rows, charges, lines) alive until its step ends; the
    collector rescans them again and again as more are made: ~40 % of the CPU at 30,000 accounts,
    and none of it frees anything (they are not cycles). Reference counting still frees memory as
    usual; cycles made meanwhile wait for the next collection after the run.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def _concurrent_writers(sessions: async_sessionmaker[AsyncSession]) -> bool:
    """Fee deductions and apportionment touch different rows but for the wallets' cached balances;
    on PostgreSQL they run side by side (the second UPDATE of a shared wallet waits for the first
    commit, then adds to the committed value; each step's cut-off check runs after its own balance
    update, so the later one sees both). SQLite has one writer at a time: one after the other."""
    bind = sessions.kw.get("bind")
    return bind is not None and bind.dialect.name == "postgresql"


async def run_month_end(sessions: async_sessionmaker[AsyncSession], site_id: int, period: Period,
                        actor: str = "system", timings: dict[str, float] | None = None) -> MonthEnd:
    """Charge fees, split common areas and generate bills for `period`; safe to run again.

    `timings`, if given, receives each step's wall seconds (bench/monthend.py reports them).
    """
    with few_collections():
        return await _run(sessions, site_id, period, actor, {} if timings is None else timings)


async def _run(sessions: async_sessionmaker[AsyncSession], site_id: int, period: Period, actor: str,
               timings: dict[str, float]) -> MonthEnd:
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name], clock = now - clock, now

    async def _tenancies(s: AsyncSession):  # type: ignore[no-untyped-def]
        return await tenancies(s, site_id, period, await site_zone(s, site_id))

    found = await in_transaction(sessions, _tenancies)
    lap("tenancies")
    charges = await in_transaction(sessions, lambda s: fees.period_charges(s, site_id, period, found))
    lap("charges")
    deduct = in_transaction(sessions, lambda s: fees.deduct_fees(s, site_id, period, actor, found, charges))
    split_up = in_transaction(sessions, lambda s: apportionment.run_apportionment(s, site_id, period, actor, found))
    if _concurrent_writers(sessions):
        fee_run, split = await asyncio.gather(deduct, split_up)
        lap("fees+apportionment")
    else:
        fee_run = await deduct
        lap("fees")
        split = await split_up
        lap("apportionment")
    bills = await in_transaction(sessions, lambda s: postpaid.generate_bills(s, site_id, period, actor, found,
                                                                           charges))
    lap("bills")
    result = MonthEnd(site_id, period.label, asdict(fee_run), asdict(split), asdict(bills))

    async def _audit(s: AsyncSession) -> None:
        s.add(AuditEntry(actor=actor, site_id=site_id, action="monthend.run", object_type="site",
                         object_id=str(site_id), after=asdict(result), reason=period.label))

    await in_transaction(sessions, _audit)
    for error in split.errors:
        log.warning("month-end %s site %s: %s", period.label, site_id, error)
    return result


async def month_end_job(ctx: dict[str, Any], site_id: int, period: str, actor: str = "system") -> dict[str, Any]:
    """arq job: month-end of one site for 'YYYY-MM'."""
    return asdict(await run_month_end(ctx["sessions"], site_id, parse_month(period), actor))


def previous_month(today: date) -> Period:
    last = today.replace(day=1) - timedelta(days=1)
    return month(last.year, last.month)


async def month_end_cron(ctx: dict[str, Any]) -> list[dict[str, Any]]:
    """arq cron: last month's month-end for every site (each site's own local date)."""
    sessions = ctx["sessions"]

    async def _sites(s: AsyncSession) -> list[tuple[int, str]]:
        return [(i, tz) for i, tz in (await s.execute(select(Site.id, Site.timezone))).all()]

    out = []
    for site_id, tz in await in_transaction(sessions, _sites):
        local_today = utcnow().astimezone(ZoneInfo(tz or "Asia/Shanghai")).date()
        out.append(await month_end_job(ctx, site_id, f"{previous_month(local_today).start:%Y-%m}"))
    return out
