"""The one interface every delivery channel implements, and the values it trades in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Message:
    """One notification to one recipient; `key` is its idempotency key."""

    key: str  # e.g. "alert:acct42:level2:crossing7"
    kind: str  # a key of templates.TEMPLATES: 'low_balance_1' .. 'staff_digest'
    locale: str  # 'zh-CN' (default) or 'en'
    to: str  # phone, e-mail address, openid or push target, as the channel needs
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rendered:
    """A message rendered for one locale; `fields` are the template's declared params in order."""

    kind: str
    locale: str
    subject: str
    text: str
    html: str
    fields: tuple[tuple[str, str], ...]

    @property
    def field_map(self) -> dict[str, str]:
        """The declared params as a dict, for providers that take named template params."""
        return dict(self.fields)


@dataclass(frozen=True)
class SendResult:
    """What one attempt at delivery came to; `retryable` says whether trying again may help."""

    ok: bool
    provider_id: str | None
    error: str | None
    retryable: bool

    @classmethod
    def sent(cls, provider_id: str | None) -> SendResult:
        """A delivery the provider accepted."""
        return cls(ok=True, provider_id=provider_id, error=None, retryable=False)

    @classmethod
    def failed(cls, error: str, *, retryable: bool) -> SendResult:
        """A delivery the provider refused or that never reached it."""
        return cls(ok=False, provider_id=None, error=error, retryable=retryable)


class Channel(Protocol):
    """A way to reach a person. Sends once; the caller owns retries and the delivery log.

    Channels never raise for provider or network faults: they return a failed SendResult.
    Where the provider accepts a request id or idempotency key, `msg.key` is sent as it.
    """

    name: str  # logical channel, a key of policy.CHANNEL_RULES ('sms', 'voice', 'push'...)
    kinds: frozenset[str]  # message kinds this channel is configured to carry

    async def send(self, msg: Message, rendered: Rendered) -> SendResult: ...
