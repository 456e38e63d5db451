"""Pure dispatch policy: which channels carry a message, and when. No I/O, no clock.

The lead's job code asks `plan(...)` for decisions, records each by `delivery_key` (a unique
constraint and the arq job id), sends at `send_at`, and on failure asks `next_attempt(...)`.
A deferred decision should be re-checked against current state before it is sent (a top-up
may have made a deferred low-balance warning moot).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from enum import Enum

from notifications.channel import Message


class Quiet(Enum):
    """What a channel does during quiet hours."""

    SEND = "send"  # silent channels: a message waits in an inbox
    DEFER_UNLESS_URGENT = "defer_unless_urgent"  # SMS: wakes people, but a cut-off must go out
    DEFER = "defer"  # voice: never rings at night


@dataclass(frozen=True)
class ChannelRule:
    """How a logical channel behaves: quiet hours, default daily cap per tenant, one-shot opt-in."""

    quiet: Quiet
    daily_limit: int
    one_shot: bool = False  # each message needs its own prior opt-in (mini-program subscribe)


CHANNEL_RULES: dict[str, ChannelRule] = {
    "wechat_template": ChannelRule(Quiet.SEND, 20),
    "wechat_subscribe": ChannelRule(Quiet.SEND, 20, one_shot=True),
    "push": ChannelRule(Quiet.SEND, 50),
    "email": ChannelRule(Quiet.SEND, 20),
    "sms": ChannelRule(Quiet.DEFER_UNLESS_URGENT, 5),
    "voice": ChannelRule(Quiet.DEFER, 2),
}

# Carriers for a message whose chosen channels cannot take it (spent opt-in, no address...).
FALLBACK: tuple[str, ...] = ("wechat_template", "sms", "voice")


@dataclass(frozen=True)
class KindRule:
    """Per message kind: default channels, and whether it is a cut-off notice (urgent)."""

    channels: tuple[str, ...]
    urgent: bool = False  # cut-off notices: SMS not deferred, daily caps do not apply
    quiet_exempt: bool = False  # the recipient is waiting for it (verify code): SMS not deferred
    fallback: tuple[str, ...] = FALLBACK


KIND_RULES: dict[str, KindRule] = {
    "low_balance_1": KindRule(("wechat_subscribe", "wechat_template")),
    "low_balance_2": KindRule(("wechat_template", "sms")),
    "low_balance_3": KindRule(("wechat_template", "sms", "voice"), urgent=True),
    "cutoff_done": KindRule(("wechat_template", "sms"), urgent=True),
    "restored": KindRule(("wechat_template", "push")),
    "receipt": KindRule(("wechat_subscribe", "wechat_template", "email")),
    "meter_lost": KindRule(("wechat_template", "email")),
    "gateway_lost": KindRule(("email", "push"), fallback=("sms",)),  # staff-facing
    "abnormal_load": KindRule(("wechat_template", "sms")),
    "verify_code": KindRule(("sms",), quiet_exempt=True, fallback=()),
    "staff_digest": KindRule(("email",), fallback=("push",)),
}

RETRY_DELAYS_S: tuple[int, ...] = (30, 120, 600, 3600)  # then the delivery is failed


@dataclass(frozen=True)
class Preferences:
    """A tenant's (or the site's default) choices; the defaults are sensible for most sites."""

    channels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # kind -> channels
    disabled: frozenset[str] = frozenset()  # channels the tenant opted out of
    quiet_start: time = time(22, 0)  # site local time
    quiet_end: time = time(8, 0)
    daily_limits: Mapping[str, int] = field(default_factory=dict)  # channel -> cap override

    def limit(self, channel: str) -> int:
        """Messages per tenant per local day on this channel."""
        return self.daily_limits.get(channel, CHANNEL_RULES[channel].daily_limit)


@dataclass(frozen=True)
class Capabilities:
    """What can reach this recipient now: channel -> kinds it can carry (configured templates
    and a known address), and mini-program opt-ins left per kind."""

    kinds: Mapping[str, frozenset[str]]
    opt_ins: Mapping[str, int] = field(default_factory=dict)

    def carries(self, channel: str, kind: str) -> bool:
        """True when the channel is set up for this recipient and this kind."""
        return kind in self.kinds.get(channel, frozenset())


@dataclass(frozen=True)
class Usage:
    """The tenant's delivery history that the policy needs: today's counts and known keys."""

    sent_today: Mapping[str, int] = field(default_factory=dict)  # channel -> count, local day
    seen_keys: frozenset[str] = frozenset()  # message keys already planned or delivered


@dataclass(frozen=True)
class Decision:
    """Send `message` on `channel` at `send_at`; `delivery_key` is unique per message+channel."""

    channel: str
    send_at: datetime
    delivery_key: str
    reason: str  # 'now', 'quiet_hours', 'fallback'


@dataclass(frozen=True)
class Skip:
    """A channel that was wanted but will not carry the message, and why."""

    channel: str
    reason: str  # 'duplicate', 'not_configured', 'no_opt_in', 'rate_limited'


@dataclass(frozen=True)
class Plan:
    """The policy's whole answer for one message."""

    decisions: tuple[Decision, ...]
    skipped: tuple[Skip, ...]

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels that will carry the message, in decision order."""
        return tuple(d.channel for d in self.decisions)


def plan(
    message: Message, now: datetime, prefs: Preferences, caps: Capabilities, usage: Usage
) -> Plan:
    """Decide which channels carry `message` and when, given local time `now` (tz-aware)."""
    _require_aware(now)
    if message.key in usage.seen_keys:
        return Plan((), (Skip("*", "duplicate"),))
    rule = KIND_RULES[message.kind]
    wanted = [c for c in prefs.channels.get(message.kind, rule.channels) if c not in prefs.disabled]
    chosen: list[tuple[str, str]] = []
    skipped: list[Skip] = []
    for channel in wanted:
        reason = _refusal(channel, message.kind, rule, prefs, caps, usage)
        if reason is None:
            chosen.append((channel, "now"))
        else:
            skipped.append(Skip(channel, reason))
    if not chosen:  # e.g. the one-shot opt-in is spent and nothing else was wanted
        stand_in = _first_usable(rule.fallback, message.kind, rule, prefs, caps, usage)
        if stand_in is not None:
            chosen.append((stand_in, "fallback"))
    decisions = tuple(_decide(message, c, why, rule, now, prefs) for c, why in chosen)
    return Plan(decisions, tuple(skipped))


def next_attempt(
    channel: str, kind: str, failures: int, failed_at: datetime, retryable: bool,
    prefs: Preferences,
) -> datetime | None:
    """When to try again after the `failures`-th failed attempt; None means give up (failed)."""
    _require_aware(failed_at)
    if not retryable or failures < 1 or failures > len(RETRY_DELAYS_S):
        return None
    at = failed_at + timedelta(seconds=RETRY_DELAYS_S[failures - 1])
    return _send_at(channel, KIND_RULES[kind], at, prefs)


def quiet_end_after(now: datetime, prefs: Preferences) -> datetime | None:
    """The end of the quiet period `now` falls in, or None when `now` is not in quiet hours."""
    start, end, t = prefs.quiet_start, prefs.quiet_end, now.time()
    if start == end:
        return None
    in_quiet = (start <= t < end) if start < end else (t >= start or t < end)
    if not in_quiet:
        return None
    day = now.date() if t < end else now.date() + timedelta(days=1)
    return datetime.combine(day, end, tzinfo=now.tzinfo)


def _refusal(
    channel: str, kind: str, rule: KindRule, prefs: Preferences, caps: Capabilities, usage: Usage
) -> str | None:
    if channel not in CHANNEL_RULES or not caps.carries(channel, kind):
        return "not_configured"
    if CHANNEL_RULES[channel].one_shot and caps.opt_ins.get(kind, 0) < 1:
        return "no_opt_in"
    if not rule.urgent and usage.sent_today.get(channel, 0) >= prefs.limit(channel):
        return "rate_limited"
    return None


def _first_usable(
    candidates: tuple[str, ...], kind: str, rule: KindRule, prefs: Preferences,
    caps: Capabilities, usage: Usage,
) -> str | None:
    for channel in candidates:
        if channel not in prefs.disabled and _refusal(channel, kind, rule, prefs, caps, usage) is None:
            return channel
    return None


def _decide(
    message: Message, channel: str, why: str, rule: KindRule, now: datetime, prefs: Preferences
) -> Decision:
    at = _send_at(channel, rule, now, prefs)
    reason = "quiet_hours" if at != now else why
    return Decision(channel, at, f"{message.key}:{channel}", reason)


def _send_at(channel: str, rule: KindRule, at: datetime, prefs: Preferences) -> datetime:
    end = quiet_end_after(at, prefs)
    mode = CHANNEL_RULES[channel].quiet
    if end is None or mode is Quiet.SEND:
        return at
    if mode is Quiet.DEFER_UNLESS_URGENT and (rule.urgent or rule.quiet_exempt):
        return at
    return end


def _require_aware(moment: datetime) -> None:
    if moment.tzinfo is None:
        raise ValueError("policy times must be timezone-aware site local times")
