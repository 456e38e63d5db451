"""Orders: the filtered list, its Excel export, and a printable cash-desk receipt."""

from __future__ import annotations

import io
from datetime import date, timedelta
from typing import Any, Mapping

import aiohttp_jinja2
from aiohttp import web
from openpyxl import Workbook
from sqlalchemy import Select, select

from admin import forms
from admin.scope import db, obj_of, site_of
from admin.templating import local, yuan
from admin.views_manage import _day, _local_midnight
from store.models import Account, Order, Site, Tenant

PAGE = 100
EXPORT_MAX = 100_000


def _orders(site: Site, q: Mapping[str, str]) -> Select[Any]:
    stmt = (select(Order, Account.code, Tenant.name).join(Account, Account.id == Order.account_id)
            .join(Tenant, Tenant.id == Account.tenant_id).where(Order.site_id == site.id))
    for field, col in (("kind", Order.kind), ("provider", Order.provider), ("state", Order.state)):
        if q.get(field):
            stmt = stmt.where(col == q[field])
    if q.get("account"):
        stmt = stmt.where(Account.code == q["account"])
    if (d := _day(q.get("from"))) is not None:
        stmt = stmt.where(Order.created_at >= _local_midnight(d, site.timezone))
    if (d := _day(q.get("to"))) is not None:
        stmt = stmt.where(Order.created_at < _local_midnight(d + timedelta(days=1), site.timezone))
    return stmt.order_by(Order.id.desc())


async def orders(request: web.Request) -> web.StreamResponse:
    page = forms.opt_int(request.query.get("page")) or 1
    async with db(request) as s:
        site = await site_of(s, request)
        rows = (await s.execute(_orders(site, request.query).limit(PAGE).offset((page - 1) * PAGE))).all()
    return aiohttp_jinja2.render_template("orders.html", request, {
        "site": site, "rows": rows, "q": request.query, "page": page, "size": PAGE,
        "export_qs": request.query_string})


HEADERS = ("order no.", "time", "kind", "provider", "state", "account", "tenant", "amount (yuan)", "actor")


async def orders_xlsx(request: web.Request) -> web.StreamResponse:
    async with db(request) as s:
        site = await site_of(s, request)
        rows = (await s.execute(_orders(site, request.query).limit(EXPORT_MAX))).all()
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("orders")
    ws.append(list(HEADERS))
    for order, code, tenant in rows:
        # amounts as text "12.34": exact, never a float in the sheet
        ws.append([order.out_trade_no, local(order.created_at, site.timezone), order.kind, order.provider,
                   order.state, code, tenant, yuan(order.amount_fen), order.actor or ""])
    buf = io.BytesIO()
    wb.save(buf)
    name = f"orders-{site.code}-{date.today().isoformat()}.xlsx"
    return web.Response(body=buf.getvalue(), headers={
        "Content-Type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "Content-Disposition": f'attachment; filename="{name}"'})


async def receipt(request: web.Request) -> web.StreamResponse:
    async with db(request) as s:
        order = await obj_of(s, request, Order, "order_id")
        acc = await s.get(Account, order.account_id)
        tenant = await s.get(Tenant, acc.tenant_id) if acc else None
        site = await s.get(Site, order.site_id)
    return aiohttp_jinja2.render_template("receipt.html", request,
                                          {"o": order, "acc": acc, "tenant": tenant, "site": site})
