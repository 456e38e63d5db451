"""What the tenant bot needs from the rest of meterpay, as plain frozen views (no ORM types).

The lead wires a database-backed implementation; `bot.fake_port.FakeTenantPort` serves tests
and the benchmark. Quantities are integers in base units (Wh for electricity, litres for
water); money is `billing.money.Money`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal, Protocol

from billing.money import Money

Utility = Literal["electricity", "water"]
UsageSpan = Literal["today", "month", "last_month"]
BindStartStatus = Literal["code_sent", "unknown_phone", "too_many_requests"]
BindStatus = Literal[
    "bound",  # bound (or already bound) to the rooms listed in BindResult.rooms
    "bad_code",  # wrong SMS code; the challenge stays open
    "expired",  # the SMS code expired or ran out of attempts
    "no_pending",  # a code arrived without a bind request before it
    "no_match",  # room and phone digits do not match any account
    "not_allowed",  # the site does not allow binding by room number
]


class PortUnavailable(Exception):
    """The system behind the port cannot answer now (database down, timeout); retry later."""


@dataclass(frozen=True, slots=True)
class RoomView:
    """A tenant account the WeChat user is bound to."""

    account_id: str
    site_code: str
    site_name: str
    room_no: str

    @property
    def label(self) -> str:
        return f"{self.site_name} {self.room_no}"


@dataclass(frozen=True, slots=True)
class BalanceView:
    """Balance of one account for one utility, with days left at recent daily usage."""

    room: RoomView
    utility: Utility
    balance: Money
    days_left: int | None  # None: no recent usage to estimate from


@dataclass(frozen=True, slots=True)
class TouSplit:
    """Energy per time-of-use band, in Wh."""

    sharp_wh: int
    peak_wh: int
    flat_wh: int
    valley_wh: int


@dataclass(frozen=True, slots=True)
class UsageView:
    """Consumption of one account for one utility over a span."""

    room: RoomView
    utility: Utility
    span: UsageSpan
    quantity: int  # Wh for electricity, litres for water
    cost: Money
    tou: TouSplit | None = None  # only where a time-of-use tariff applies


@dataclass(frozen=True, slots=True)
class OrderView:
    """A recharge, refund or bill-payment order."""

    order_no: str
    room: RoomView
    kind: Literal["recharge", "refund", "bill"]
    amount: Money
    status: Literal["pending", "paid", "failed", "refunded"]
    channel: str  # "wechatpay", "alipay", "cash", ...
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class BillView:
    """A postpaid bill or a fee bill."""

    bill_no: str
    room: RoomView
    period_start: dt.date
    period_end: dt.date
    amount: Money
    status: Literal["unpaid", "paid", "overdue"]


@dataclass(frozen=True, slots=True)
class BindResult:
    """Outcome of a binding attempt; `rooms` lists what the user is bound to when `bound`."""

    status: BindStatus
    rooms: tuple[RoomView, ...] = ()


class TenantPort(Protocol):
    """The bot's view of meterpay. Implementations raise PortUnavailable on outages."""

    async def bindings(self, openid: str) -> list[RoomView]: ...

    async def balance(self, openid: str) -> list[BalanceView]: ...

    async def usage(self, openid: str, span: UsageSpan) -> list[UsageView]: ...

    async def recent_orders(self, openid: str) -> list[OrderView]: ...

    async def bills(self, openid: str) -> list[BillView]: ...

    async def start_binding_by_phone(self, openid: str, phone: str) -> BindStartStatus:
        """Send an SMS code to a registered phone; the challenge is kept per openid."""
        ...

    async def confirm_binding(self, openid: str, code: str) -> BindResult:
        """Check the SMS code of the openid's open challenge and bind its phone's accounts."""
        ...

    async def bind_by_room(
        self, openid: str, site_code: str, room_no: str, phone_last4: str
    ) -> BindResult: ...

    async def unbind(self, openid: str, account_id: str) -> bool:
        """Remove one binding; False when it did not exist."""
        ...

    def pay_link(self, account_id: str, amount: Money | None = None) -> str:
        """URL of the mobile pay page for the account, the amount preset when given."""
        ...
