"""Alert hooks: turn balance moves, payments, relay confirmations, outages and load steps into
"notify" outbox rows, written in the caller's transaction (billing.alerts decides; this persists).

Site.settings["alerts"] (all optional): {"levels": [{"name": "L1", "threshold_fen": 5000,
"repeats": 0, "repeat_interval_s": 21600, "announces_cutoff": false}, ...], "hysteresis_fen": 0,
"lost_after_s": 1800, "load_step_w": 1500, "load_step_window_s": 300}.
Account.alert_settings (optional): {"thresholds_fen": {"L1": 3000}, "repeats": 2}.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from billing import alerts
from billing.alerts import AlertConfig, AlertEvent, AlertKind, AlertLevel, AlertState, LevelState
from billing.money import Money
from services import outbox
from store.models import Account, Gateway, Meter, MeterCommand, Site

log = logging.getLogger(__name__)
TOPIC = "notify"
OFF_KINDS = frozenset({"relay_open", "valve_close"})
ON_KINDS = frozenset({"relay_close", "valve_open"})
_KIND: dict[AlertKind, str] = {
    AlertKind.CUTOFF_WARNING: "low_balance_3", AlertKind.CUT_OFF: "cutoff_done",
    AlertKind.RESTORED: "restored", AlertKind.PAYMENT_RECEIVED: "receipt",
    AlertKind.METER_LOST: "meter_lost", AlertKind.GATEWAY_LOST: "gateway_lost",
    AlertKind.ABNORMAL_LOAD: "abnormal_load",
}
_configs: dict[int, tuple[Any, Any, AlertConfig]] = {}  # site id -> (raw site, raw account, parsed)


def load_state(account_id: int, raw: dict[str, Any] | None) -> AlertState:
    """An account's AlertState from its JSON column (levels as [name, tripped, crossings, sends, at])."""
    if not raw:
        return AlertState(str(account_id))
    levels = tuple(
        LevelState(name, bool(tripped), int(crossings), int(sends),
                   datetime.fromisoformat(at) if at else None)
        for name, tripped, crossings, sends, at in raw.get("levels", ())
    )
    return AlertState(str(account_id), levels)


def dump_state(state: AlertState) -> dict[str, Any]:
    """The JSON kept in Account.alert_state."""
    return {"levels": [[ls.name, ls.tripped, ls.crossings, ls.sends,
                        ls.last_sent_at.isoformat() if ls.last_sent_at else None]
                       for ls in state.levels]}


def site_config(site: Site, account: Account | None = None) -> AlertConfig:
    """The alert policy for a site (and an account's overrides); parsed once per distinct JSON."""
    raw = (site.settings or {}).get("alerts")
    own = account.alert_settings if account is not None else None
    cached = _configs.get(site.id)
    if cached is not None and cached[0] == raw and cached[1] == own:
        return cached[2]
    try:
        config = alerts.effective_config(_parse_site(raw or {}), _parse_override(own))
    except (alerts.AlertConfigError, KeyError, TypeError, ValueError) as ex:
        # a bad setting must never break ingest: fall back to the site's policy, then the default
        log.warning("alert settings of site %s / account %s ignored: %s", site.id,
                    account.id if account is not None else "-", ex)
        config = _safe_site(raw)
    if own is None:
        _configs[site.id] = (raw, own, config)
    return config


def _safe_site(raw: dict[str, Any] | None) -> AlertConfig:
    try:
        return _parse_site(raw or {})
    except (alerts.AlertConfigError, KeyError, TypeError, ValueError):
        return AlertConfig()


def _parse_site(raw: dict[str, Any]) -> AlertConfig:
    base = AlertConfig()
    levels = tuple(
        AlertLevel(lv["name"], Money(int(lv["threshold_fen"])), bool(lv.get("announces_cutoff")),
                   int(lv.get("repeats", 0)), int(lv.get("repeat_interval_s", 6 * 3600)))
        for lv in raw.get("levels", ())
    ) or base.levels
    return AlertConfig(levels, Money(int(raw.get("hysteresis_fen", 0))),
                       int(raw.get("lost_after_s", base.lost_after_s)),
                       int(raw.get("load_step_w", base.load_step_w)),
                       int(raw.get("load_step_window_s", base.load_step_window_s)))


def _parse_override(raw: dict[str, Any] | None) -> alerts.AlertOverride | None:
    if not raw:
        return None
    thresholds = {k: Money(int(v)) for k, v in (raw.get("thresholds_fen") or {}).items()}
    repeats = raw.get("repeats")
    return alerts.AlertOverride(thresholds, None if repeats is None else int(repeats))


def message_kind(event: AlertEvent, config: AlertConfig) -> str:
    """billing.alerts kind -> notifications template kind (the first warning level is _1)."""
    if event.kind is AlertKind.LOW_BALANCE:
        first = next(lv.name for lv in config.levels if not lv.announces_cutoff)
        return "low_balance_1" if event.level == first else "low_balance_2"
    return _KIND[event.kind]


def _local(at: datetime, site: Site) -> str:
    return at.astimezone(ZoneInfo(site.timezone)).strftime("%Y-%m-%d %H:%M")


def _payload(kind: str, site: Site, at: datetime, params: dict[str, str], account: Account | None,
             staff: bool, context: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "kind": kind, "site_id": site.id, "at": at.isoformat(),
        "account_id": account.id if account is not None else None,
        "tenant_id": account.tenant_id if account is not None and not staff else None,
        "audience": "staff" if staff or account is None else "tenant", "params": params,
        "context": context or {},
    }


async def queue_message(session: AsyncSession, key: str, kind: str, site: Site, at: datetime,
                        params: dict[str, str], account: Account | None = None,
                        staff: bool = False, context: dict[str, Any] | None = None) -> bool:
    """Write a "notify" outbox row (once per key) for a tenant's account or the site's staff."""
    payload = _payload(kind, site, at, params, account, staff, context)
    return await outbox.write(session, key, TOPIC, payload, at)


async def _emit(session: AsyncSession, event: AlertEvent, kind: str, site: Site,
                params: dict[str, str], account: Account | None = None, staff: bool = False,
                context: dict[str, Any] | None = None) -> bool:
    return await queue_message(session, event.key, kind, site, event.at, params, account, staff,
                               context)


def _balance_rows(acc: Account, site: Site, config: AlertConfig, state: AlertState,
                  events: list[AlertEvent]) -> list[tuple[str, dict[str, Any], datetime]]:
    rows = []
    for event in events:
        ls: LevelState = state.level(event.level or "")
        params = {"account": acc.code, "balance": (event.balance or Money(0)).to_yuan_str(),
                  "threshold": (event.amount or Money(0)).to_yuan_str()}
        context = {"level": event.level, "crossing": ls.crossings}
        kind = message_kind(event, config)
        rows.append((event.key, _payload(kind, site, event.at, params, acc, False, context), event.at))
    return rows


class _AlertAccount:
    """The columns of an account that balance alerts read, as a plain row (a batch has hundreds)."""

    __slots__ = ("id", "site_id", "tenant_id", "code", "state", "payment_mode", "alert_state", "alert_settings")

    def __init__(self, row: Any) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(row, name))


def _nothing_tripped(raw: dict[str, Any] | None) -> bool:
    return not raw or not any(level[1] for level in raw.get("levels", ()))


async def after_balance_changes(session: AsyncSession, moves: Mapping[int, tuple[int, int]],
                                now: datetime, accounts_at_hand: Mapping[int, Any] | None = None,
                                sites_at_hand: Mapping[int, Any] | None = None) -> int:
    """Evaluate the low-balance levels for accounts whose balance moved (old_fen, new_fen).

    Cheap on the ingest path: ingest hands over the account columns it has locked
    (`accounts_at_hand`: id, site_id, tenant_id, code, state, payment_mode, alert_state,
    alert_settings; `sites_at_hand`: id, settings), an account with nothing tripped, no thresholds of its own and a balance above
    every level is skipped before any parsing, nothing is written unless a level trips or re-arms,
    and the outbox rows of the batch go in one statement.
    """
    moved = {a: new for a, (old, new) in moves.items() if old != new}
    if not moved:
        return 0
    given = accounts_at_hand or {}
    loaded = {obj.id: obj for obj in session.identity_map.values()
              if isinstance(obj, Account) and obj.id in moved and obj.id not in given}  # a payment's account
    table = Account.__table__
    rest = [a for a in moved if a not in loaded and a not in given]
    accounts: list[Any] = [given[a] for a in moved if a in given] + list(loaded.values()) + (
        [_AlertAccount(r) for r in await session.execute(
            select(*(table.c[n] for n in _AlertAccount.__slots__)).where(table.c.id.in_(rest)))] if rest else [])
    known = sites_at_hand or {}
    sites = {sid: known.get(sid) or await session.get(Site, sid) for sid in {a.site_id for a in accounts}}
    rows: list[tuple[str, dict[str, Any], datetime]] = []
    changed: dict[int, dict[str, Any]] = {}
    # the highest level of each site: an untouched account above it is skipped (alerts.above_all_levels)
    tops = {sid: max((lv.threshold.fen for lv in site_config(site).levels), default=None)  # type: ignore[arg-type]
            for sid, site in sites.items()}
    for acc in accounts:
        if acc.state != "open" or acc.payment_mode != "prepaid":
            continue
        site = sites[acc.site_id]
        top = tops[acc.site_id]
        if not acc.alert_settings and _nothing_tripped(acc.alert_state) and (top is None or moved[acc.id] > top):
            continue
        config = site_config(site, acc)  # type: ignore[arg-type]
        state = load_state(acc.id, acc.alert_state)
        new_state, events = alerts.evaluate(state, Money(moved[acc.id]), config, now)
        if new_state is not state:
            changed[acc.id] = dump_state(new_state)
            rows += _balance_rows(acc, site, config, new_state, events)  # type: ignore[arg-type]
    await _save_alert_states(session, changed)
    await outbox.write_many(session, TOPIC, rows)
    return len(rows)


async def _save_alert_states(session: AsyncSession, states: dict[int, dict[str, Any]]) -> None:
    """Write the accounts' new alert states; ORM copies already in the session follow, unmarked."""
    if not states:
        return
    table = Account.__table__
    await (await session.connection()).execute(
        update(table).where(table.c.id == bindparam("aid")).values(alert_state=bindparam("new_state")),
        [{"aid": a, "new_state": st} for a, st in states.items()])
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Account) and obj.id in states:
            set_committed_value(obj, "alert_state", states[obj.id])


async def after_balance_change(session: AsyncSession, account_id: int, old_fen: int, new_fen: int,
                               now: datetime) -> int:
    """One account's balance moved (a recharge, a refund, a fee): see after_balance_changes."""
    return await after_balance_changes(session, {account_id: (old_fen, new_fen)}, now)


async def send_due_repeats(session: AsyncSession, now: datetime, balances: dict[int, int]) -> int:
    """Re-send the most severe tripped level where a repeat is due (cron; `balances` by account)."""
    rows = await session.scalars(select(Account).where(
        Account.alert_state.is_not(None), Account.state == "open"))
    count = 0
    for acc in rows:
        site = await session.get(Site, acc.site_id)
        assert site is not None
        config = site_config(site, acc)
        state = load_state(acc.id, acc.alert_state)
        balance = Money(balances.get(acc.id, 0))
        new_state, events = alerts.due_repeats(state, now, config, balance)
        if events:
            acc.alert_state = dump_state(new_state)
            await outbox.write_many(session, TOPIC, _balance_rows(acc, site, config, new_state, events))
            count += len(events)
    return count


async def payment_received(session: AsyncSession, account_id: int, payment_key: str,
                           amount_fen: int, balance_after_fen: int, now: datetime) -> bool:
    """Queue a receipt for a settled payment (once per payment key)."""
    acc = await session.get(Account, account_id)
    if acc is None:
        return False
    site = await session.get(Site, acc.site_id)
    assert site is not None
    event = alerts.payment_received(str(acc.id), payment_key, Money(amount_fen),
                                    Money(balance_after_fen), now)
    params = {"account": acc.code, "amount": Money(amount_fen).to_yuan_str(),
              "balance": Money(balance_after_fen).to_yuan_str(), "paid_at": _local(now, site)}
    return await _emit(session, event, "receipt", site, params, acc)


async def relay_confirmed(session: AsyncSession, command_id: int, balance_fen: int,
                          now: datetime) -> bool:
    """A relay/valve command was confirmed by read-back: tell the tenant it is off or back on."""
    cmd = await session.get(MeterCommand, command_id)
    meter = await session.get(Meter, cmd.meter_id) if cmd is not None else None
    if cmd is None or meter is None or meter.account_id is None:
        return False
    if cmd.kind not in OFF_KINDS | ON_KINDS:
        return False
    acc = await session.get(Account, meter.account_id)
    site = await session.get(Site, meter.site_id)
    assert acc is not None and site is not None
    rule = alerts.cut_off_done if cmd.kind in OFF_KINDS else alerts.supply_restored
    event = rule(str(acc.id), str(meter.id), cmd.key, meter.utility, now)
    params = {"account": acc.code, "balance": Money(balance_fen).to_yuan_str()}
    return await _emit(session, event, _KIND[event.kind], site, params, acc)


async def link_lost(session: AsyncSession, kind: alerts.LinkKind, device_id: int,
                    now: datetime) -> bool:
    """A meter (tenant told) or gateway (staff told) silent past `lost_after_s`; once per outage."""
    model = Meter if kind is alerts.LinkKind.METER else Gateway
    device = await session.get(model, device_id)
    if device is None or device.last_seen_at is None:
        return False
    site = await session.get(Site, device.site_id)
    assert site is not None
    event = alerts.link_lost(kind, str(device_id), device.last_seen_at, now, site_config(site))
    if event is None:
        return False
    since = _local(device.last_seen_at, site)
    if isinstance(device, Gateway):
        return await _emit(session, event, "gateway_lost", site,
                           {"gateway": device.code, "since": since}, staff=True)
    acc = await session.get(Account, device.account_id) if device.account_id else None
    params = {"meter": device.address, "since": since}
    return await _emit(session, event, "meter_lost", site, params, acc, staff=acc is None)


async def abnormal_load(session: AsyncSession, meter_id: int, previous: alerts.PowerSample | None,
                        current: alerts.PowerSample) -> bool:
    """A sudden power step on a meter (a forbidden heater): tell the tenant."""
    meter = await session.get(Meter, meter_id)
    if meter is None:
        return False
    site = await session.get(Site, meter.site_id)
    assert site is not None
    event = alerts.abnormal_load(str(meter_id), previous, current, site_config(site))
    if event is None:
        return False
    acc = await session.get(Account, meter.account_id) if meter.account_id else None
    params = {"meter": meter.address, "power_w": str(current.watts), "at": _local(current.at, site)}
    return await _emit(session, event, "abnormal_load", site, params, acc, staff=acc is None)
