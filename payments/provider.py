"""The provider-agnostic port every payment adapter (Alipay, WeChat Pay) implements.

Services call only what is here; nothing above this layer knows a wire format.

Notice statuses (``Notice.status``):
    ``paid``      the buyer has paid (Alipay TRADE_SUCCESS / TRADE_FINISHED, WeChat SUCCESS)
    ``pending``   created, not paid yet (WAIT_BUYER_PAY, NOTPAY, USERPAYING)
    ``closed``    closed unpaid (TRADE_CLOSED without a refund, CLOSED, REVOKED)
    ``failed``    the payment attempt failed (WeChat PAYERROR)
    ``refunded``  money went back, in part or in full (``Notice.refunded`` says how much)

Refund statuses returned by ``refund()``: ``success`` | ``processing`` | ``closed`` | ``abnormal``.

Errors:
    ``SignatureError``   the message is not authentic (bad/missing signature, stale timestamp,
                         undecryptable resource): answer ``ack(False)``, credit nothing.
    ``NoticeMismatch``   authentic, but for another app id / merchant / currency: store as a
                         conflict for staff (``.notice`` holds the verified notice); do not credit.
    ``ProviderError``    transient (network, timeout, provider 5xx / SYSTEM_ERROR): retry later.
    ``ProviderRefused``  the provider answered with a definite business "no" (amount exceeds the
                         refundable rest, order already paid, bad credentials): do not retry as is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from billing.money import Money

CHANNELS = ("qr", "wap", "jsapi")
NOTICE_STATUSES = ("paid", "pending", "closed", "failed", "refunded")
REFUND_STATUSES = ("success", "processing", "closed", "abnormal")


@dataclass(frozen=True)
class PayRequest:
    """What the service wants paid; ``out_trade_no`` is our idempotency key at the provider."""

    out_trade_no: str
    amount: Money
    subject: str
    channel: str  # 'qr' (cashier desk / PC) | 'wap' (phone browser) | 'jsapi' (inside WeChat)
    notify_url: str
    openid: str | None = None  # required for WeChat 'jsapi'
    return_url: str | None = None  # where the phone browser returns after an Alipay 'wap' pay


@dataclass(frozen=True)
class PayStart:
    """What the front end needs to let the buyer pay: exactly one of the three is set."""

    out_trade_no: str
    channel: str
    qr_code: str | None = None
    pay_url: str | None = None
    jsapi_params: dict[str, str] | None = None


@dataclass(frozen=True)
class Notice:
    """A verified statement from the provider about one order (from a notify or a query)."""

    provider: str
    out_trade_no: str
    trade_no: str  # the provider's own id of the payment
    amount: Money  # the order total as the provider saw it
    status: str  # one of NOTICE_STATUSES
    app_id: str  # "" when the provider does not send it (WeChat refund notices)
    merchant_id: str | None
    paid_at: datetime | None  # timezone-aware
    raw: dict[str, Any] = field(repr=False, compare=False)
    refunded: Money = Money(0)  # cumulative refunded amount, when the provider says


class SignatureError(Exception):
    """The message failed authentication; treat it as if it never arrived."""


class ProviderError(Exception):
    """A transient failure talking to the provider: try again later."""


class ProviderRefused(Exception):
    """The provider gave a definite business refusal (``code`` is the provider's own)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class NoticeMismatch(Exception):
    """An authentic notice that belongs to another app id, merchant or currency."""

    def __init__(self, notice: Notice, field_name: str, expected: str, actual: str) -> None:
        super().__init__(f"{notice.provider} notice for {notice.out_trade_no}: "
                         f"{field_name} is {actual!r}, expected {expected!r}")
        self.notice = notice
        self.field = field_name
        self.expected = expected
        self.actual = actual


class PaymentProvider(Protocol):
    """One payment provider, as the services see it."""

    name: str

    async def create(self, req: PayRequest) -> PayStart:
        """Open the order at the provider; raises ProviderError / ProviderRefused."""
        ...

    def parse_notify(self, headers: Mapping[str, str], body: bytes) -> Notice:
        """Authenticate first, then parse; raises SignatureError or NoticeMismatch."""
        ...

    def ack(self, ok: bool) -> tuple[int, str, bytes]:
        """(HTTP status, content type, exact body) the provider expects as the notify answer."""
        ...

    async def query(self, out_trade_no: str) -> Notice | None:
        """The provider's current view of an order; None when the provider does not know it."""
        ...

    async def refund(self, out_trade_no: str, out_refund_no: str, amount: Money,
                     total: Money) -> str:
        """Refund part or all of a paid order; ``out_refund_no`` makes retries idempotent."""
        ...
