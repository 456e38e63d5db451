"""The notification delivery log of a site: what was sent to whom, on which channel, and what failed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Mapping

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import Select, select

from admin import forms
from admin.scope import db, site_of
from admin.views_manage import _day, _local_midnight
from store.models import Delivery, Site

PAGE = 100
STATUSES = ("queued", "sending", "sent", "failed", "skipped")
CHANNELS = ("sms", "voice", "email", "wechat_template", "wechat_subscribe", "push")


def _deliveries(site: Site, q: Mapping[str, str]) -> Select[Any]:
    stmt = select(Delivery).where(Delivery.site_id == site.id)
    if q.get("status"):
        stmt = stmt.where(Delivery.status == q["status"])
    if q.get("channel"):
        stmt = stmt.where(Delivery.channel == q["channel"])
    if q.get("kind"):
        stmt = stmt.where(Delivery.kind == q["kind"])
    if (d := _day(q.get("from"))) is not None:
        stmt = stmt.where(Delivery.created_at >= _local_midnight(d, site.timezone))
    if (d := _day(q.get("to"))) is not None:
        stmt = stmt.where(Delivery.created_at < _local_midnight(d + timedelta(days=1), site.timezone))
    return stmt.order_by(Delivery.id.desc())


async def deliveries(request: web.Request) -> web.StreamResponse:
    page = forms.opt_int(request.query.get("page")) or 1
    async with db(request) as s:
        site = await site_of(s, request)
        rows = list(await s.scalars(_deliveries(site, request.query).limit(PAGE).offset((page - 1) * PAGE)))
    return aiohttp_jinja2.render_template("manage/deliveries.html", request, {
        "site": site, "rows": rows, "q": request.query, "page": page, "size": PAGE,
        "statuses": STATUSES, "channels": CHANNELS})
