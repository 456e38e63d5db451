"""Finance, report and batch pages of the staff panel: parse the query, call a service, render.

Mounted on the admin sub-application by `setup_reports_routes(admin_subapp)`:
/admin/sites/{id}/finance, /finance/entries, /finance/cash, /finance.xlsx,
/admin/sites/{id}/reports/monthly(.xlsx), /admin/meters/{id}/energy(.xlsx),
/admin/sites/{id}/batches, /admin/batches/{id} (+ progress.json, retry, cancel).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Mapping
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy import select

from admin import forms
from admin.batch_views import add_batch_routes
from admin.scope import db, obj_of, site_of
from admin.security import STAFF
from services import finance_reports as finance
from services import reports, xlsx
from services.errors import ServiceError
from store.models import Meter, Site

CHART_W, CHART_H = 640, 140


def local_today(site: Site) -> date:
    return datetime.now(ZoneInfo(site.timezone)).date()


def parse_day(value: str | None, default: date) -> date:
    try:
        return date.fromisoformat(value) if value else default
    except ValueError:
        raise ServiceError(f"not a date: {value!r} (YYYY-MM-DD)") from None


def parse_month(value: str | None, default: date) -> date:
    try:
        return date.fromisoformat(f"{value}-01") if value else default.replace(day=1)
    except ValueError:
        raise ServiceError(f"not a month: {value!r} (YYYY-MM)") from None


def bars(points: list[tuple[str, int]], width: int = CHART_W, height: int = CHART_H) -> dict[str, Any]:
    """Bars for an inline SVG chart (no script needed, prints as it shows)."""
    top = max((abs(v) for _, v in points), default=0) or 1
    w = width / max(1, len(points))
    out = [{"x": round(i * w + 1, 1), "w": round(max(w - 2, 1), 1), "h": round(abs(v) / top * (height - 20), 1),
            "y": round(height - abs(v) / top * (height - 20), 1), "label": k, "v": v} for i, (k, v) in enumerate(points)]
    return {"bars": out, "max": top, "width": width, "height": height}


def xlsx_response(body: bytes, name: str) -> web.Response:
    return web.Response(body=body, headers={"Content-Type": xlsx.MIME,
                                            "Content-Disposition": f'attachment; filename="{name}"'})


def _span(site: Site, q: Mapping[str, str]) -> tuple[date, date, str]:
    today = local_today(site)
    start = parse_day(q.get("from"), today.replace(day=1))
    end = parse_day(q.get("to"), today) + timedelta(days=1)
    gran = q.get("g") or "day"
    return start, end, gran


async def finance_page(request: web.Request) -> web.StreamResponse:
    async with db(request) as s:
        site = await site_of(s, request)
        start, end, gran = _span(site, request.query)
        inc = await finance.income(s, site.id, start, end, gran)
    per_period = [(p, v) for p, v in zip(inc.periods, inc.per_period(inc.by_channel, inc.periods))]
    return aiohttp_jinja2.render_template("reports/finance.html", request, {
        "site": site, "inc": inc, "start": start, "end": end - timedelta(days=1), "g": gran,
        "income_chart": bars(per_period), "ch_totals": inc.totals(inc.by_channel), "ut_totals": inc.totals(inc.by_utility),
        "qs": request.query_string})


async def finance_xlsx(request: web.Request) -> web.StreamResponse:
    async with db(request) as s:
        site = await site_of(s, request)
        start, end, gran = _span(site, request.query)
        inc = await finance.income(s, site.id, start, end, gran)
    return xlsx_response(xlsx.income_xlsx(inc), f"income-{site.code}-{start}-{end - timedelta(days=1)}.xlsx")


async def finance_entries(request: web.Request) -> web.StreamResponse:
    q, page = request.query, forms.opt_int(request.query.get("page")) or 1
    async with db(request) as s:
        site = await site_of(s, request)
        start = parse_day(q["from"], date.min) if q.get("from") else None
        end = parse_day(q["to"], date.min) + timedelta(days=1) if q.get("to") else None
        rows = await finance.entries(s, site.id, start, end, q.get("kind") or None, limit=100, offset=(page - 1) * 100)
        kinds = await finance.entry_kinds(s, site.id)
    return aiohttp_jinja2.render_template("reports/entries.html", request, {
        "site": site, "rows": rows, "kinds": kinds, "q": q, "page": page})


async def finance_cash(request: web.Request) -> web.StreamResponse:
    async with db(request) as s:
        site = await site_of(s, request)
        day = parse_day(request.query.get("day"), local_today(site))
        lines = await finance.cash_reconciliation(s, site.id, day)
    return aiohttp_jinja2.render_template("reports/cash.html", request, {"site": site, "day": day, "lines": lines})


async def _monthly(request: web.Request) -> tuple[Site, reports.MonthlyReport]:
    async with db(request) as s:
        site = await site_of(s, request)
        month = parse_month(request.query.get("month"), local_today(site))
        return site, await reports.monthly_report(s, site.id, month)


async def monthly_page(request: web.Request) -> web.StreamResponse:
    site, report = await _monthly(request)
    async with db(request) as s:
        days = await reports.site_days(s, site.id, report.month)
        year = await reports.site_year(s, site.id, report.month.year)
    charts = {u: bars([(d, q) for d, q, _ in rows]) for u, rows in days.items()}
    return aiohttp_jinja2.render_template("reports/monthly.html", request, {
        "site": site, "r": report, "charts": charts, "year": year, "utilities": reports.UTILITIES,
        "print": request.query.get("print") == "1"})


async def monthly_xlsx(request: web.Request) -> web.StreamResponse:
    site, report = await _monthly(request)
    return xlsx_response(xlsx.monthly_report_xlsx(report), f"monthly-{site.code}-{report.label}.xlsx")


async def _energy(request: web.Request) -> tuple[Meter, Site, str, date, date, list[reports.Point]]:
    q = request.query
    async with db(request) as s:
        meter = await obj_of(s, request, Meter, "meter_id")
        site = await s.get(Site, meter.site_id)
        assert site is not None
        gran = q.get("g") or "day"
        today = local_today(site)
        default_start = {"day": today - timedelta(days=30), "month": today.replace(month=1, day=1),
                         "year": today.replace(year=today.year - 4, month=1, day=1)}.get(gran, today)
        start = parse_day(q.get("from"), default_start)
        end = parse_day(q.get("to"), today) + timedelta(days=1)
        points = await reports.meter_series(s, meter.id, gran, start, end)
    return meter, site, gran, start, end, points


async def energy_page(request: web.Request) -> web.StreamResponse:
    meter, site, gran, start, end, points = await _energy(request)
    return aiohttp_jinja2.render_template("reports/energy.html", request, {
        "site": site, "meter": meter, "g": gran, "start": start, "end": end - timedelta(days=1), "points": points,
        "series_chart": bars([(p.label, p.usage.quantity) for p in points]), "qs": request.query_string})


async def energy_xlsx(request: web.Request) -> web.StreamResponse:
    meter, site, gran, start, _, points = await _energy(request)
    body = xlsx.series_xlsx(f"meter {meter.address} by {gran}", meter.utility, points)
    return xlsx_response(body, f"energy-{site.code}-{meter.id}-{gran}-{start}.xlsx")


async def meter_pick(request: web.Request) -> web.StreamResponse:
    """The reports index for a site: pick a month, or a meter for its energy pages."""
    async with db(request) as s:
        site = await site_of(s, request)
        meters = list(await s.scalars(select(Meter).where(Meter.site_id == site.id).order_by(Meter.id).limit(2000)))
    return aiohttp_jinja2.render_template("reports/index.html", request, {
        "site": site, "meters": meters, "month": local_today(site).strftime("%Y-%m"), "staff": request[STAFF]})


def setup_reports_routes(admin: web.Application) -> None:
    """Add the finance, report and batch pages to the admin sub-application (before it starts)."""
    r = admin.router
    r.add_get("/sites/{site_id}/finance", finance_page, name="admin.finance")
    r.add_get("/sites/{site_id}/finance.xlsx", finance_xlsx, name="admin.finance_xlsx")
    r.add_get("/sites/{site_id}/finance/entries", finance_entries, name="admin.finance_entries")
    r.add_get("/sites/{site_id}/finance/cash", finance_cash, name="admin.finance_cash")
    r.add_get("/sites/{site_id}/reports", meter_pick, name="admin.reports")
    r.add_get("/sites/{site_id}/reports/monthly", monthly_page, name="admin.report_monthly")
    r.add_get("/sites/{site_id}/reports/monthly.xlsx", monthly_xlsx, name="admin.report_monthly_xlsx")
    r.add_get("/meters/{meter_id}/energy", energy_page, name="admin.energy")
    r.add_get("/meters/{meter_id}/energy.xlsx", energy_xlsx, name="admin.energy_xlsx")
    add_batch_routes(admin)
