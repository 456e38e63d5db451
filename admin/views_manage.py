"""Management pages: the audit log, users (owner only) and tariffs with their versions."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from admin import forms
from admin.scope import db, obj_of, sessions, site_of
from admin.security import STAFF, require
from billing.tariffs import TariffError, parse_tariff
from services import audit
from services.errors import NotFound, ServiceError
from services.staff import ROLES, add_user
from services.uow import in_transaction
from store.models import AuditEntry, Site, Tariff, TariffVersion, User, UserSite

PAGE = 100


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _local_midnight(d: date, tz: str = "Asia/Shanghai") -> datetime:
    return datetime.combine(d, time.min, ZoneInfo(tz))


async def audit_log(request: web.Request) -> web.StreamResponse:
    staff, q = request[STAFF], request.query
    stmt = select(AuditEntry).where(AuditEntry.site_id.in_(staff.site_ids))
    if q.get("actor"):
        stmt = stmt.where(AuditEntry.actor == q["actor"])
    if q.get("action"):
        stmt = stmt.where(AuditEntry.action.like(f"{q['action']}%"))
    if (d := _day(q.get("from"))) is not None:
        stmt = stmt.where(AuditEntry.at >= _local_midnight(d))
    if (d := _day(q.get("to"))) is not None:
        stmt = stmt.where(AuditEntry.at < _local_midnight(d + timedelta(days=1)))
    page = forms.opt_int(q.get("page")) or 1
    async with db(request) as s:
        rows = list(await s.scalars(stmt.order_by(AuditEntry.id.desc()).limit(PAGE).offset((page - 1) * PAGE)))
    return aiohttp_jinja2.render_template("audit.html", request, {"rows": rows, "q": q, "page": page, "size": PAGE})


async def _visible_users(s: AsyncSession, site_ids: tuple[int, ...]) -> list[tuple[User, list[int]]]:
    """Users who share a site with the viewer, with their sites (only those the viewer has)."""
    pairs = (await s.execute(select(User, UserSite.site_id).join(UserSite, UserSite.user_id == User.id)
                             .where(UserSite.site_id.in_(site_ids)).order_by(User.username))).all()
    out: dict[int, tuple[User, list[int]]] = {}
    for user, site_id in pairs:
        out.setdefault(user.id, (user, []))[1].append(site_id)
    return list(out.values())


@require("users")
async def users(request: web.Request) -> web.StreamResponse:
    staff = request[STAFF]
    async with db(request) as s:
        rows = await _visible_users(s, staff.site_ids)
        sites = list(await s.scalars(select(Site).where(Site.id.in_(staff.site_ids)).order_by(Site.id)))
    return aiohttp_jinja2.render_template("users.html", request, {"rows": rows, "sites": sites, "roles": ROLES,
                                                                  "now": datetime.now(ZoneInfo("UTC"))})


@require("users")
async def user_create(request: web.Request) -> web.StreamResponse:
    form, staff = await request.post(), request[STAFF]
    site_ids = [int(x) for x in form.getall("site_id", []) if str(x).isdigit()]
    if not site_ids or not set(site_ids) <= set(staff.site_ids):
        raise NotFound("unknown site")
    username, password = forms.text(form, "username", max_len=80), str(form.get("password") or "")
    role = forms.text(form, "role")

    async def run(s: AsyncSession) -> int:
        return (await add_user(s, username, password, role, site_ids, actor=staff.username)).id

    await in_transaction(sessions(request), run)
    raise web.HTTPFound("/admin/users?done=user_create")


@require("users")
async def user_unlock(request: web.Request) -> web.StreamResponse:
    staff = request[STAFF]

    async def run(s: AsyncSession) -> None:
        user = await s.get(User, forms.opt_int(request.match_info["user_id"]) or 0)
        shared = await s.scalar(select(func.min(UserSite.site_id)).where(
            UserSite.user_id == (user.id if user else 0), UserSite.site_id.in_(staff.site_ids)))
        if user is None or shared is None:
            raise NotFound("not found")
        before = {"failed_logins": user.failed_logins, "locked_until": user.locked_until}
        user.failed_logins, user.locked_until = 0, None
        await audit.record(s, staff.username, "user.unlock", "user", user.id, before, {"locked_until": None},
                           site_id=shared)

    await in_transaction(sessions(request), run)
    raise web.HTTPFound("/admin/users?done=user_unlock")


async def tariffs(request: web.Request) -> web.StreamResponse:
    async with db(request) as s:
        site = await site_of(s, request)
        rows = list(await s.scalars(select(Tariff).where(Tariff.site_id == site.id).order_by(Tariff.id)))
        versions = list(await s.scalars(select(TariffVersion).where(TariffVersion.tariff_id.in_([t.id for t in rows]))
                                        .order_by(TariffVersion.effective_from.desc())))
    by_tariff: dict[int, list[TariffVersion]] = {}
    for v in versions:
        by_tariff.setdefault(v.tariff_id, []).append(v)
    return aiohttp_jinja2.render_template("tariffs.html", request, {
        "site": site, "rows": rows, "versions": by_tariff, "error": request.query.get("error")})


def _spec(form: object) -> dict[str, object]:
    """The JSON spec, validated by the billing core (so the panel cannot save what billing cannot price)."""
    try:
        spec = json.loads(forms.text(form, "spec", max_len=20_000))  # type: ignore[arg-type]
        if not isinstance(spec, dict):
            raise ValueError("spec must be a JSON object")
        parse_tariff(spec)
    except (ValueError, TariffError, KeyError, TypeError) as ex:
        raise ServiceError(f"tariff spec refused: {ex}") from ex
    return spec


@require("tariff")
async def tariff_create(request: web.Request) -> web.StreamResponse:
    form, staff = await request.post(), request[STAFF]
    spec, name, utility = _spec(form), forms.text(form, "name", max_len=100), forms.text(form, "utility")
    if utility not in ("electricity", "water"):
        raise ServiceError("utility must be electricity or water")
    start = _day(forms.text(form, "effective_from"))
    if start is None:
        raise ServiceError("effective_from must be a date")

    async def run(s: AsyncSession) -> int:
        site = await site_of(s, request)
        t = Tariff(site_id=site.id, name=name, utility=utility, kind=str(spec["kind"]))
        s.add(t)
        await s.flush()
        s.add(TariffVersion(tariff_id=t.id, effective_from=_local_midnight(start, site.timezone), spec=spec))
        await audit.record(s, staff.username, "tariff.create", "tariff", t.id, None,
                           {"name": name, "utility": utility, "spec": spec, "effective_from": start.isoformat()},
                           site_id=site.id)
        return site.id

    site_id = await in_transaction(sessions(request), run)
    raise web.HTTPFound(f"/admin/sites/{site_id}/tariffs?done=tariff_create")


@require("tariff")
async def version_add(request: web.Request) -> web.StreamResponse:
    form, staff = await request.post(), request[STAFF]
    spec, start = _spec(form), _day(forms.text(form, "effective_from"))
    if start is None:
        raise ServiceError("effective_from must be a date")

    async def run(s: AsyncSession) -> int:
        t = await obj_of(s, request, Tariff, "tariff_id")
        if spec.get("kind") != t.kind:
            raise ServiceError(f"this tariff is {t.kind}; a new version must be {t.kind} too")
        site = await s.get(Site, t.site_id)
        at = _local_midnight(start, site.timezone if site else "Asia/Shanghai")
        if await s.scalar(select(TariffVersion.id).where(TariffVersion.tariff_id == t.id,
                                                         TariffVersion.effective_from == at)) is not None:
            raise ServiceError("a version with this effective date exists")
        v = TariffVersion(tariff_id=t.id, effective_from=at, spec=spec)
        s.add(v)
        await s.flush()
        await audit.record(s, staff.username, "tariff.add_version", "tariff", t.id, None,
                           {"version_id": v.id, "effective_from": start.isoformat(), "spec": spec}, site_id=t.site_id)
        return t.site_id

    site_id = await in_transaction(sessions(request), run)
    raise web.HTTPFound(f"/admin/sites/{site_id}/tariffs?done=add_version")
