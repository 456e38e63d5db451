"""An in-memory TenantPort: the bot's tests and the benchmark run against it."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from billing.money import Money
from bot.port import (
    BalanceView,
    BillView,
    BindResult,
    BindStartStatus,
    OrderView,
    PortUnavailable,
    RoomView,
    UsageSpan,
    UsageView,
    Utility,
)

MAX_CODE_ATTEMPTS = 5


@dataclass
class FakeAccount:
    """One tenant account as the fake keeps it."""

    room: RoomView
    phone: str
    balances: dict[Utility, Money]
    daily_cost: dict[Utility, Money] = field(default_factory=dict)
    usage: dict[tuple[Utility, UsageSpan], UsageView] = field(default_factory=dict)
    orders: list[OrderView] = field(default_factory=list)
    bills: list[BillView] = field(default_factory=list)


@dataclass
class _Challenge:
    phone: str
    code: str
    attempts: int = 0


def _days_left(balance: Money, daily_cost: Money | None) -> int | None:
    if daily_cost is None or not daily_cost.is_positive:
        return None
    return max(balance.fen, 0) // daily_cost.fen


class FakeTenantPort:
    """TenantPort over dicts; `delay_s` slows every call, `down` makes calls fail."""

    def __init__(
        self,
        *,
        pay_base_url: str = "https://pay.example.test/pay/",
        code_factory: Callable[[], str] = lambda: f"{secrets.randbelow(10**6):06d}",
        room_binding_sites: frozenset[str] = frozenset(),
    ) -> None:
        self.accounts: dict[str, FakeAccount] = {}
        self.bound: dict[str, list[str]] = {}
        self.sms_sent: list[tuple[str, str]] = []
        self.calls: Counter[str] = Counter()
        self.delay_s = 0.0
        self.down = False
        self._challenges: dict[str, _Challenge] = {}
        self._pay_base_url = pay_base_url
        self._code_factory = code_factory
        self._room_binding_sites = room_binding_sites

    # -- set-up helpers for tests and the benchmark ----------------------------------------
    def add_account(self, account: FakeAccount) -> FakeAccount:
        self.accounts[account.room.account_id] = account
        return account

    def bind(self, openid: str, account_id: str) -> None:
        rooms = self.bound.setdefault(openid, [])
        if account_id not in rooms:
            rooms.append(account_id)

    # -- the port ------------------------------------------------------------------------------
    async def _enter(self, name: str) -> None:
        self.calls[name] += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.down:
            raise PortUnavailable(f"fake port is down ({name})")

    def _mine(self, openid: str) -> list[FakeAccount]:
        return [self.accounts[a] for a in self.bound.get(openid, [])]

    async def bindings(self, openid: str) -> list[RoomView]:
        await self._enter("bindings")
        return [a.room for a in self._mine(openid)]

    async def balance(self, openid: str) -> list[BalanceView]:
        await self._enter("balance")
        return [
            BalanceView(a.room, utility, money, _days_left(money, a.daily_cost.get(utility)))
            for a in self._mine(openid)
            for utility, money in a.balances.items()
        ]

    async def usage(self, openid: str, span: UsageSpan) -> list[UsageView]:
        await self._enter("usage")
        return [u for a in self._mine(openid) for (_, s), u in a.usage.items() if s == span]

    async def recent_orders(self, openid: str) -> list[OrderView]:
        await self._enter("recent_orders")
        orders = [o for a in self._mine(openid) for o in a.orders]
        return sorted(orders, key=lambda o: o.created_at, reverse=True)[:5]

    async def bills(self, openid: str) -> list[BillView]:
        await self._enter("bills")
        return [b for a in self._mine(openid) for b in a.bills]

    async def start_binding_by_phone(self, openid: str, phone: str) -> BindStartStatus:
        await self._enter("start_binding_by_phone")
        if not any(a.phone == phone for a in self.accounts.values()):
            return "unknown_phone"
        if sum(1 for p, _ in self.sms_sent if p == phone) >= 5:
            return "too_many_requests"
        code = self._code_factory()
        self._challenges[openid] = _Challenge(phone, code)
        self.sms_sent.append((phone, code))
        return "code_sent"

    async def confirm_binding(self, openid: str, code: str) -> BindResult:
        await self._enter("confirm_binding")
        challenge = self._challenges.get(openid)
        if challenge is None:
            return BindResult("no_pending")
        challenge.attempts += 1
        if challenge.attempts > MAX_CODE_ATTEMPTS:
            del self._challenges[openid]
            return BindResult("expired")
        if not secrets.compare_digest(challenge.code, code):
            return BindResult("bad_code")
        del self._challenges[openid]
        for account in self.accounts.values():
            if account.phone == challenge.phone:
                self.bind(openid, account.room.account_id)
        return BindResult("bound", tuple(a.room for a in self._mine(openid)))

    async def bind_by_room(
        self, openid: str, site_code: str, room_no: str, phone_last4: str
    ) -> BindResult:
        await self._enter("bind_by_room")
        site = site_code.casefold()
        for account in self.accounts.values():
            room = account.room
            if site not in (room.site_code.casefold(), room.site_name.casefold()):
                continue
            if room.room_no.casefold() != room_no.casefold():
                continue
            if room.site_code not in self._room_binding_sites:
                return BindResult("not_allowed")
            if not account.phone.endswith(phone_last4):
                break
            self.bind(openid, room.account_id)
            return BindResult("bound", tuple(a.room for a in self._mine(openid)))
        return BindResult("no_match")

    async def unbind(self, openid: str, account_id: str) -> bool:
        await self._enter("unbind")
        rooms = self.bound.get(openid, [])
        if account_id not in rooms:
            return False
        rooms.remove(account_id)
        return True

    def pay_link(self, account_id: str, amount: Money | None = None) -> str:
        query = {"account": account_id} | ({"amount": amount.to_yuan_str()} if amount else {})
        return f"{self._pay_base_url}?{urlencode(query, quote_via=quote)}"
