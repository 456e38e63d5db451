"""Management pages: sites, buildings / floors / rooms, gateways / meters, and their CSV/XLSX import."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from admin import forms, imports
from admin.scope import db, sessions, site_of
from admin.security import STAFF, require
from services import audit
from services.errors import Conflict, NotFound, ServiceError
from services.uow import in_transaction
from store.models import Building, Company, Floor, Gateway, Meter, Room, Site, Tariff, UserSite

PAGE = 200
MAX_UPLOAD = 5 * 1024 * 1024


async def sites(request: web.Request) -> web.StreamResponse:
    staff = request[STAFF]
    rooms = select(Room.site_id, func.count().label("n")).group_by(Room.site_id).subquery()
    meters = select(Meter.site_id, func.count().label("n")).group_by(Meter.site_id).subquery()
    async with db(request) as s:
        rows = (await s.execute(
            select(Site, func.coalesce(rooms.c.n, 0), func.coalesce(meters.c.n, 0))
            .outerjoin(rooms, rooms.c.site_id == Site.id).outerjoin(meters, meters.c.site_id == Site.id)
            .where(Site.id.in_(staff.site_ids)).order_by(Site.id))).all()
        companies = list(await s.scalars(select(Company).where(
            Company.id.in_(select(Site.company_id).where(Site.id.in_(staff.site_ids)))).order_by(Company.id)))
    return aiohttp_jinja2.render_template("manage/sites.html", request, {"rows": rows, "companies": companies})


@require("users")
async def site_create(request: web.Request) -> web.StreamResponse:
    """An owner adds a site to one of his companies, and is given it."""
    staff, form = request[STAFF], await request.post()
    company_id, code = forms.integer(form, "company_id"), forms.text(form, "code", max_len=40)
    name, tz = forms.text(form, "name", max_len=200), forms.text(form, "timezone", required=False) or "Asia/Shanghai"
    try:
        ZoneInfo(tz)
    except (ValueError, ZoneInfoNotFoundError):
        raise ServiceError(f"unknown time zone {tz!r}") from None

    async def run(s: AsyncSession) -> int:
        mine = set(await s.scalars(select(Site.company_id).where(Site.id.in_(staff.site_ids))))
        if company_id not in mine:
            raise NotFound("unknown company")
        if await s.scalar(select(Site.id).where(Site.code == code)) is not None:
            raise Conflict(f"site code {code} is taken")
        site = Site(company_id=company_id, code=code, name=name, timezone=tz, settings={})
        s.add(site)
        await s.flush()
        s.add(UserSite(user_id=staff.id, site_id=site.id))
        await audit.record(s, staff.username, "site.create", "site", site.id, None,
                           {"code": code, "name": name, "timezone": tz, "company_id": company_id}, site_id=site.id)
        return site.id

    site_id = await in_transaction(sessions(request), run)
    raise web.HTTPFound(f"/admin/sites/{site_id}/places?done=site_create")


async def places(request: web.Request, errors: list[str] | None = None, status: int = 200) -> web.StreamResponse:
    page = forms.opt_int(request.query.get("page")) or 1
    async with db(request) as s:
        site = await site_of(s, request)
        buildings = list(await s.scalars(select(Building).where(Building.site_id == site.id).order_by(Building.name)))
        floors = list(await s.scalars(select(Floor).where(Floor.building_id.in_([b.id for b in buildings]))
                                      .order_by(Floor.building_id, Floor.level)))
        rooms = (await s.execute(select(Room, Building.name, Floor.level).join(Building, Building.id == Room.building_id)
                                 .join(Floor, Floor.id == Room.floor_id).where(Room.site_id == site.id)
                                 .order_by(Building.name, Floor.level, Room.number)
                                 .limit(PAGE).offset((page - 1) * PAGE))).all()
    return aiohttp_jinja2.render_template("manage/places.html", request, {
        "site": site, "buildings": buildings, "floors": floors, "rooms": rooms, "page": page, "size": PAGE,
        "errors": errors or [], "room_columns": imports.ROOM_COLUMNS}, status=status)


async def _site_id(request: web.Request) -> int:
    async with db(request) as s:
        return (await site_of(s, request)).id


@require("account")
async def building_create(request: web.Request) -> web.StreamResponse:
    staff, site_id = request[STAFF], await _site_id(request)
    name = forms.text(await request.post(), "name", max_len=100)

    async def run(s: AsyncSession) -> None:
        if await s.scalar(select(Building.id).where(Building.site_id == site_id, Building.name == name)):
            raise Conflict(f"building {name} exists")
        b = Building(site_id=site_id, name=name)
        s.add(b)
        await s.flush()
        await audit.record(s, staff.username, "building.create", "building", b.id, None, {"name": name},
                           site_id=site_id)

    await in_transaction(sessions(request), run)
    raise web.HTTPFound(f"/admin/sites/{site_id}/places?done=building_create")


@require("account")
async def floor_create(request: web.Request) -> web.StreamResponse:
    staff, site_id = request[STAFF], await _site_id(request)
    form = await request.post()
    building_id, level = forms.integer(form, "building_id"), forms.integer(form, "level")
    name = forms.text(form, "name", required=False, max_len=50) or f"{level}F"

    async def run(s: AsyncSession) -> None:
        b = await s.get(Building, building_id)
        if b is None or b.site_id != site_id:
            raise NotFound("unknown building")
        if await s.scalar(select(Floor.id).where(Floor.building_id == b.id, Floor.level == level)):
            raise Conflict(f"floor {level} of {b.name} exists")
        f = Floor(building_id=b.id, level=level, name=name)
        s.add(f)
        await s.flush()
        await audit.record(s, staff.username, "floor.create", "floor", f.id, None,
                           {"building": b.name, "level": level, "name": name}, site_id=site_id)

    await in_transaction(sessions(request), run)
    raise web.HTTPFound(f"/admin/sites/{site_id}/places?done=floor_create")


def _one_row(form: Any, columns: tuple[str, ...]) -> list[dict[str, str]]:
    return [{c: str(form.get(c) or "").strip() for c in columns}]


async def _store(request: web.Request, site_id: int, what: str, rows: list[dict[str, str]], action: str) -> int:
    """Check and store room or meter rows in one transaction, audited; ImportRefused if any row is wrong."""
    staff = request[STAFF]
    parsed: list[Any] = imports.room_rows(rows) if what == "room" else imports.meter_rows(rows)

    async def run(s: AsyncSession) -> int:
        if what == "room":
            n = await imports.store_rooms(s, site_id, parsed)
        else:
            n = await imports.store_meters(s, site_id, parsed)
        after = {"count": n, "rows": rows[:50]}
        await audit.record(s, staff.username, f"{what}.{action}", "site", site_id, None, after, site_id=site_id)
        return n

    return await in_transaction(sessions(request), run)


@require("account")
async def room_create(request: web.Request) -> web.StreamResponse:
    site_id = await _site_id(request)
    try:
        await _store(request, site_id, "room", _one_row(await request.post(), imports.ROOM_COLUMNS), "create")
    except imports.ImportRefused as ex:
        raise ServiceError("; ".join(ex.errors)) from ex
    raise web.HTTPFound(f"/admin/sites/{site_id}/places?done=room_create")


async def _upload(request: web.Request) -> tuple[str, bytes]:
    form = await request.post()
    field = form.get("file")
    if not isinstance(field, web.FileField):
        raise imports.ImportRefused(["choose a .csv or .xlsx file"])
    data = field.file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise imports.ImportRefused(["the file is larger than 5 MB"])
    return field.filename or "", data


@require("account")
async def rooms_import(request: web.Request) -> web.StreamResponse:
    site_id = await _site_id(request)
    try:
        n = await _store(request, site_id, "room", imports.read_table(*await _upload(request)), "import")
    except imports.ImportRefused as ex:
        return await places(request, ex.errors, status=400)
    raise web.HTTPFound(f"/admin/sites/{site_id}/places?done=room_import&count={n}")


async def devices(request: web.Request, errors: list[str] | None = None, status: int = 200) -> web.StreamResponse:
    page = forms.opt_int(request.query.get("page")) or 1
    async with db(request) as s:
        site = await site_of(s, request)
        per_gw = (select(Meter.gateway_id, func.count().label("n"),
                         func.sum(case((Meter.online, 1), else_=0)).label("n_online"))
                  .where(Meter.site_id == site.id).group_by(Meter.gateway_id).subquery())
        gateways = (await s.execute(select(Gateway, func.coalesce(per_gw.c.n, 0), func.coalesce(per_gw.c.n_online, 0))
                                    .outerjoin(per_gw, per_gw.c.gateway_id == Gateway.id)
                                    .where(Gateway.site_id == site.id).order_by(Gateway.code))).all()
        stmt = (select(Meter, Gateway.code, Room.number, Building.name).outerjoin(Gateway, Gateway.id == Meter.gateway_id)
                .outerjoin(Room, Room.id == Meter.room_id).outerjoin(Building, Building.id == Room.building_id)
                .where(Meter.site_id == site.id))
        if request.query.get("state") in ("online", "lost"):
            stmt = stmt.where(Meter.online.is_(request.query["state"] == "online"))
        meters = (await s.execute(stmt.order_by(Meter.id).limit(PAGE).offset((page - 1) * PAGE))).all()
        tariffs = list(await s.scalars(select(Tariff).where(Tariff.site_id == site.id).order_by(Tariff.name)))
    return aiohttp_jinja2.render_template("manage/devices.html", request, {
        "site": site, "gateways": gateways, "meters": meters, "tariffs": tariffs, "page": page, "size": PAGE,
        "q": request.query, "errors": errors or [], "meter_columns": imports.METER_COLUMNS,
        "protocols": imports.PROTOCOLS, "models": sorted(imports.PROFILES)}, status=status)


@require("account")
async def gateway_create(request: web.Request) -> web.StreamResponse:
    staff, site_id = request[STAFF], await _site_id(request)
    form = await request.post()
    code, protocol = forms.text(form, "code", max_len=64), forms.text(form, "protocol")
    host = forms.text(form, "host", required=False, max_len=200) or None
    port = forms.integer(form, "port") if form.get("port") else None
    if protocol not in imports.PROTOCOLS:
        raise ServiceError(f"protocol must be one of {', '.join(imports.PROTOCOLS)}")

    async def run(s: AsyncSession) -> None:
        if await s.scalar(select(Gateway.id).where(Gateway.code == code)) is not None:
            raise Conflict(f"gateway code {code} is taken")
        gw = Gateway(site_id=site_id, code=code, protocol=protocol, host=host, port=port)
        s.add(gw)
        await s.flush()
        await audit.record(s, staff.username, "gateway.create", "gateway", gw.id, None,
                           {"code": code, "protocol": protocol, "host": host, "port": port}, site_id=site_id)

    await in_transaction(sessions(request), run)
    raise web.HTTPFound(f"/admin/sites/{site_id}/devices?done=gateway_create")


@require("account")
async def meter_create(request: web.Request) -> web.StreamResponse:
    site_id = await _site_id(request)
    try:
        await _store(request, site_id, "meter", _one_row(await request.post(), imports.METER_COLUMNS), "create")
    except imports.ImportRefused as ex:
        raise ServiceError("; ".join(ex.errors)) from ex
    raise web.HTTPFound(f"/admin/sites/{site_id}/devices?done=meter_create")


@require("account")
async def meters_import(request: web.Request) -> web.StreamResponse:
    site_id = await _site_id(request)
    try:
        n = await _store(request, site_id, "meter", imports.read_table(*await _upload(request)), "import")
    except imports.ImportRefused as ex:
        return await devices(request, ex.errors, status=400)
    raise web.HTTPFound(f"/admin/sites/{site_id}/devices?done=meter_import&count={n}")
