"""Binding a WeChat user to accounts: by phone + SMS code, or by room + the phone's last 4 digits; unbinding.

SMS codes are kept only as HMACs, expire and have a try budget; codes per phone and room guesses
per openid are throttled. Every bind and unbind is audited, and the tenant's `wechat_openid`
mirrors the latest binding so notifications can reach them.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.port import BindResult, BindStartStatus
from services.tenant_rooms import rooms_of
from services.tenant_rules import (CODE_TTL, MAX_CODE_ATTEMPTS, MAX_CODES_PER_PHONE_PER_HOUR,
                                   MAX_ROOM_MISSES_PER_DAY, normalise_phone, squeeze)
from store.models import Account, AuditEntry, BindChallenge, Building, Meter, Room, Site, Tenant, TenantLink


def code_hash(secret: str, openid: str, phone: str, code: str) -> str:
    return hmac.new(secret.encode(), f"bind:{openid}:{phone}:{code}".encode(), hashlib.sha256).hexdigest()


async def accounts_of_phone(s: AsyncSession, phone: str) -> list[Account]:
    variants = [phone, f"+86{phone}", f"86{phone}", f"+86 {phone}"]
    return list(await s.scalars(select(Account).join(Tenant, Tenant.id == Account.tenant_id).where(
        Tenant.phone.in_(variants), Account.state == "open").order_by(Account.id)))


async def open_challenge(s: AsyncSession, secret: str, openid: str, phone: str, code: str,
                         now: datetime) -> BindStartStatus:
    """Record an SMS challenge for a registered phone (the caller sends the code)."""
    if not phone or not await accounts_of_phone(s, phone):
        return "unknown_phone"
    recent = await s.scalar(select(func.count()).select_from(BindChallenge).where(
        BindChallenge.kind == "sms", BindChallenge.created_at > now - timedelta(hours=1),
        (BindChallenge.phone == phone) | (BindChallenge.openid == openid)))
    if (recent or 0) >= MAX_CODES_PER_PHONE_PER_HOUR:
        return "too_many_requests"
    for old in await s.scalars(select(BindChallenge).where(
            BindChallenge.openid == openid, BindChallenge.closed_at.is_(None))):
        old.closed_at = now
    s.add(BindChallenge(kind="sms", openid=openid, phone=phone, code_hash=code_hash(secret, openid, phone, code),
                        created_at=now, expires_at=now + CODE_TTL))
    return "code_sent"


async def confirm(s: AsyncSession, secret: str, openid: str, code: str, now: datetime) -> BindResult:
    """Check the code of the openid's open challenge and bind every account of its phone."""
    ch = await s.scalar(select(BindChallenge).where(
        BindChallenge.openid == openid, BindChallenge.kind == "sms", BindChallenge.closed_at.is_(None))
        .order_by(BindChallenge.id.desc()).limit(1).with_for_update())
    if ch is None:
        return BindResult("no_pending")
    if ch.expires_at <= now or ch.attempts >= MAX_CODE_ATTEMPTS:
        ch.closed_at = now
        return BindResult("expired")
    ch.attempts += 1
    if not hmac.compare_digest(ch.code_hash, code_hash(secret, openid, ch.phone, code)):
        return BindResult("bad_code")
    ch.closed_at = now
    for acc in await accounts_of_phone(s, ch.phone):
        await link(s, openid, acc, "phone", now)
    return BindResult("bound", tuple(await rooms_of(s, openid)))


async def link(s: AsyncSession, openid: str, acc: Account, via: str, now: datetime) -> None:
    exists = await s.scalar(select(TenantLink.id).where(TenantLink.openid == openid,
                                                        TenantLink.account_id == acc.id))
    if exists is not None:
        return
    s.add(TenantLink(openid=openid, account_id=acc.id, via=via, created_at=now))
    tenant = await s.get(Tenant, acc.tenant_id)
    if tenant is not None:
        tenant.wechat_openid = openid
    s.add(AuditEntry(at=now, actor=f"wechat:{openid}"[:100], site_id=acc.site_id, action="tenant.bind",
                     object_type="account", object_id=str(acc.id), after={"openid": openid, "via": via}))
    await s.flush()


async def bind_room(s: AsyncSession, openid: str, where: str, room_no: str, last4: str,
                    now: datetime) -> BindResult:
    """Bind by site (or building) + room number + the last 4 digits of the registered phone."""
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
    key = squeeze(where)
    found = [(a, site, phone) for a, site, b, phone in rows
             if key in {squeeze(site.code), squeeze(site.name), squeeze(b.name), squeeze(site.name + b.name)}]
    if found and not all((site.settings or {}).get("bind_by_room") for _, site, _ in found):
        return BindResult("not_allowed")
    matched = {a.id: a for a, _, phone in found if len(last4) == 4 and normalise_phone(phone).endswith(last4)}
    if not matched:
        s.add(BindChallenge(kind="room_miss", openid=openid, phone="", code_hash="", created_at=now,
                            expires_at=now, closed_at=now))
        return BindResult("no_match")
    for acc in matched.values():
        await link(s, openid, acc, "room", now)
    return BindResult("bound", tuple(await rooms_of(s, openid)))


async def unbind(s: AsyncSession, openid: str, account_id: str, now: datetime) -> bool:
    """Remove one binding; False when it did not exist."""
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
    s.add(AuditEntry(at=now, actor=f"wechat:{openid}"[:100], site_id=acc.site_id, action="tenant.unbind",
                     object_type="account", object_id=str(acc.id), before={"openid": openid}))
    return True
