"""Pure rules of the tenant self-service: phone numbers, pay-link tags, days left, spans, view mapping.

No I/O, so the balance query, the mini-program API and the pay page all compute the same way.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from billing.money import Money
from bot.port import OrderView, RoomView, TouSplit, UsageSpan, UsageView, Utility

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


def usage_window(now: datetime, opened_at: datetime) -> tuple[datetime, int]:
    """Start of the "recent usage" window (never before the account opened) and its length in
    seconds (at least a day, so a new account's first reading is not read as a whole day's use)."""
    since = max(now - USAGE_WINDOW, opened_at)
    return since, max(int((now - since).total_seconds()), 86_400)


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


def utility_of(name: str) -> Utility:
    return "water" if name == "water" else "electricity"


def squeeze(text: str) -> str:
    return "".join(text.split()).casefold()


def room_label(building: str | None, number: str | None, account_code: str) -> str:
    """A room as tenants know it ("A栋101"); the account code when no meter sits in a room."""
    return f"{building}{number}" if number is not None else account_code


def order_view(o: Any, room: RoomView) -> OrderView:
    kind = o.kind if o.kind in ("refund", "bill") else "recharge"
    return OrderView(o.out_trade_no, room, kind, Money(o.amount_fen),
                     ORDER_STATUS.get(o.state, "pending"), o.provider, o.created_at)  # type: ignore[arg-type]


def usage_view(room: RoomView, utility: str, span: UsageSpan, rows: list[Any]) -> UsageView:
    split = [0, 0, 0, 0]
    for row in rows:
        for i, q in enumerate((row.rate_split or [])[:4]):
            split[i] += int(q)
    tou = TouSplit(*split) if utility == "electricity" and any(r.kind == "tou" for r in rows) else None
    return UsageView(room, utility_of(utility), span, sum(int(r.quantity) for r in rows),
                     Money(sum(int(r.amount_fen) for r in rows)), tou)


def bill_status(status: str, due_on: date, today: date) -> Any:
    if status == "paid":
        return "paid"
    return "overdue" if due_on < today else "unpaid"
