"""Batch pages: list and create tasks, watch one's progress live, retry its failed items, cancel it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from admin import forms
from admin.scope import db, obj_of, sessions, site_of
from admin.security import STAFF
from billing.money import Money
from services import batches
from services.batch_select import STATES, Selector
from services.errors import ServiceError
from services.uow import in_transaction
from store.models import BatchItem, BatchTask, Building, Floor, Meter, Tariff

# the permission each action needs (services.staff.PERMISSIONS)
PERMISSION = {"set_tariff": "tariff", "relay_off": "relay", "relay_on": "relay", "alert_amounts": "account",
              "time_sync": "relay", "recharge": "recharge"}
ITEMS_PAGE = 200


def _permit(request: web.Request, action: str) -> None:
    if not request[STAFF].can(PERMISSION.get(action, "users")):
        raise web.HTTPForbidden(text=f"your role may not run {action}")


def _params(action: str, form: Mapping[str, Any]) -> dict[str, Any]:
    if action == "set_tariff":
        return {"tariff_id": forms.integer(form, "param_tariff")}
    if action == "recharge":
        return {"amount": forms.money(form, "amount")}
    if action == "alert_amounts":
        levels = {k: Money.yuan(str(form.get(f"alert_{k}"))).fen for k in ("L1", "L2", "L3") if form.get(f"alert_{k}")}
        return {"thresholds_fen": levels}
    return {}


def _selector(site_id: int, form: Mapping[str, Any]) -> Selector:
    ids = tuple(int(x) for x in str(form.get("meter_ids") or "").replace("，", ",").replace(" ", ",").split(",")
                if x.strip().isdigit())
    return Selector(site_id, building_id=forms.opt_int(form.get("building_id")), floor_id=forms.opt_int(form.get("floor_id")),
                    tariff_id=forms.opt_int(form.get("tariff_id")), state=str(form.get("state") or "") or None,
                    utility=str(form.get("utility") or "") or None, meter_ids=ids)


def _run_at(value: str, tz: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=ZoneInfo(tz))
    except ValueError:
        raise ServiceError("run at: not a date and time") from None


async def batch_list(request: web.Request) -> web.StreamResponse:
    async with db(request) as s:
        site = await site_of(s, request)
        tasks = list(await s.scalars(select(BatchTask).where(BatchTask.site_id == site.id)
                                     .order_by(BatchTask.id.desc()).limit(100)))
        counts = {t.id: await batches.progress_counts(s, t.id) for t in tasks}
        buildings = list(await s.scalars(select(Building).where(Building.site_id == site.id).order_by(Building.name)))
        floors = list(await s.scalars(select(Floor).join(Building, Building.id == Floor.building_id)
                                      .where(Building.site_id == site.id).order_by(Floor.level)))
        tariffs = list(await s.scalars(select(Tariff).where(Tariff.site_id == site.id).order_by(Tariff.name)))
    return aiohttp_jinja2.render_template("reports/batches.html", request, {
        "site": site, "tasks": tasks, "counts": counts, "buildings": buildings, "floors": floors,
        "tariffs": tariffs, "states": STATES, "actions": list(PERMISSION)})


async def batch_create(request: web.Request) -> web.StreamResponse:
    form, staff = await request.post(), request[STAFF]
    action = forms.text(form, "action", max_len=30)
    _permit(request, action)
    params = _params(action, form)
    deadline_s = int(forms.opt_int(str(form.get("deadline_min") or "")) or 60) * 60

    async def run(s: AsyncSession) -> tuple[int, bool]:
        site = await site_of(s, request)
        run_at = _run_at(str(form.get("run_at") or ""), site.timezone)
        task = await batches.create_task(s, _selector(site.id, form), action, params, staff.username, run_at=run_at,
                                         name=forms.text(form, "name", required=False, max_len=200),
                                         deadline_s=deadline_s)
        return task.id, run_at is None

    task_id, now = await in_transaction(sessions(request), run)
    if now:  # "run now": queue the commands / apply the changes before answering
        await batches.run_task(sessions(request), task_id)
    raise web.HTTPFound(f"/admin/batches/{task_id}")


async def _task_of(s: AsyncSession, request: web.Request) -> BatchTask:
    return await obj_of(s, request, BatchTask, "task_id")


async def batch_page(request: web.Request) -> web.StreamResponse:
    state = request.query.get("state") or None
    async with db(request) as s:
        task = await _task_of(s, request)
        progress = await batches.progress(s, task.id)
        stmt = (select(BatchItem, Meter.address).join(Meter, Meter.id == BatchItem.meter_id)
                .where(BatchItem.task_id == task.id).order_by(BatchItem.id).limit(ITEMS_PAGE))
        if state:
            stmt = stmt.where(BatchItem.state == state)
        items = (await s.execute(stmt)).all()
    return aiohttp_jinja2.render_template("reports/batch.html", request, {
        "task": task, "p": progress, "items": items, "state": state, "site": None,
        "may": request[STAFF].can(PERMISSION.get(task.action, "users"))})


async def batch_progress(request: web.Request) -> web.StreamResponse:
    async with db(request) as s:
        task = await _task_of(s, request)
    await in_transaction(sessions(request), lambda s: batches.sync_items(s, task.id, datetime.now(ZoneInfo("UTC"))))
    async with db(request) as s:
        return web.json_response(await batches.progress(s, task.id))


async def _act(request: web.Request, verb: str) -> web.StreamResponse:
    staff = request[STAFF]

    async def run(s: AsyncSession) -> int:
        task = await _task_of(s, request)
        _permit(request, task.action)
        fn = batches.retry_failed if verb == "retry" else batches.cancel_task
        return await fn(s, task.id, staff.username)

    n = await in_transaction(sessions(request), run)
    task_id = int(request.match_info["task_id"])
    if verb == "retry" and n:
        await batches.run_task(sessions(request), task_id)
    raise web.HTTPFound(f"/admin/batches/{task_id}?done={verb}")


async def batch_retry(request: web.Request) -> web.StreamResponse:
    return await _act(request, "retry")


async def batch_cancel(request: web.Request) -> web.StreamResponse:
    return await _act(request, "cancel")


def add_batch_routes(admin: web.Application) -> None:
    r = admin.router
    r.add_get("/sites/{site_id}/batches", batch_list, name="admin.batches")
    r.add_post("/sites/{site_id}/batches", batch_create, name="admin.batch_create")
    r.add_get("/batches/{task_id}", batch_page, name="admin.batch")
    r.add_get("/batches/{task_id}/progress.json", batch_progress, name="admin.batch_progress")
    r.add_post("/batches/{task_id}/retry", batch_retry, name="admin.batch_retry")
    r.add_post("/batches/{task_id}/cancel", batch_cancel, name="admin.batch_cancel")
