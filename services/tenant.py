"""The database-backed TenantPort: what a bound WeChat user may see of their accounts, and binding.

Bindings live in `tenant_links` (one openid may hold several rooms, across sites); the tenant's
`wechat_openid` mirrors the latest binding so notifications can reach them. SMS codes are kept
only as HMACs, expire, and have a try budget; codes per phone and room guesses per openid are
throttled. Database faults surface as `PortUnavailable`, which the bot answers with "busy".
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.ledger import wallet_code
from billing.money import Money
from bot.port import (BalanceView, BillView, BindResult, BindStartStatus, OrderView, PortUnavailable,
                      RoomView, TouSplit, UsageSpan, UsageView)
from services.uow import in_transaction
from store.models import (Account, AuditEntry, BindChallenge, Building, LedgerAccount, Meter, Order,
                          Reading, Room, Site, Tariff, Tenant, TenantLink)
from store.types import utcnow

SendSms = Callable[[str, str], Awaitable[None]]
Sessions = async_sessionmaker[AsyncSession]

CODE_TTL = timedelta(minutes=10)
MAX_CODE_ATTEMPTS = 5
MAX_CODES_PER_PHONE_PER_HOUR = 5
MAX_ROOM_MISSES_PER_DAY = 10
USAGE_WINDOW = timedelta(days=7)  # "recent daily usage" for days left
RECENT_ORDERS = 5
ORDER_STATUS = {"created": "pending", "paid": "paid", "credited": "paid", "refunded": "refunded",
                "closed": "failed", "failed": "failed", "conflict": "pending"}


def normalise_phone(phone: str) -> str:
    """Digits only, without a +86 / 0086 country prefix."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            return digits[len(prefix):]
    return digits


def pay_signature(secret_key: str, account_id: int | str) -> str:
    """The tag that makes a pay link unguessable: only links the platform issued open the page."""
    mac = hmac.new(secret_key.encode(), f"pay:{account_id}".encode(), hashlib.sha256)
    return mac.hexdigest()[:24]


def days_left(balance_fen: int, cost_fen: int, elapsed_s: int) -> int | None:
    """Whole days the balance lasts at the cost seen over the elapsed span; None without usage."""
    if cost_fen <= 0:
        return None
    return max(balance_fen, 0) * elapsed_s // (cost_fen * 86_400)


def span_bounds(span: UsageSpan, now: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of today / this month / last month in the site's time zone, as aware datetimes."""
    local = now.astimezone(tz)
    day = datetime(local.year, local.month, local.day, tzinfo=tz)
    month = datetime(local.year, local.month, 1, tzinfo=tz)
    if span == "today":
        return day, now
    if span == "month":
        return month, now
    previous = month - timedelta(days=1)
    return datetime(previous.year, previous.month, 1, tzinfo=tz), month


@dataclass(frozen=True)
class Mine:
    """One bound account with what the views need."""

    account: Account
    site: Site
    room: RoomView
    meters: tuple[Meter, ...]


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

    @property
    def sessions(self) -> Sessions:
        s = self._sessions
        return s if isinstance(s, async_sessionmaker) else s()  # type: ignore[return-value]

    async def _tx(self, fn: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
        try:
            return await in_transaction(self.sessions, fn)
        except (OperationalError, DBAPIError, OSError, TimeoutError) as ex:
            raise PortUnavailable(f"database: {type(ex).__name__}") from ex

    # -- reading -----------------------------------------------------------------------------
    async def mine(self, session: AsyncSession, openid: str) -> list[Mine]:
        """The open accounts bound to `openid`, in binding order."""
        rows = (await session.execute(
            select(Account, Site).join(TenantLink, TenantLink.account_id == Account.id)
            .join(Site, Site.id == Account.site_id)
            .where(TenantLink.openid == openid, Account.state == "open").order_by(TenantLink.id))).all()
        return await self._with_rooms(session, [(a, s) for a, s in rows])

    async def _with_rooms(self, session: AsyncSession, pairs: list[tuple[Account, Site]]) -> list[Mine]:
        ids = [a.id for a, _ in pairs]
        meters: dict[int, list[Meter]] = defaultdict(list)
        for m in await session.scalars(select(Meter).where(Meter.account_id.in_(ids)).order_by(Meter.id)):
            meters[m.account_id or 0].append(m)
        room_ids = {m.room_id for ms in meters.values() for m in ms if m.room_id}
        rooms = {r.id: (r, b) for r, b in (await session.execute(
            select(Room, Building).join(Building, Building.id == Room.building_id)
            .where(Room.id.in_(room_ids)))).all()}
        out = []
        for acc, site in pairs:
            placed = [rooms[m.room_id] for m in meters[acc.id] if m.room_id in rooms]
            room_no = f"{placed[0][1].name}{placed[0][0].number}" if placed else acc.code
            out.append(Mine(acc, site, RoomView(str(acc.id), site.code, site.name, room_no),
                            tuple(meters[acc.id])))
        return out

    async def bindings(self, openid: str) -> list[RoomView]:
        return await self._tx(lambda s: self._rooms_of(s, openid))

    async def _rooms_of(self, session: AsyncSession, openid: str) -> list[RoomView]:
        return [m.room for m in await self.mine(session, openid)]

    async def balance(self, openid: str) -> list[BalanceView]:
        return await self._tx(lambda s: self._balances(s, openid))

    async def _balances(self, session: AsyncSession, openid: str) -> list[BalanceView]:
        now, out = self._clock(), []
        for mine in await self.mine(session, openid):
            out += await self.balances_of(session, mine, now)
        return out

    async def balances_of(self, session: AsyncSession, mine: Mine, now: datetime) -> list[BalanceView]:
        """One view per wallet (merged: one; per meter: one each); meter-side meters show their own."""
        acc = mine.account
        wallets = dict((await session.execute(select(LedgerAccount.code, LedgerAccount.balance_fen).where(
            LedgerAccount.account_id == acc.id, LedgerAccount.code.like("wallet:%")))).all())
        since = max(now - USAGE_WINDOW, acc.opened_at)
        elapsed_s = max(int((now - since).total_seconds()), 86_400)
        cost = dict((await session.execute(
            select(Reading.meter_id, func.sum(Reading.amount_fen)).where(
                Reading.account_id == acc.id, Reading.taken_at >= since, Reading.taken_at <= now)
            .group_by(Reading.meter_id))).all())
        own = [m for m in mine.meters if m.billing_side == "meter" and m.meter_balance_fen is not None]
        platform = [m for m in mine.meters if m not in own]
        views = [BalanceView(mine.room, _utility(m.utility), Money(m.meter_balance_fen or 0),
                             days_left(m.meter_balance_fen or 0, int(cost.get(m.id) or 0), elapsed_s))
                 for m in own]
        if acc.balance_model == "per_meter":
            for m in platform:
                fen = int(wallets.get(wallet_code(acc.id, m.id), 0))
                views.append(BalanceView(mine.room, _utility(m.utility), Money(fen),
                                         days_left(fen, int(cost.get(m.id) or 0), elapsed_s)))
        elif platform or not own:
            fen = int(wallets.get(wallet_code(acc.id), 0))
            spent = sum(int(cost.get(m.id) or 0) for m in platform)
            utility = "electricity" if any(m.utility == "electricity" for m in platform) or not platform \
                else _utility(platform[0].utility)
            views.insert(0, BalanceView(mine.room, utility, Money(fen), days_left(fen, spent, elapsed_s)))
        return views

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
                out.append(_usage_view(mine.room, utility, span, by_utility[utility]))
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
        return [_order_view(o, rooms[o.account_id]) for o in orders]

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
                         _bill_status(b.status, b.due_on, today)) for b in rows]

    # -- binding -----------------------------------------------------------------------------
    def _hash(self, openid: str, phone: str, code: str) -> str:
        return hmac.new(self._secret.encode(), f"bind:{openid}:{phone}:{code}".encode(),
                        hashlib.sha256).hexdigest()

    async def start_binding_by_phone(self, openid: str, phone: str) -> BindStartStatus:
        phone = normalise_phone(phone)
        code = self._code_factory()
        status = await self._tx(lambda s: self._open_challenge(s, openid, phone, code))
        if status == "code_sent":
            try:
                await self._send_sms(phone, code)
            except Exception as ex:
                raise PortUnavailable("the SMS could not be sent") from ex
        return status

    async def _open_challenge(self, s: AsyncSession, openid: str, phone: str, code: str) -> BindStartStatus:
        now = self._clock()
        if not phone or not await self._accounts_of_phone(s, phone):
            return "unknown_phone"
        recent = await s.scalar(select(func.count()).select_from(BindChallenge).where(
            BindChallenge.kind == "sms", BindChallenge.created_at > now - timedelta(hours=1),
            (BindChallenge.phone == phone) | (BindChallenge.openid == openid)))
        if (recent or 0) >= MAX_CODES_PER_PHONE_PER_HOUR:
            return "too_many_requests"
        for old in await s.scalars(select(BindChallenge).where(
                BindChallenge.openid == openid, BindChallenge.closed_at.is_(None))):
            old.closed_at = now
        s.add(BindChallenge(kind="sms", openid=openid, phone=phone, code_hash=self._hash(openid, phone, code),
                            created_at=now, expires_at=now + CODE_TTL))
        return "code_sent"

    async def _accounts_of_phone(self, s: AsyncSession, phone: str) -> list[Account]:
        variants = [phone, f"+86{phone}", f"86{phone}", f"+86 {phone}"]
        return list(await s.scalars(select(Account).join(Tenant, Tenant.id == Account.tenant_id).where(
            Tenant.phone.in_(variants), Account.state == "open").order_by(Account.id)))

    async def confirm_binding(self, openid: str, code: str) -> BindResult:
        return await self._tx(lambda s: self._confirm(s, openid, code.strip()))

    async def _confirm(self, s: AsyncSession, openid: str, code: str) -> BindResult:
        now = self._clock()
        ch = await s.scalar(select(BindChallenge).where(
            BindChallenge.openid == openid, BindChallenge.kind == "sms", BindChallenge.closed_at.is_(None))
            .order_by(BindChallenge.id.desc()).limit(1).with_for_update())
        if ch is None:
            return BindResult("no_pending")
        if ch.expires_at <= now or ch.attempts >= MAX_CODE_ATTEMPTS:
            ch.closed_at = now
            return BindResult("expired")
        ch.attempts += 1
        if not hmac.compare_digest(ch.code_hash, self._hash(openid, ch.phone, code)):
            return BindResult("bad_code")
        ch.closed_at = now
        for acc in await self._accounts_of_phone(s, ch.phone):
            await self._link(s, openid, acc, "phone")
        return BindResult("bound", tuple(await self._rooms_of(s, openid)))

    async def _link(self, s: AsyncSession, openid: str, acc: Account, via: str) -> None:
        exists = await s.scalar(select(TenantLink.id).where(TenantLink.openid == openid,
                                                            TenantLink.account_id == acc.id))
        if exists is not None:
            return
        s.add(TenantLink(openid=openid, account_id=acc.id, via=via, created_at=self._clock()))
        tenant = await s.get(Tenant, acc.tenant_id)
        if tenant is not None:
            tenant.wechat_openid = openid
        s.add(AuditEntry(at=self._clock(), actor=f"wechat:{openid}"[:100], site_id=acc.site_id,
                         action="tenant.bind", object_type="account", object_id=str(acc.id),
                         after={"openid": openid, "via": via}))
        await s.flush()

    async def bind_by_room(self, openid: str, site_code: str, room_no: str, phone_last4: str) -> BindResult:
        return await self._tx(lambda s: self._bind_room(s, openid, site_code, room_no, phone_last4))

    async def _bind_room(self, s: AsyncSession, openid: str, where: str, room_no: str, last4: str) -> BindResult:
        now = self._clock()
        misses = await s.scalar(select(func.count()).select_from(BindChallenge).where(
            BindChallenge.kind == "room_miss", BindChallenge.openid == openid,
            BindChallenge.created_at > now - timedelta(days=1)))
        if (misses or 0) >= MAX_ROOM_MISSES_PER_DAY:
            return BindResult("no_match")
        rows = (await s.execute(
            select(Account, Site, Building, Tenant.phone).join(Meter, Meter.account_id == Account.id)
            .join(Room, Room.id == Meter.room_id).join(Building, Building.id == Room.building_id)
            .join(Site, Site.id == Account.site_id).join(Tenant, Tenant.id == Account.tenant_id)
            .where(Room.number == room_no.strip(), Account.state == "open"))).all()
        key = _squeeze(where)
        found = [(a, site, phone) for a, site, b, phone in rows
                 if key in {_squeeze(site.code), _squeeze(site.name), _squeeze(b.name),
                            _squeeze(site.name + b.name)}]
        if found and not all((site.settings or {}).get("bind_by_room") for _, site, _ in found):
            return BindResult("not_allowed")
        matched = {a.id: a for a, _, phone in found
                   if len(last4) == 4 and normalise_phone(phone).endswith(last4)}
        if not matched:
            s.add(BindChallenge(kind="room_miss", openid=openid, phone="", code_hash="", created_at=now,
                                expires_at=now, closed_at=now))
            return BindResult("no_match")
        for acc in matched.values():
            await self._link(s, openid, acc, "room")
        return BindResult("bound", tuple(await self._rooms_of(s, openid)))

    async def unbind(self, openid: str, account_id: str) -> bool:
        return await self._tx(lambda s: self._unbind(s, openid, account_id))

    async def _unbind(self, s: AsyncSession, openid: str, account_id: str) -> bool:
        if not account_id.isdigit():
            return False
        acc = await s.get(Account, int(account_id))
        gone = (await s.execute(delete(TenantLink).where(
            TenantLink.openid == openid, TenantLink.account_id == int(account_id)))).rowcount
        if not gone or acc is None:
            return False
        tenant = await s.get(Tenant, acc.tenant_id)
        if tenant is not None and tenant.wechat_openid == openid:
            tenant.wechat_openid = None
        s.add(AuditEntry(at=self._clock(), actor=f"wechat:{openid}"[:100], site_id=acc.site_id,
                         action="tenant.unbind", object_type="account", object_id=str(acc.id),
                         before={"openid": openid}))
        return True

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
        [mine] = await self._with_rooms(s, [(row[0], row[1])])
        views = await self.balances_of(s, mine, self._clock())
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
        return _order_view(o, rooms[o.account_id]) if o is not None else None

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
        return [DayUsage(d, _utility(u), q, Money(f)) for (d, u), (q, f) in sorted(sums.items())]

    def pay_link(self, account_id: str, amount: Money | None = None) -> str:
        query = {"account": account_id, "sig": pay_signature(self._secret, account_id)}
        if amount is not None:
            query["amount"] = amount.to_yuan_str()
        return f"{self._pay_base_url}?{urlencode(query, quote_via=quote)}"


def _utility(name: str) -> Any:
    return "water" if name == "water" else "electricity"


def _order_view(o: Order, room: RoomView) -> OrderView:
    return OrderView(o.out_trade_no, room, "refund" if o.kind == "refund" else "recharge", Money(o.amount_fen),
                     ORDER_STATUS.get(o.state, "pending"), o.provider, o.created_at)  # type: ignore[arg-type]


def _squeeze(text: str) -> str:
    return "".join(text.split()).casefold()


def _usage_view(room: RoomView, utility: str, span: UsageSpan, rows: list[Any]) -> UsageView:
    split = [0, 0, 0, 0]
    for row in rows:
        for i, q in enumerate((row.rate_split or [])[:4]):
            split[i] += int(q)
    tou = TouSplit(*split) if utility == "electricity" and any(r.kind == "tou" for r in rows) else None
    return UsageView(room, _utility(utility), span, sum(int(r.quantity) for r in rows),
                     Money(sum(int(r.amount_fen) for r in rows)), tou)


def _bill_status(status: str, due_on: date, today: date) -> Any:
    if status == "paid":
        return "paid"
    return "overdue" if due_on < today else "unpaid"
