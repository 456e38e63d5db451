"""Alert policy: which events a balance, a payment, a relay, a link or a load step should raise.

Rules:
- Balance levels (default: at or below 50, 20 and 0 yuan; the last announces cut-off) are a table,
  configurable per site (`AlertConfig`) and overridable per account (`AlertOverride`). Thresholds
  must be strictly descending.
- A level *trips* when the balance is at or below its threshold and *re-arms* only when the balance
  rises above threshold + hysteresis (a top-up). Each trip is one *crossing*, counted per level;
  a level fires once per crossing, never on every reading.
- When one reading trips several levels at once (60 -> -5 yuan), only the most severe newly tripped
  level is announced; the others are marked tripped silently: one message, not three.
- Repeats: the most severe tripped level may be re-sent ``repeats`` times, ``repeat_interval_s``
  apart (`due_repeats`), at most one per call: a sweeper that ran late does not catch up in a burst.
- Keys: every event has a stable idempotency key, e.g. ``low_balance:A1:L2:c3`` (3rd crossing of
  L2) and ``low_balance:A1:L2:c3:r1`` (its first repeat). The outbox refuses a key twice.
- `evaluate` runs in the ingest path for every reading: a few integer comparisons per level, and
  when nothing changes it returns the very same state object (nothing to persist).
- Other rules: cut-off done and supply restored (keyed by the relay command), payment received
  (keyed by the payment), meter or gateway lost longer than ``lost_after_s`` (keyed by the last time
  seen, so one outage is one event), abnormal load (a power step of at least ``load_step_w`` within
  ``load_step_window_s``, typical of a resistive heater in a dormitory), and the staff daily digest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import Enum

from billing.money import Money, total


class AlertConfigError(ValueError):
    """Raised for an alert configuration that cannot work (e.g. thresholds out of order)."""


class AlertKind(Enum):
    """What happened; the value prefixes the event key."""

    LOW_BALANCE = "low_balance"
    CUTOFF_WARNING = "cutoff_warning"
    CUT_OFF = "cut_off"
    RESTORED = "restored"
    PAYMENT_RECEIVED = "payment_received"
    METER_LOST = "meter_lost"
    GATEWAY_LOST = "gateway_lost"
    ABNORMAL_LOAD = "abnormal_load"


class LinkKind(Enum):
    """Something that can stop answering."""

    METER = "meter"
    GATEWAY = "gateway"


_LOST_KIND: dict[LinkKind, AlertKind] = {
    LinkKind.METER: AlertKind.METER_LOST,
    LinkKind.GATEWAY: AlertKind.GATEWAY_LOST,
}


@dataclass(frozen=True, slots=True)
class AlertLevel:
    """One balance level: fires when the balance is at or below ``threshold``."""

    name: str
    threshold: Money
    announces_cutoff: bool = False
    repeats: int = 0
    repeat_interval_s: int = 6 * 3600

    @property
    def kind(self) -> AlertKind:
        return AlertKind.CUTOFF_WARNING if self.announces_cutoff else AlertKind.LOW_BALANCE


DEFAULT_LEVELS: tuple[AlertLevel, ...] = (
    AlertLevel("L1", Money.yuan(50)),
    AlertLevel("L2", Money.yuan(20)),
    AlertLevel("L3", Money.yuan(0), announces_cutoff=True),
)


@dataclass(frozen=True, slots=True)
class AlertConfig:
    """A site's alert policy."""

    levels: tuple[AlertLevel, ...] = DEFAULT_LEVELS
    hysteresis: Money = Money(0)
    lost_after_s: int = 30 * 60
    load_step_w: int = 1500
    load_step_window_s: int = 5 * 60

    def __post_init__(self) -> None:
        names = [level.name for level in self.levels]
        if len(set(names)) != len(names):
            raise AlertConfigError(f"alert level names must be unique: {names}")
        thresholds = [level.threshold for level in self.levels]
        if any(a <= b for a, b in zip(thresholds, thresholds[1:])):
            raise AlertConfigError(f"alert thresholds must be strictly descending: {thresholds}")
        if self.hysteresis.is_negative or any(level.repeats < 0 for level in self.levels):
            raise AlertConfigError("hysteresis and repeats must not be negative")


@dataclass(frozen=True, slots=True)
class AlertOverride:
    """An account's exceptions to its site's policy: thresholds by level name, repeats for all."""

    thresholds: Mapping[str, Money] = field(default_factory=dict)
    repeats: int | None = None


def effective_config(site: AlertConfig, override: AlertOverride | None) -> AlertConfig:
    """The site's policy with an account's overrides applied (and validated again)."""
    if override is None:
        return site
    unknown = set(override.thresholds) - {level.name for level in site.levels}
    if unknown:
        raise AlertConfigError(f"override names unknown alert levels: {sorted(unknown)}")
    levels = tuple(
        dataclasses.replace(
            level,
            threshold=override.thresholds.get(level.name, level.threshold),
            repeats=level.repeats if override.repeats is None else override.repeats,
        )
        for level in site.levels
    )
    return dataclasses.replace(site, levels=levels)


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """Something to tell a tenant or staff; ``key`` is its idempotency key."""

    kind: AlertKind
    subject: str
    key: str
    at: datetime
    level: str | None = None
    balance: Money | None = None
    amount: Money | None = None
    details: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class LevelState:
    """Where one level stands for one account."""

    name: str
    tripped: bool = False
    crossings: int = 0
    sends: int = 0
    last_sent_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AlertState:
    """An account's alert state; persist it beside the balance."""

    account_id: str
    levels: tuple[LevelState, ...] = ()

    def level(self, name: str) -> LevelState:
        for candidate in self.levels:
            if candidate.name == name:
                return candidate
        return LevelState(name)


def _stepped(
    level: AlertLevel, now: LevelState, balance: Money, hysteresis: Money
) -> LevelState | None:
    """The level's next state, or None when the balance does not move it."""
    if not now.tripped and balance.fen <= level.threshold.fen:
        return LevelState(level.name, True, now.crossings + 1)
    if now.tripped and balance.fen > level.threshold.fen + hysteresis.fen:
        return LevelState(level.name, False, now.crossings)
    return None


def _low_balance_event(
    account_id: str, level: AlertLevel, ls: LevelState, balance: Money | None, at: datetime
) -> AlertEvent:
    key = f"{level.kind.value}:{account_id}:{level.name}:c{ls.crossings}"
    if ls.sends > 1:
        key += f":r{ls.sends - 1}"
    return AlertEvent(level.kind, account_id, key, at, level.name, balance, level.threshold)


def above_all_levels(balance: Money, config: AlertConfig) -> bool:
    """True when no untripped level can trip at this balance (an account with nothing tripped and
    such a balance is left as it is by `evaluate`: the ingest path skips it)."""
    return all(balance.fen > level.threshold.fen for level in config.levels)


def evaluate(
    state: AlertState, balance: Money, config: AlertConfig, now: datetime
) -> tuple[AlertState, list[AlertEvent]]:
    """Apply a new balance: trips and re-arms levels, announcing the most severe new crossing."""
    steps = [_stepped(lv, state.level(lv.name), balance, config.hysteresis) for lv in config.levels]
    if all(step is None for step in steps):
        return state, []
    levels = [step or state.level(lv.name) for step, lv in zip(steps, config.levels)]
    fired = [i for i, step in enumerate(steps) if step is not None and step.tripped]
    events: list[AlertEvent] = []
    if fired:
        worst = fired[-1]
        levels[worst] = dataclasses.replace(levels[worst], sends=1, last_sent_at=now)
        level = config.levels[worst]
        events.append(_low_balance_event(state.account_id, level, levels[worst], balance, now))
    return AlertState(state.account_id, tuple(levels)), events


def due_repeats(
    state: AlertState, now: datetime, config: AlertConfig, balance: Money | None = None
) -> tuple[AlertState, list[AlertEvent]]:
    """Re-send the most severe tripped level if a repeat is due (at most one per call)."""
    tripped = [(lv, state.level(lv.name)) for lv in config.levels if state.level(lv.name).tripped]
    if not tripped:
        return state, []
    level, ls = tripped[-1]
    if ls.last_sent_at is None or ls.sends > level.repeats:
        return state, []
    if now - ls.last_sent_at < timedelta(seconds=level.repeat_interval_s):
        return state, []
    sent = dataclasses.replace(ls, sends=ls.sends + 1, last_sent_at=now)
    levels = tuple(sent if other.name == ls.name else other for other in state.levels)
    event = _low_balance_event(state.account_id, level, sent, balance, now)
    return AlertState(state.account_id, levels), [event]


# -- relay, payment, link and load rules ---------------------------------------------------


def cut_off_done(
    account_id: str, meter_id: str, command_key: str, utility: str, at: datetime
) -> AlertEvent:
    """The relay or valve was opened for lack of credit (keyed by the relay command)."""
    details = (("meter_id", meter_id), ("utility", utility))
    return AlertEvent(AlertKind.CUT_OFF, account_id, f"cut_off:{command_key}", at, details=details)


def supply_restored(
    account_id: str, meter_id: str, command_key: str, utility: str, at: datetime
) -> AlertEvent:
    """Power or water is back on (keyed by the relay command)."""
    details = (("meter_id", meter_id), ("utility", utility))
    key = f"restored:{command_key}"
    return AlertEvent(AlertKind.RESTORED, account_id, key, at, details=details)


def payment_received(
    account_id: str, payment_key: str, amount: Money, balance_after: Money, at: datetime
) -> AlertEvent:
    """A receipt for a settled payment (keyed by the payment, so a repeated notify sends one)."""
    key = f"payment_received:{payment_key}"
    return AlertEvent(
        AlertKind.PAYMENT_RECEIVED, account_id, key, at, balance=balance_after, amount=amount
    )


def link_lost(
    kind: LinkKind, device_id: str, last_seen: datetime, now: datetime, config: AlertConfig
) -> AlertEvent | None:
    """A meter or gateway silent for longer than ``lost_after_s``; one event per outage."""
    silent = now - last_seen
    if silent <= timedelta(seconds=config.lost_after_s):
        return None
    alert = _LOST_KIND[kind]
    key = f"{alert.value}:{device_id}:{last_seen.isoformat()}"
    details = (("last_seen", last_seen.isoformat()), ("silent_s", str(int(silent.total_seconds()))))
    return AlertEvent(alert, device_id, key, now, details=details)


@dataclass(frozen=True, slots=True)
class PowerSample:
    """Active power read from a meter at a moment."""

    at: datetime
    watts: int


def abnormal_load(
    meter_id: str, previous: PowerSample | None, current: PowerSample, config: AlertConfig
) -> AlertEvent | None:
    """A sudden rise in power of at least ``load_step_w`` between two close samples."""
    if previous is None:
        return None
    gap = current.at - previous.at
    step = current.watts - previous.watts
    window = timedelta(seconds=config.load_step_window_s)
    if not timedelta(0) < gap <= window or step < config.load_step_w:
        return None
    key = f"abnormal_load:{meter_id}:{current.at.isoformat()}"
    details = (("step_w", str(step)), ("watts", str(current.watts)))
    return AlertEvent(AlertKind.ABNORMAL_LOAD, meter_id, key, current.at, details=details)


# -- staff daily digest --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """An account's balance as the digest sees it."""

    account_id: str
    room: str
    balance: Money


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """When a meter or gateway was last heard from (None: never)."""

    kind: LinkKind
    device_id: str
    last_seen: datetime | None


@dataclass(frozen=True, slots=True)
class LostLink:
    """A meter or gateway in the digest's lost list."""

    kind: LinkKind
    device_id: str
    last_seen: datetime | None
    silent_s: int | None


@dataclass(frozen=True, slots=True)
class StaffDigest:
    """What staff read each morning: who owes money and what has gone quiet."""

    site_id: str
    day: date
    key: str
    arrears: tuple[AccountBalance, ...]
    total_arrears: Money  # owed, as a positive amount
    lost: tuple[LostLink, ...]

    @property
    def is_empty(self) -> bool:
        return not self.arrears and not self.lost


def _lost(link: LinkStatus, now: datetime, lost_after: timedelta) -> LostLink | None:
    if link.last_seen is None:
        return LostLink(link.kind, link.device_id, None, None)
    silent = now - link.last_seen
    if silent <= lost_after:
        return None
    return LostLink(link.kind, link.device_id, link.last_seen, int(silent.total_seconds()))


def _lost_order(lost: LostLink) -> tuple[int, int, str]:
    """Gateways first (one explains many lost meters), then never seen, then longest silent."""
    silent = -(2**62) if lost.silent_s is None else -lost.silent_s
    return (0 if lost.kind is LinkKind.GATEWAY else 1, silent, lost.device_id)


def daily_digest(
    site_id: str,
    day: date,
    balances: Iterable[AccountBalance],
    links: Iterable[LinkStatus],
    now: datetime,
    config: AlertConfig,
) -> StaffDigest:
    """The day's digest: accounts below zero (most owed first) and lost meters and gateways."""
    arrears = tuple(sorted((b for b in balances if b.balance.is_negative),
                           key=lambda b: (b.balance, b.account_id)))
    lost_after = timedelta(seconds=config.lost_after_s)
    found = (_lost(link, now, lost_after) for link in links)
    lost = tuple(sorted((x for x in found if x is not None), key=_lost_order))
    key = f"digest:{site_id}:{day.isoformat()}"
    return StaffDigest(site_id, day, key, arrears, -total([b.balance for b in arrears]), lost)
