"""Balances with days left, read in ONE statement: bindings, accounts, rooms, meters, wallets, recent cost.

"余额" is what tenants ask most, hundreds at a time when bills go out, so the bot's answer costs one
round trip: a row per (bound open account, meter) carrying the site, the room, the account's
merged wallet, the meter's own wallet and the meter's cost over the usage window (a correlated
sum over `ix_readings_account_taken`). The rows are folded into views here in Python, by the
same rules for the bot, the mini-program API and the pay page.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from itertools import groupby
from typing import Any

from sqlalchemy import String, and_, bindparam, case, cast, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql import Select

from billing.money import Money
from bot.port import BalanceView, RoomView
from services.tenant_rules import USAGE_WINDOW, days_left, room_label, usage_window, utility_of
from store.models import Account, Building, LedgerAccount, Meter, Reading, Room, Site, TenantLink
from store.types import UTCDateTime

_merged = aliased(LedgerAccount, name="merged_wallet")
_own = aliased(LedgerAccount, name="meter_wallet")


def _statement() -> Select[Any]:
    """Every (account, meter) row with what the balance views need, as of :now; callers add the WHERE.

    Built once at import with bind parameters, so a request pays neither for building the
    expression nor for compiling it (SQLAlchemy caches the compiled form by the statement).
    """
    window_start, now = bindparam("window_start", type_=UTCDateTime()), bindparam("now", type_=UTCDateTime())
    since = case((Account.opened_at > window_start, Account.opened_at), else_=window_start)
    cost = (select(func.coalesce(func.sum(Reading.amount_fen), 0))
            .where(Reading.account_id == Account.id, Reading.meter_id == Meter.id,
                   Reading.taken_at >= since, Reading.taken_at <= now)
            .scalar_subquery())
    return (
        select(Account.id, Account.code, Account.balance_model, Account.opened_at, Site.code, Site.name,
               Meter.id, Meter.utility, Meter.billing_side, Meter.meter_balance_fen, Building.name, Room.number,
               _merged.balance_fen, _own.balance_fen, cost)
        .select_from(Account)
        .join(Site, Site.id == Account.site_id)
        .outerjoin(Meter, Meter.account_id == Account.id)
        .outerjoin(Room, Room.id == Meter.room_id)
        .outerjoin(Building, Building.id == Room.building_id)
        .outerjoin(_merged, and_(_merged.account_id == Account.id,
                                 _merged.code == literal_column("'wallet:'") + cast(Account.id, String)))
        .outerjoin(_own, and_(_own.account_id == Account.id,
                              _own.code == literal_column("'wallet:meter:'") + cast(Meter.id, String)))
        .where(Account.state == "open")
    )


BY_OPENIDS = (_statement().add_columns(TenantLink.openid).join(TenantLink, TenantLink.account_id == Account.id)
              .where(TenantLink.openid.in_(bindparam("openids", expanding=True)))
              .order_by(TenantLink.id, Meter.id))
BY_ACCOUNT = _statement().where(Account.id == bindparam("account_id")).order_by(Meter.id)


def _params(now: datetime) -> dict[str, Any]:
    return {"now": now, "window_start": now - USAGE_WINDOW}


async def balances_by_openid(session: AsyncSession, openids: Sequence[str], now: datetime) -> dict[str, list[BalanceView]]:
    """Balance views of every open account bound to each openid, in binding order (one statement)."""
    rows = (await session.execute(BY_OPENIDS, {"openids": list(openids), **_params(now)})).all()
    grouped: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        grouped[row[15]].append(row)
    return {openid: fold(group, now) for openid, group in grouped.items()}


async def bound_balances(session: AsyncSession, openid: str, now: datetime) -> list[BalanceView]:
    """Balance views of every open account bound to `openid`, in binding order."""
    return (await balances_by_openid(session, [openid], now)).get(openid, [])


async def account_balances(session: AsyncSession, account_id: int, now: datetime) -> list[BalanceView]:
    """Balance views of one open account (empty when unknown or closed)."""
    return fold((await session.execute(BY_ACCOUNT, {"account_id": account_id, **_params(now)})).all(), now)


def fold(rows: Sequence[Any], now: datetime) -> list[BalanceView]:
    """Views from the statement's rows, grouped by account (rows of one account are adjacent)."""
    out: list[BalanceView] = []
    for _, group in groupby(rows, key=lambda r: r[0]):
        out += _account_views(list(group), now)
    return out


def _account_views(rows: list[Any], now: datetime) -> list[BalanceView]:
    """One view per wallet (merged: one; per meter: one each); meter-side meters show their own."""
    (acc_id, acc_code, model, opened_at, site_code, site_name, *_), merged_fen = rows[0], rows[0][12]
    placed = next((r for r in rows if r[11] is not None), None)
    room = RoomView(str(acc_id), site_code, site_name,
                    room_label(placed[10], placed[11], acc_code) if placed else acc_code)
    _, elapsed_s = usage_window(now, opened_at)
    meters = [r for r in rows if r[6] is not None]
    own = [r for r in meters if r[8] == "meter" and r[9] is not None]
    platform = [r for r in meters if not (r[8] == "meter" and r[9] is not None)]
    views = [BalanceView(room, utility_of(r[7]), Money(r[9]), days_left(r[9], int(r[14]), elapsed_s))
             for r in own]
    if model == "per_meter":
        for r in platform:
            fen = int(r[13] or 0)
            views.append(BalanceView(room, utility_of(r[7]), Money(fen), days_left(fen, int(r[14]), elapsed_s)))
    elif platform or not own:
        fen = int(merged_fen or 0)
        spent = sum(int(r[14]) for r in platform)
        utility = "electricity" if any(r[7] == "electricity" for r in platform) or not platform \
            else utility_of(platform[0][7])
        views.insert(0, BalanceView(room, utility, Money(fen), days_left(fen, spent, elapsed_s)))
    return views


ReadMany = Callable[[list[str]], Awaitable[dict[str, list[BalanceView]]]]


class CoalescedBalances:
    """Balance questions that arrive together are answered by one statement (`openid IN (...)`).

    When hundreds of tenants ask at once, a web process is CPU-bound and most of a lone read's
    cost is the database round trips (pool ping, BEGIN, the query, COMMIT), not the rows. Each
    question waits at most one event-loop turn: the questions of that turn go out as one read,
    so under light load a batch is one question and under heavy load batches grow by themselves.
    """

    def __init__(self, read_many: ReadMany, max_batch: int = 200) -> None:
        self._read_many = read_many
        self._max_batch = max_batch
        self._waiting: dict[str, list[asyncio.Future[list[BalanceView]]]] = {}
        self._scheduled = False
        self._reads: set[asyncio.Task[None]] = set()

    async def get(self, openid: str) -> list[BalanceView]:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[list[BalanceView]] = loop.create_future()
        self._waiting.setdefault(openid, []).append(answer)
        if len(self._waiting) >= self._max_batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await answer

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._waiting = self._waiting, {}
        if batch:
            read = asyncio.get_running_loop().create_task(self._answer(batch))
            self._reads.add(read)
            read.add_done_callback(self._reads.discard)

    async def _answer(self, batch: dict[str, list[asyncio.Future[list[BalanceView]]]]) -> None:
        try:
            found = await self._read_many(list(batch))
        except BaseException as ex:  # every waiter gets the failure (PortUnavailable, cancellation)
            for answers in batch.values():
                for answer in answers:
                    if not answer.done():
                        answer.set_exception(ex if isinstance(ex, Exception) else asyncio.CancelledError())
            if not isinstance(ex, Exception):
                raise
            return
        for openid, answers in batch.items():
            for answer in answers:
                if not answer.done():
                    answer.set_result(found.get(openid, []))
