"""The notification dispatcher: a "notify" outbox row -> planned deliveries -> each sent once.

Planning (`plan_deliveries`, in the job's transaction with the outbox ack) resolves the recipient,
asks notifications.policy (quiet hours in the site's time zone, daily caps counted from the
delivery log, dedup by message key, one-shot mini-program opt-ins) and writes one delivery row per
(message key, channel) - the unique key that makes a second send impossible. Sending
(`send_due`) claims a queued row (queued -> sending, with a lease), sends outside any transaction,
then records sent, a retry at `policy.next_attempt`, or a logged failure with a fallback channel.
A deferred low-balance warning made moot by a top-up is skipped, not sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notifications import policy
from notifications.channel import Channel, Message, SendResult
from notifications.templates import TemplateError, render
from services.alerting import load_state
from services.outbox import insert_ignoring
from services.uow import in_transaction
from store.models import Account, Delivery, NotifyPreference, Site, SubscribeOptIn, Tenant

log = logging.getLogger(__name__)
LEASE = timedelta(minutes=5)  # longer than any channel's timeout: a crashed send is retried after it
LIVE = ("queued", "sending", "sent")
LOW_BALANCE = frozenset({"low_balance_1", "low_balance_2", "low_balance_3"})


@dataclass(frozen=True)
class Recipient:
    """Who a message goes to: a tenant or a site's staff, with an address per channel."""

    ref: str  # "tenant:<id>" | "staff:<site id>" - the unit of daily caps
    tenant_id: int | None
    locale: str
    addresses: dict[str, str]
    prefs: policy.Preferences


@dataclass
class SendReport:
    """Outcome counts of one `send_due` pass."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0


def _hhmm(text: str | None, default: time) -> time:
    return time.fromisoformat(text) if text else default


def _prefs(raw: Mapping[str, Any], base: policy.Preferences) -> policy.Preferences:
    channels = {k: tuple(v) for k, v in (raw.get("channels") or {}).items()}
    return policy.Preferences(
        channels={**base.channels, **channels},
        disabled=base.disabled | frozenset(raw.get("disabled") or ()),
        quiet_start=_hhmm(raw.get("quiet_start"), base.quiet_start),
        quiet_end=_hhmm(raw.get("quiet_end"), base.quiet_end),
        daily_limits={**base.daily_limits, **{k: int(v) for k, v in (raw.get("daily_limits") or {}).items()}},
    )


async def resolve(session: AsyncSession, site: Site, payload: Mapping[str, Any]) -> Recipient | None:
    """The recipient of a notify payload; Site.settings["notify"] holds site defaults and staff."""
    conf = (site.settings or {}).get("notify") or {}
    site_prefs = _prefs(conf, policy.Preferences())
    if payload.get("audience") == "staff" or payload.get("tenant_id") is None:
        staff = conf.get("staff") or {}
        addresses = {"sms": staff.get("phone"), "voice": staff.get("phone"), "email": staff.get("email"),
                     "push": staff.get("push"), "wechat_template": staff.get("openid")}
        return Recipient(f"staff:{site.id}", None, staff.get("locale", "zh-CN"),
                         {k: v for k, v in addresses.items() if v}, site_prefs)
    tenant = await session.get(Tenant, int(payload["tenant_id"]))
    if tenant is None:
        return None
    own = await session.scalar(select(NotifyPreference).where(NotifyPreference.tenant_id == tenant.id))
    raw = {"channels": own.channels, "disabled": own.disabled, "quiet_start": own.quiet_start,
           "quiet_end": own.quiet_end, "daily_limits": own.daily_limits} if own else {}
    addresses = {"sms": tenant.phone, "voice": tenant.phone, "email": tenant.email,
                 "wechat_template": tenant.wechat_openid,
                 "wechat_subscribe": own.miniprogram_openid if own else None,
                 "push": own.push_target if own else None}
    return Recipient(f"tenant:{tenant.id}", tenant.id, tenant.locale,
                     {k: v for k, v in addresses.items() if v}, _prefs(raw, site_prefs))


async def _usage(session: AsyncSession, ref: str, key: str, day: str) -> policy.Usage:
    rows = await session.execute(select(Delivery.channel, func.count()).where(
        Delivery.recipient == ref, Delivery.local_day == day, Delivery.status.in_(LIVE),
    ).group_by(Delivery.channel))
    seen = await session.scalar(select(Delivery.id).where(Delivery.message_key == key).limit(1))
    return policy.Usage(dict(rows.tuples().all()), frozenset({key}) if seen is not None else frozenset())


async def _opt_ins(session: AsyncSession, tenant_id: int | None) -> dict[str, int]:
    if tenant_id is None:
        return {}
    rows = await session.execute(select(SubscribeOptIn.kind, SubscribeOptIn.count).where(
        SubscribeOptIn.tenant_id == tenant_id))
    return dict(rows.tuples().all())


async def add_opt_in(session: AsyncSession, tenant_id: int, kind: str, times: int = 1) -> None:
    """The tenant tapped 'allow' in the mini-program: `times` more messages of `kind` may go."""
    await insert_ignoring(session, SubscribeOptIn, dict(tenant_id=tenant_id, kind=kind, count=0),
                          ["tenant_id", "kind"])
    await session.execute(update(SubscribeOptIn).where(
        SubscribeOptIn.tenant_id == tenant_id, SubscribeOptIn.kind == kind,
    ).values(count=SubscribeOptIn.count + times))


async def plan_deliveries(session: AsyncSession, key: str, payload: Mapping[str, Any],
                          channels: Mapping[str, Channel], now: datetime) -> list[int]:
    """Write the delivery rows for one message; returns the ids due at once."""
    site = await session.get(Site, int(payload["site_id"]))
    recipient = await resolve(session, site, payload) if site is not None else None
    if site is None or recipient is None:
        log.warning("notify %s: no recipient (site %s)", key, payload.get("site_id"))
        return []
    tz = ZoneInfo(site.timezone)
    local = now.astimezone(tz)
    kind = str(payload["kind"])
    reach = {ch: c.kinds for ch, c in channels.items() if ch in recipient.addresses}
    caps = policy.Capabilities(reach, await _opt_ins(session, recipient.tenant_id))
    usage = await _usage(session, recipient.ref, key, local.date().isoformat())
    message = Message(key, kind, recipient.locale, "", dict(payload.get("params") or {}))
    plan = policy.plan(message, local, recipient.prefs, caps, usage)
    context = {**(payload.get("context") or {}), "tz": site.timezone,
               "quiet": [recipient.prefs.quiet_start.isoformat("minutes"),
                         recipient.prefs.quiet_end.isoformat("minutes")],
               "alt": {ch: recipient.addresses[ch] for ch, kinds in reach.items() if kind in kinds}}
    base = dict(message_key=key, kind=kind, site_id=site.id, recipient=recipient.ref,
                account_id=payload.get("account_id"), locale=recipient.locale,
                params=message.params, context=context, created_at=now)
    for skip in plan.skipped:
        if skip.channel != "*":
            await insert_ignoring(session, Delivery, dict(
                base, channel=skip.channel, to=recipient.addresses.get(skip.channel, ""),
                status="skipped", reason=skip.reason, local_day=local.date().isoformat(),
                next_attempt_at=now), ["message_key", "channel"])
    for d in plan.decisions:
        await insert_ignoring(session, Delivery, dict(
            base, channel=d.channel, to=recipient.addresses[d.channel], status="queued",
            reason=d.reason, local_day=d.send_at.astimezone(tz).date().isoformat(),
            next_attempt_at=d.send_at), ["message_key", "channel"])
        if policy.CHANNEL_RULES[d.channel].one_shot:
            await session.execute(update(SubscribeOptIn).where(
                SubscribeOptIn.tenant_id == recipient.tenant_id, SubscribeOptIn.kind == kind,
                SubscribeOptIn.count > 0).values(count=SubscribeOptIn.count - 1))
    if not plan.decisions and plan.skipped[:1] != (policy.Skip("*", "duplicate"),):
        unconfigured = all(s.reason == "not_configured" for s in plan.skipped)
        # with no channel configured at all (the demo) this is expected: say it quietly
        log.log(logging.INFO if unconfigured else logging.WARNING,
                "notify %s (%s): no channel can carry it: %s", key, kind, plan.skipped)
    due = [d.channel for d in plan.decisions if d.send_at <= local]
    if not due:
        return []
    ids = await session.scalars(select(Delivery.id).where(
        Delivery.message_key == key, Delivery.channel.in_(due), Delivery.status == "queued"))
    return list(ids)


async def send_due(sessions: async_sessionmaker[AsyncSession], channels: Mapping[str, Channel],
                   now: datetime, ids: list[int] | None = None, limit: int = 200,
                   concurrency: int = 8) -> SendReport:
    """Send queued deliveries whose time has come (and sends whose lease ran out)."""
    stmt = select(Delivery.id).where(Delivery.status.in_(("queued", "sending")),
                                     Delivery.next_attempt_at <= now)
    if ids is not None:
        stmt = stmt.where(Delivery.id.in_(ids))
    async with sessions() as session:
        due = list(await session.scalars(stmt.order_by(Delivery.next_attempt_at, Delivery.id).limit(limit)))
    report = SendReport()
    gate = asyncio.Semaphore(concurrency)

    async def one(delivery_id: int) -> None:
        async with gate:
            outcome = await send_one(sessions, channels, delivery_id, now)
        if outcome is not None:
            setattr(report, outcome, getattr(report, outcome) + 1)

    await asyncio.gather(*(one(i) for i in due))
    return report


async def send_one(sessions: async_sessionmaker[AsyncSession], channels: Mapping[str, Channel],
                   delivery_id: int, now: datetime) -> str | None:
    """Claim, send and record one delivery; None when another worker has it or it is not due."""
    claimed = await in_transaction(sessions, lambda s: _claim(s, delivery_id, now))
    if claimed is None or claimed.status == "skipped":
        return None if claimed is None else "skipped"
    result = await _attempt(channels.get(claimed.channel), claimed)
    outcome, fallback = await in_transaction(
        sessions, lambda s: _record(s, delivery_id, claimed.attempts, result, now))
    if fallback is not None:  # a stand-in carrier, due at once unless quiet hours defer it
        await send_one(sessions, channels, fallback, now)
    return outcome


async def _claim(session: AsyncSession, delivery_id: int, now: datetime) -> Delivery | None:
    row = await session.get(Delivery, delivery_id, with_for_update=True)
    if row is None or row.status not in ("queued", "sending") or row.next_attempt_at > now:
        return None
    if row.kind in LOW_BALANCE and await _moot(session, row):
        row.status, row.reason = "skipped", "moot"
        return row
    row.status, row.attempts, row.next_attempt_at = "sending", row.attempts + 1, now + LEASE
    return row


async def _moot(session: AsyncSession, row: Delivery) -> bool:
    """A low-balance warning whose level re-armed (a top-up) since it was planned."""
    acc = await session.get(Account, row.account_id) if row.account_id is not None else None
    level = row.context.get("level")
    if acc is None or level is None:
        return False
    ls = load_state(acc.id, acc.alert_state).level(level)
    return not ls.tripped or ls.crossings != row.context.get("crossing")


async def _attempt(channel: Channel | None, row: Delivery) -> SendResult:
    if channel is None:
        return SendResult.failed(f"channel {row.channel} is not configured", retryable=False)
    try:
        rendered = render(row.kind, row.locale, row.params)
    except TemplateError as ex:
        return SendResult.failed(f"template: {ex}", retryable=False)
    try:
        return await channel.send(Message(row.message_key, row.kind, row.locale, row.to, row.params), rendered)
    except Exception as ex:  # noqa: BLE001 - a channel bug must not lose the delivery
        log.exception("channel %s raised for %s", row.channel, row.message_key)
        return SendResult.failed(f"{type(ex).__name__}: {ex}", retryable=True)


async def _record(session: AsyncSession, delivery_id: int, attempt: int, result: SendResult,
                  now: datetime) -> tuple[str | None, int | None]:
    """The attempt's outcome, and the id of a fallback delivery if one was queued."""
    row = await session.get(Delivery, delivery_id, with_for_update=True)
    if row is None or row.status != "sending" or row.attempts != attempt:
        return None, None  # our lease ran out and another worker took the row over
    if result.ok:
        row.status, row.sent_at, row.provider_id, row.error = "sent", now, result.provider_id, None
        return "sent", None
    row.error = (result.error or "unknown error")[:500]
    prefs = _quiet(row.context)
    local = now.astimezone(ZoneInfo(row.context.get("tz", "UTC")))
    retry_at = policy.next_attempt(row.channel, row.kind, row.attempts, local, result.retryable, prefs)
    if retry_at is not None:
        row.status, row.next_attempt_at = "queued", retry_at
        log.info("delivery %s via %s failed (attempt %d), retry at %s: %s", row.message_key,
                 row.channel, row.attempts, retry_at.isoformat(), row.error)
        return "retrying", None
    row.status = "failed"
    log.error("delivery %s via %s failed for good after %d attempts: %s", row.message_key,
              row.channel, row.attempts, row.error)
    return "failed", await _fallback(session, row, local, prefs)


def _quiet(context: Mapping[str, Any]) -> policy.Preferences:
    start, end = context.get("quiet") or ("22:00", "08:00")
    return policy.Preferences(quiet_start=time.fromisoformat(start), quiet_end=time.fromisoformat(end))


async def _fallback(session: AsyncSession, row: Delivery, local: datetime,
                    prefs: policy.Preferences) -> int | None:
    """When a message's last live delivery failed for good, queue it on an untried carrier."""
    rows = await session.execute(select(Delivery.channel, Delivery.status).where(
        Delivery.message_key == row.message_key))
    tried = dict(rows.tuples().all())
    if any(status in LIVE for ch, status in tried.items() if ch != row.channel):
        return None
    alt: dict[str, str] = row.context.get("alt") or {}
    untried = tuple(ch for ch in policy.KIND_RULES[row.kind].fallback if ch in alt and ch not in tried)
    if not untried:
        log.error("message %s (%s) could not be delivered on any channel", row.message_key, row.kind)
        return None
    caps = policy.Capabilities({ch: frozenset({row.kind}) for ch in untried})
    msg = Message(row.message_key, row.kind, row.locale, "", row.params)
    choice = policy.plan(msg, local, policy.Preferences(channels={row.kind: untried[:1]},
                         quiet_start=prefs.quiet_start, quiet_end=prefs.quiet_end),
                         caps, policy.Usage()).decisions[0]
    stand_in = Delivery(
        message_key=row.message_key, channel=choice.channel, kind=row.kind, site_id=row.site_id,
        recipient=row.recipient, account_id=row.account_id, to=alt[choice.channel], locale=row.locale,
        params=row.params, context=row.context, status="queued", reason="fallback",
        local_day=choice.send_at.date().isoformat(), next_attempt_at=choice.send_at)
    session.add(stand_in)
    await session.flush()
    log.warning("message %s falls back to %s", row.message_key, choice.channel)
    return stand_in.id
