"""Fee items, apportionment groups and month-end by hand: thin forms over services.fees/apportionment/monthend."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from admin import forms
from admin.scope import db, obj_of, sessions, site_of
from admin.security import STAFF, require
from admin.views_manage import _day
from billing.periods import PeriodError
from services.apportionment import create_group
from services.bill_queries import arrears, get_bill, list_bills
from services.errors import NotFound, ServiceError
from services.exports import arrears_xlsx, bills_xlsx
from services.fees import create_fee_item, list_fee_items, set_fee_item_active
from services.monthend import parse_month, run_month_end
from services.postpaid import confirm_bill, issue_bill, reopen_bill, void_bill
from services.uow import in_transaction
from store.models import (ApportionGroup, ApportionMember, ApportionRun, Bill, Building, FeeItem, Meter, Room,
                          Site)

BASES, RECURRENCES, COLLECTIONS = ("fixed", "per_m2"), ("monthly", "quarterly", "yearly", "one_time"), ("deduct", "bill")
METHODS = ("ratio", "area", "usage")
PAGE = 100


async def _site_lists(s: AsyncSession, site_id: int) -> dict[str, Any]:
    buildings = list(await s.scalars(select(Building).where(Building.site_id == site_id).order_by(Building.name)))
    masters = list(await s.scalars(select(Meter).where(Meter.site_id == site_id, Meter.is_master.is_(True))
                                   .order_by(Meter.id)))
    return {"buildings": buildings, "masters": masters}


async def fees(request: web.Request) -> web.StreamResponse:
    async with db(request) as s:
        site = await site_of(s, request)
        rows = await list_fee_items(s, site.id)
        extra = await _site_lists(s, site.id)
    return aiohttp_jinja2.render_template("manage/fees.html", request, {
        "site": site, "rows": rows, "bases": BASES, "recurrences": RECURRENCES, "collections": COLLECTIONS,
        "today": date.today().isoformat(), **extra})


def _ids(text: str) -> list[int]:
    try:
        return sorted({int(x) for x in text.replace("，", ",").replace(" ", ",").split(",") if x.strip()})
    except ValueError:
        raise ServiceError("room ids must be whole numbers separated by commas") from None


def fee_spec(form: Mapping[str, Any]) -> dict[str, Any]:
    """The service's spec from the form: amounts typed in yuan become fen, rates stay decimal text."""
    basis, recurrence = forms.text(form, "basis"), forms.text(form, "recurrence")
    collection, scope = forms.text(form, "collection"), forms.text(form, "scope", required=False) or "site"
    if basis not in BASES or recurrence not in RECURRENCES or collection not in COLLECTIONS:
        raise ServiceError("basis, recurrence or collection not recognised")
    spec: dict[str, Any] = {"code": forms.text(form, "code", max_len=40), "name": forms.text(form, "name", max_len=100),
                            "basis": basis, "recurrence": recurrence, "collection": collection, "scope": scope,
                            "day_of_period": forms.integer(form, "day_of_period") if form.get("day_of_period") else 1,
                            "starts_on": forms.text(form, "starts_on"),
                            "ends_on": forms.text(form, "ends_on", required=False) or None,
                            "prorate": form.get("prorate") in ("1", "on", "yes", "true")}
    if ":" in spec["code"]:
        raise ServiceError("code must not contain ':'")
    if basis == "fixed":
        spec["amount_fen"] = forms.money(form, "amount_yuan").fen
    else:
        try:
            rate = Decimal(forms.text(form, "rate_per_m2", max_len=20))
        except InvalidOperation:
            raise ServiceError("rate_per_m2 must be a decimal number of yuan") from None
        if rate <= 0:
            raise ServiceError("rate_per_m2 must be more than zero")
        spec["rate_per_m2"] = str(rate)
    if scope == "building":
        spec["building_id"] = forms.integer(form, "building_id")
    elif scope == "rooms":
        spec["room_ids"] = _ids(forms.text(form, "room_ids", max_len=5000))
    return spec


async def _check_places(s: AsyncSession, site_id: int, spec: dict[str, Any]) -> None:
    """Buildings and rooms named in a spec must be of this site (the services trust their callers)."""
    if spec.get("building_id") is not None:
        b = await s.get(Building, spec["building_id"])
        if b is None or b.site_id != site_id:
            raise NotFound("unknown building")
    rooms = [r for r in spec.get("room_ids") or []]
    rooms += [m["room_id"] for m in spec.get("members") or [] if m.get("room_id") is not None]
    if rooms:
        found = set(await s.scalars(select(Room.id).where(Room.id.in_(rooms), Room.site_id == site_id)))
        if found != set(rooms):
            raise NotFound("unknown room")
    meters = [m["meter_id"] for m in spec.get("members") or [] if m.get("meter_id") is not None]
    if meters:
        found = set(await s.scalars(select(Meter.id).where(Meter.id.in_(meters), Meter.site_id == site_id)))
        if found != set(meters):
            raise NotFound("unknown meter")


@require("account")
async def fee_create(request: web.Request) -> web.StreamResponse:
    staff = request[STAFF]
    async with db(request) as s:
        site_id = (await site_of(s, request)).id
    spec = fee_spec(await request.post())

    async def run(s: AsyncSession) -> int:
        await _check_places(s, site_id, spec)
        return (await create_fee_item(s, site_id, spec, staff.username)).id

    await in_transaction(sessions(request), run)
    raise web.HTTPFound(f"/admin/sites/{site_id}/fees?done=fee_create")


@require("account")
async def fee_active(request: web.Request) -> web.StreamResponse:
    staff, form = request[STAFF], await request.post()
    active = form.get("active") in ("1", "on", "yes", "true")

    async def run(s: AsyncSession) -> int:
        item = await obj_of(s, request, FeeItem, "fee_id")
        await set_fee_item_active(s, item.id, active, staff.username)
        return item.site_id

    site_id = await in_transaction(sessions(request), run)
    raise web.HTTPFound(f"/admin/sites/{site_id}/fees?done=fee_active")


async def apportion(request: web.Request) -> web.StreamResponse:
    async with db(request) as s:
        site = await site_of(s, request)
        groups = list(await s.scalars(select(ApportionGroup).where(ApportionGroup.site_id == site.id)
                                      .order_by(ApportionGroup.code)))
        members = list(await s.scalars(select(ApportionMember).where(
            ApportionMember.group_id.in_([g.id for g in groups])).order_by(ApportionMember.id)))
        runs = list(await s.scalars(select(ApportionRun).where(ApportionRun.site_id == site.id)
                                    .order_by(ApportionRun.id.desc()).limit(50)))
        extra = await _site_lists(s, site.id)
    by_group: dict[int, list[ApportionMember]] = {}
    for m in members:
        by_group.setdefault(m.group_id, []).append(m)
    return aiohttp_jinja2.render_template("manage/apportion.html", request, {
        "site": site, "groups": groups, "members": by_group, "runs": runs, "methods": METHODS,
        "collections": COLLECTIONS, **extra})


def members_of(text: str) -> list[dict[str, Any]]:
    """Lines of `room:<id>` or `meter:<id>`, each optionally `=<ratio>` (for the ratio method)."""
    out: list[dict[str, Any]] = []
    for n, raw in enumerate(text.replace("，", ",").replace(",", "\n").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        ref, _, ratio = line.partition("=")
        kind, _, ident = ref.strip().partition(":")
        try:
            key = {"room": "room_id", "meter": "meter_id"}[kind.strip().lower()]
            out.append({key: int(ident), "ratio": str(Decimal(ratio.strip() or "0"))})
        except (KeyError, ValueError, InvalidOperation):
            raise ServiceError(f"member line {n} ({line!r}): write room:<id> or meter:<id>, optionally =ratio") from None
    if not out:
        raise ServiceError("a group needs at least one member")
    return out


@require("account")
async def apportion_create(request: web.Request) -> web.StreamResponse:
    staff = request[STAFF]
    async with db(request) as s:
        site_id = (await site_of(s, request)).id
    form = await request.post()
    method, collection = forms.text(form, "method"), forms.text(form, "collection")
    if method not in METHODS or collection not in COLLECTIONS:
        raise ServiceError("method or collection not recognised")
    spec = {"code": forms.text(form, "code", max_len=40), "name": forms.text(form, "name", max_len=100),
            "master_meter_id": forms.integer(form, "master_meter_id"), "method": method, "collection": collection,
            "members": members_of(forms.text(form, "members", max_len=20_000))}

    async def run(s: AsyncSession) -> int:
        await _check_places(s, site_id, spec)
        return (await create_group(s, site_id, spec, staff.username)).id

    await in_transaction(sessions(request), run)
    raise web.HTTPFound(f"/admin/sites/{site_id}/apportion?done=apportion_create")


@require("account")
async def monthend(request: web.Request) -> web.StreamResponse:
    """Run month-end for one period now; the services make a re-run charge nothing twice."""
    staff = request[STAFF]
    async with db(request) as s:
        site = await site_of(s, request)
    site_id, text = site.id, forms.text(await request.post(), "period", max_len=7)
    try:
        period = parse_month(text)
    except (ValueError, PeriodError):
        raise ServiceError("period must be a month written YYYY-MM") from None
    if period.start > _site_today(site.timezone):
        raise ServiceError("a month that has not begun cannot be closed")
    result = await run_month_end(sessions(request), site_id, period, actor=staff.username)
    bills = result.bills
    raise web.HTTPFound(f"/admin/sites/{site_id}/bills?done=monthend&period={text}"
                        f"&created={bills.get('created', 0)}&deducted={result.fees.get('deducted', 0)}")


# -- postpaid bills and arrears --------------------------------------------------------------

BILL_STATUSES = ("draft", "confirmed", "issued", "partly_paid", "paid", "overdue", "void")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _site_today(tz: str) -> date:
    return datetime.now(ZoneInfo(tz)).date()


async def bills(request: web.Request) -> web.StreamResponse:
    q = request.query
    page = forms.opt_int(q.get("page")) or 1
    status = q.get("status") if q.get("status") in BILL_STATUSES else None
    period = _day(q.get("period_start"))
    async with db(request) as s:
        site = await site_of(s, request)
        rows = await list_bills(s, site.id, status=status, period_start=period, limit=PAGE, offset=(page - 1) * PAGE)
    return aiohttp_jinja2.render_template("manage/bills.html", request, {
        "site": site, "rows": rows, "q": q, "page": page, "size": PAGE, "statuses": BILL_STATUSES,
        "export_qs": request.query_string})


async def bills_export(request: web.Request) -> web.StreamResponse:
    q = request.query
    async with db(request) as s:
        site = await site_of(s, request)
        body = await bills_xlsx(s, site.id, period_start=_day(q.get("period_start")),
                                status=q.get("status") if q.get("status") in BILL_STATUSES else None)
    return _xlsx(body, f"bills-{site.code}-{_site_today(site.timezone).isoformat()}.xlsx")


async def bill(request: web.Request) -> web.StreamResponse:
    async with db(request) as s:
        row = await obj_of(s, request, Bill, "bill_id")
        data = await get_bill(s, row.id)
        site = await s.get(Site, row.site_id)
    return aiohttp_jinja2.render_template("manage/bill.html", request, {"site": site, "b": data})


@require("account")
async def bill_action(request: web.Request) -> web.StreamResponse:
    """confirm / reopen / issue / void one bill (each audited by services.postpaid in the same transaction)."""
    staff, action = request[STAFF], request.path.rsplit("/", 1)[-1]
    form = await request.post()

    async def run(s: AsyncSession) -> int:
        row = await obj_of(s, request, Bill, "bill_id")
        if action == "confirm":
            await confirm_bill(s, row.id, staff.username)
        elif action == "reopen":
            await reopen_bill(s, row.id, staff.username)
        elif action == "issue":
            site = await s.get(Site, row.site_id)
            await issue_bill(s, row.id, _site_today(site.timezone if site else "Asia/Shanghai"), staff.username)
        elif action == "void":
            await void_bill(s, row.id, forms.text(form, "reason", max_len=300), staff.username)
        else:
            raise NotFound("not found")
        return row.id

    bill_id = await in_transaction(sessions(request), run)
    raise web.HTTPFound(f"/admin/bills/{bill_id}?done=bill_{action}")


async def arrears_page(request: web.Request) -> web.StreamResponse:
    async with db(request) as s:
        site = await site_of(s, request)
        data = await arrears(s, site.id, _site_today(site.timezone))
    return aiohttp_jinja2.render_template("manage/arrears.html", request, {"site": site, "a": data})


async def arrears_export(request: web.Request) -> web.StreamResponse:
    async with db(request) as s:
        site = await site_of(s, request)
        today = _site_today(site.timezone)
        body = await arrears_xlsx(s, site.id, today)
    return _xlsx(body, f"arrears-{site.code}-{today.isoformat()}.xlsx")


def _xlsx(body: bytes, name: str) -> web.Response:
    return web.Response(body=body, headers={"Content-Type": XLSX, "Content-Disposition": f'attachment; filename="{name}"'})
