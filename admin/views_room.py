"""The room page and its actions: each action is one transaction with its audit entry."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web
from yarl import URL
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from admin import forms
from admin.detail import room_view, spark
from admin.scope import db, obj_of, sessions
from admin.security import STAFF, require
from billing.money import Money
from services import accounts, audit, relay, wallets
from services.errors import NotFound, ServiceError
from services.staff import scoped
from services.uow import in_transaction
from store.models import Account, Meter, MeterCommand, Order, Room, Tariff


async def room(request: web.Request) -> web.StreamResponse:
    async with db(request) as s:
        r = await obj_of(s, request, Room, "room_id")
        view = await room_view(s, r)
    charts = {mv.meter.id: spark(mv.daily) for mv in view.meters}
    return aiohttp_jinja2.render_template("room.html", request, {
        "v": view, "site": view.site, "charts": charts, "done": request.query.get("done"), "order_id": request.query.get("order")})


def _back(room_id: int, done: str, **extra: Any) -> web.HTTPFound:
    query = {"done": done, **{k: str(v) for k, v in extra.items()}}
    return web.HTTPFound(str(URL(f"/admin/rooms/{room_id}").with_query(query)))


async def _room_of_account(s: AsyncSession, acc: Account) -> int:
    rid = await s.scalar(select(Meter.room_id).where(Meter.account_id == acc.id, Meter.room_id.is_not(None)).limit(1))
    return int(rid or 0)


@require("account")
async def open_account(request: web.Request) -> web.StreamResponse:
    form, staff = await request.post(), request[STAFF]
    meter_ids = tuple(int(x) for x in form.getall("meter_id", []) if str(x).isdigit())
    overdraft = Money.yuan(forms.text(form, "overdraft", required=False) or "0")

    async def run(s: AsyncSession) -> tuple[int, int]:
        r = await obj_of(s, request, Room, "room_id")
        own = set(await s.scalars(select(Meter.id).where(Meter.room_id == r.id)))
        if not meter_ids or not set(meter_ids) <= own:
            raise NotFound("meter not in this room")
        cmd = accounts.OpenAccount(site_id=r.site_id, tenant_name=forms.text(form, "tenant_name", max_len=100),
                                   tenant_phone=forms.text(form, "tenant_phone", max_len=20), meter_ids=meter_ids,
                                   balance_model=forms.text(form, "balance_model"),
                                   payment_mode=forms.text(form, "payment_mode"), overdraft=overdraft)
        acc = await accounts.open_account(s, cmd, actor=staff.username)
        await audit.record(s, staff.username, "account.open", "account", acc.id, None,
                           {"code": acc.code, "meters": list(meter_ids), "tenant": cmd.tenant_name,
                            "balance_model": cmd.balance_model, "payment_mode": cmd.payment_mode},
                           site_id=r.site_id)
        return r.id, acc.id

    room_id, _ = await in_transaction(sessions(request), run)
    raise _back(room_id, "open_account")


async def _money_action(request: web.Request, kind: str) -> web.StreamResponse:
    form, staff = await request.post(), request[STAFF]
    amount, key = forms.money(form, "amount"), f"admin:{forms.key(form)}"
    note = forms.text(form, "note", required=False) or None

    async def run(s: AsyncSession) -> tuple[int, int]:
        acc = await obj_of(s, request, Account, "account_id")
        if await s.scalar(select(Order.id).where(Order.idempotency_key == key)) is not None:
            order = await s.scalar(select(Order).where(Order.idempotency_key == key))
            assert order is not None
            if order.account_id != acc.id:
                raise ServiceError("this form was already used for another account")
            return await _room_of_account(s, acc), order.id  # a double click: already done, once
        before = await wallets.account_balance(s, acc)
        if kind == "recharge":
            order = await wallets.recharge(s, acc.id, amount, key, provider="cash", actor=staff.username)
        else:
            order = await wallets.refund(s, acc.id, amount, key, provider="cash", actor=staff.username, note=note)
        after = await wallets.account_balance(s, acc)
        await audit.record(s, staff.username, f"account.{kind}", "account", acc.id, {"balance_fen": before},
                           {"balance_fen": after, "amount_fen": amount.fen, "order": order.out_trade_no},
                           reason=note, site_id=acc.site_id)
        return await _room_of_account(s, acc), order.id

    room_id, order_id = await in_transaction(sessions(request), run)
    raise _back(room_id, kind, order=order_id)


@require("recharge")
async def recharge(request: web.Request) -> web.StreamResponse:
    return await _money_action(request, "recharge")


@require("refund")
async def refund(request: web.Request) -> web.StreamResponse:
    return await _money_action(request, "refund")


@require("account")
async def close(request: web.Request) -> web.StreamResponse:
    form, staff = await request.post(), request[STAFF]
    reason = forms.text(form, "reason")

    async def run(s: AsyncSession) -> int:
        acc = await obj_of(s, request, Account, "account_id")
        room_id = await _room_of_account(s, acc)
        before = await wallets.account_balance(s, acc)
        await accounts.close_account(s, acc.id, [], actor=staff.username)
        await audit.record(s, staff.username, "account.close", "account", acc.id,
                           {"state": "open", "balance_fen": before}, {"state": "closed"}, reason=reason,
                           site_id=acc.site_id)
        return room_id

    raise _back(await in_transaction(sessions(request), run), "close_account")


@require("tariff")
async def set_tariff(request: web.Request) -> web.StreamResponse:
    form, staff = await request.post(), request[STAFF]
    tariff_id = forms.integer(form, "tariff_id")

    async def run(s: AsyncSession) -> int:
        m = await obj_of(s, request, Meter, "meter_id")
        t = await scoped(s, Tariff, tariff_id, staff)
        if t.site_id != m.site_id or t.utility != m.utility:
            raise NotFound("no such tariff for this meter")
        before, m.tariff_id = m.tariff_id, t.id
        await audit.record(s, staff.username, "meter.set_tariff", "meter", m.id, {"tariff_id": before},
                           {"tariff_id": t.id, "tariff": t.name}, site_id=m.site_id)
        return m.room_id or 0

    raise _back(await in_transaction(sessions(request), run), "set_tariff")


def _relay_kind(m: Meter, action: str) -> str:
    table = relay.OFF_KIND if action == "off" else relay.ON_KIND if action == "on" else None
    if table is None:
        raise ServiceError("action must be on or off")
    return table[m.utility]


@require("relay")
async def relay_confirm(request: web.Request) -> web.StreamResponse:
    async with db(request) as s:
        m = await obj_of(s, request, Meter, "meter_id")
    action = request.query.get("action", "")
    return aiohttp_jinja2.render_template("relay_confirm.html", request,
                                          {"m": m, "action": action, "kind": _relay_kind(m, action)})


@require("relay")
async def relay_switch(request: web.Request) -> web.StreamResponse:
    form, staff = await request.post(), request[STAFF]
    action, reason, key = forms.text(form, "action"), forms.text(form, "reason", max_len=200), f"admin:{forms.key(form)}"
    if form.get("confirm") != "yes":
        raise ServiceError("switching needs the confirmation step")

    async def run(s: AsyncSession) -> int:
        m = await obj_of(s, request, Meter, "meter_id")
        kind = _relay_kind(m, action)
        if await s.scalar(select(MeterCommand.id).where(MeterCommand.key == key)) is not None:
            return m.room_id or 0
        cmd = await relay.queue_command(s, m.id, kind, key, reason=reason, actor=staff.username,
                                        gateway_id=m.gateway_id)
        await audit.record(s, staff.username, f"meter.{kind}", "meter", m.id, {"relay_closed": m.relay_closed},
                           {"command_id": cmd.id, "command": kind, "state": cmd.state}, reason=reason,
                           site_id=m.site_id)
        return m.room_id or 0

    raise _back(await in_transaction(sessions(request), run), "relay")



