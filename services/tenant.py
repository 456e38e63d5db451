"""The database-backed TenantPort: what a bound WeChat user may see of their accounts, and binding.

Bindings live in `tenant_links` (one openid may hold several rooms, across sites). The pieces are
in services.tenant_balance (the one-statement balance read), services.tenant_rooms (bound
accounts with rooms and meters), services.tenant_binding (SMS / room binding) and
services.tenant_rules (pure rules). Database faults surface as `PortUnavailable`, which the bot
answers with "busy".
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.money import Money
from bot.port import (BalanceView, BillView, BindResult, BindStartStatus, OrderView, PortUnavailable,
                      RoomView, UsageSpan, UsageView)
from services import tenant_binding as binding
from services.tenant_balance import CoalescedBalances, account_balances, balances_by_openid
from services.tenant_rooms import Mine, bound_accounts, rooms_of, with_rooms
from services.tenant_rules import (CODE_TTL, RECENT_ORDERS, bill_status, days_left, normalise_phone,
                                   order_view, pay_signature, span_bounds, usage_view, utility_of)
from services.uow import in_transaction
from store.models import Account, Meter, Order, Reading, Site, Tariff, TenantLink
from store.types import utcnow

__all__ = ["CODE_TTL", "DayUsage", "DbTenantPort", "Mine", "SendSms", "days_left", "normalise_phone",
           "pay_signature", "span_bounds"]

SendSms = Callable[[str, str], Awaitable[None]]
Sessions = async_sessionmaker[AsyncSession]


@dataclass(frozen=True)
class DayUsage:
    """One local day of one utility: quantity in base units and its cost."""

    day: date
    utility: str
    quantity: int
    cost: Money


class DbTenantPort:
    """TenantPort over the database. `sessions` may be a zero-arg callable resolved per call."""

    def __init__(self, sessions: Sessions | Callable[[], Sessions], *, secret_key: str, pay_base_url: str,
                 send_sms: SendSms, clock: Callable[[], datetime] = utcnow,
                 code_factory: Callable[[], str] = lambda: f"{secrets.randbelow(10**6):06d}") -> None:
        self._sessions = sessions
        self._secret = secret_key
        self._pay_base_url = pay_base_url
        self._send_sms = send_sms
        self._clock = clock
        self._code_factory = code_factory
        self._balances = CoalescedBalances(
            lambda openids: self._read(lambda s: balances_by_openid(s, openids, self._clock())))

    @property
    def sessions(self) -> Sessions:
        s = self._sessions
        return s if isinstance(s, async_sessionmaker) else s()  # type: ignore[return-value]

    async def _tx(self, fn: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
        try:
            return await in_transaction(self.sessions, fn)
        except (OperationalError, DBAPIError, OSError, TimeoutError) as ex:
            raise PortUnavailable(f"database: {type(ex).__name__}") from ex

    async def _read(self, fn: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
        """One statement's read. On PostgreSQL it runs on an autocommit connection: no BEGIN and no
        COMMIT round trips, each of which waits a turn of a busy event loop (a single statement
        sees one snapshot anyway). SQLite keeps the transaction (its BEGIN is local and cheap)."""
        sessions = self.sessions
        engine = sessions.kw.get("bind")
        if engine is None or engine.dialect.name != "postgresql":
            return await self._tx(fn)
        try:
            async with engine.connect() as conn:
                auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                async with AsyncSession(bind=auto) as session:
                    return await fn(session)
        except (OperationalError, DBAPIError, OSError, TimeoutError) as ex:
            raise PortUnavailable(f"database: {type(ex).__name__}") from ex

    # -- reading -----------------------------------------------------------------------------
    async def mine(self, session: AsyncSession, openid: str) -> list[Mine]:
        """The open accounts bound to `openid`, in binding order."""
        return await bound_accounts(session, openid)

    async def bindings(self, openid: str) -> list[RoomView]:
        return await self._tx(lambda s: rooms_of(s, openid))

    async def balance(self, openid: str) -> list[BalanceView]:
        """Every bound account's balances and days left: one statement, shared by the questions asked
        in the same event-loop turn (services.tenant_balance.CoalescedBalances)."""
        return await self._balances.get(openid)

    async def usage(self, openid: str, span: UsageSpan) -> list[UsageView]:
        return await self._tx(lambda s: self._usage(s, openid, span))

    async def _usage(self, session: AsyncSession, openid: str, span: UsageSpan) -> list[UsageView]:
        out: list[UsageView] = []
        for mine in await self.mine(session, openid):
            start, end = span_bounds(span, self._clock(), ZoneInfo(mine.site.timezone))
            rows = (await session.execute(
                select(Meter.utility, Tariff.kind, Reading.quantity, Reading.amount_fen, Reading.rate_split)
                .join(Meter, Meter.id == Reading.meter_id).outerjoin(Tariff, Tariff.id == Meter.tariff_id)
                .where(Reading.account_id == mine.account.id, Reading.taken_at >= start,
                       Reading.taken_at < end))).all()
            by_utility: dict[str, list[Any]] = defaultdict(list)
            for row in rows:
                by_utility[row[0]].append(row)
            for utility in sorted(by_utility, key=lambda u: u != "electricity"):
                out.append(usage_view(mine.room, utility, span, by_utility[utility]))
        return out

    async def recent_orders(self, openid: str) -> list[OrderView]:
        return await self.orders(openid, RECENT_ORDERS)

    async def orders(self, openid: str, limit: int) -> list[OrderView]:
        """The newest `limit` orders of the user's bound accounts."""
        return await self._tx(lambda s: self._orders(s, openid, limit))

    async def _orders(self, session: AsyncSession, openid: str, limit: int) -> list[OrderView]:
        rooms = {int(m.room.account_id): m.room for m in await self.mine(session, openid)}
        orders = await session.scalars(select(Order).where(Order.account_id.in_(rooms))
                                       .order_by(Order.created_at.desc(), Order.id.desc()).limit(limit))
        return [order_view(o, rooms[o.account_id]) for o in orders]

    async def bills(self, openid: str) -> list[BillView]:
        return await self._tx(lambda s: self._bills(s, openid))

    async def _bills(self, session: AsyncSession, openid: str) -> list[BillView]:
        try:
            from store.models import Bill  # postpaid bills arrive with billing runs; none before
        except ImportError:
            return []
        rooms = {int(m.room.account_id): m.room for m in await self.mine(session, openid)}
        rows = await session.scalars(select(Bill).where(Bill.account_id.in_(rooms),
                                                        Bill.status.not_in(("draft", "void")))
                                     .order_by(Bill.period_start.desc()).limit(12))
        today = self._clock().date()
        return [BillView(b.number, rooms[b.account_id], b.period_start, b.period_end, Money(b.total_fen),
                         bill_status(b.status, b.due_on, today)) for b in rows]

    # -- binding (services.tenant_binding) -----------------------------------------------------
    async def start_binding_by_phone(self, openid: str, phone: str) -> BindStartStatus:
        phone = normalise_phone(phone)
        code = self._code_factory()
        status = await self._tx(lambda s: binding.open_challenge(s, self._secret, openid, phone, code,
                                                                 self._clock()))
        if status == "code_sent":
            try:
                await self._send_sms(phone, code)
            except Exception as ex:
                raise PortUnavailable("the SMS could not be sent") from ex
        return status

    async def confirm_binding(self, openid: str, code: str) -> BindResult:
        return await self._tx(lambda s: binding.confirm(s, self._secret, openid, code.strip(), self._clock()))

    async def bind_by_room(self, openid: str, site_code: str, room_no: str, phone_last4: str) -> BindResult:
        return await self._tx(lambda s: binding.bind_room(s, openid, site_code, room_no, phone_last4,
                                                          self._clock()))

    async def unbind(self, openid: str, account_id: str) -> bool:
        return await self._tx(lambda s: binding.unbind(s, openid, account_id, self._clock()))

    # -- for the mini-program API and the pay page ---------------------------------------------
    async def account(self, account_id: int, openid: str | None = None) -> tuple[Mine, Money] | None:
        """An open account and its total balance; None when unknown, closed or not bound to `openid`."""
        return await self._tx(lambda s: self._account(s, account_id, openid))

    async def _account(self, s: AsyncSession, account_id: int, openid: str | None) -> tuple[Mine, Money] | None:
        query = select(Account, Site).join(Site, Site.id == Account.site_id).where(
            Account.id == account_id, Account.state == "open")
        if openid is not None:
            query = query.join(TenantLink, TenantLink.account_id == Account.id).where(TenantLink.openid == openid)
        row = (await s.execute(query)).first()
        if row is None:
            return None
        [mine] = await with_rooms(s, [(row[0], row[1])])
        views = await account_balances(s, account_id, self._clock())
        return mine, Money(sum(v.balance.fen for v in views))

    async def order_of(self, openid: str, out_trade_no: str) -> OrderView | None:
        """One order of the user's bound accounts, by its number."""
        return await self._tx(lambda s: self._order_of(s, openid, out_trade_no))

    async def _order_of(self, s: AsyncSession, openid: str, out_trade_no: str) -> OrderView | None:
        account_id = await s.scalar(select(Order.account_id).where(Order.out_trade_no == out_trade_no))
        rooms = {int(m.room.account_id): m.room for m in await self.mine(s, openid)}
        if account_id not in rooms:
            return None
        o = await s.scalar(select(Order).where(Order.out_trade_no == out_trade_no))
        return order_view(o, rooms[o.account_id]) if o is not None else None

    async def order_state(self, account_id: int, out_trade_no: str) -> str | None:
        """The stored state of one of the account's orders (created / paid / credited / ...)."""
        return await self._tx(lambda s: s.scalar(select(Order.state).where(
            Order.account_id == account_id, Order.out_trade_no == out_trade_no)))

    async def usage_series(self, openid: str, account_id: int, days: int) -> list[DayUsage] | None:
        """Daily quantity and cost per utility over the last `days` local days; None if not bound."""
        return await self._tx(lambda s: self._series(s, openid, account_id, days))

    async def _series(self, s: AsyncSession, openid: str, account_id: int, days: int) -> list[DayUsage] | None:
        mine = [m for m in await self.mine(s, openid) if m.account.id == account_id]
        if not mine:
            return None
        tz, now = ZoneInfo(mine[0].site.timezone), self._clock()
        start, _ = span_bounds("today", now - timedelta(days=days - 1), tz)
        rows = (await s.execute(select(Meter.utility, Reading.taken_at, Reading.quantity, Reading.amount_fen)
                                .join(Meter, Meter.id == Reading.meter_id)
                                .where(Reading.account_id == account_id, Reading.taken_at >= start))).all()
        sums: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
        for utility, taken_at, quantity, fen in rows:
            cell = sums[(taken_at.astimezone(tz).date(), utility)]
            cell[0], cell[1] = cell[0] + int(quantity), cell[1] + int(fen)
        return [DayUsage(d, utility_of(u), q, Money(f)) for (d, u), (q, f) in sorted(sums.items())]

    def pay_link(self, account_id: str, amount: Money | None = None) -> str:
        query = {"account": account_id, "sig": pay_signature(self._secret, account_id)}
        if amount is not None:
            query["amount"] = amount.to_yuan_str()
        return f"{self._pay_base_url}?{urlencode(query, quote_via=quote)}"
