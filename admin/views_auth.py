"""Sign-in, sign-out, language, and the landing redirect."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session

from admin.i18n import LANGS
from admin.security import STAFF, sign_in
from meterpay.web import SESSIONS
from services.staff import SignInRefused, authenticate


def _safe_next(value: object) -> str:
    """Only a local /admin/ path may follow sign-in (no open redirect)."""
    text = str(value or "")
    return text if text.startswith("/admin/") and not text.startswith("//") and "\\" not in text else "/admin/"


async def index(request: web.Request) -> web.StreamResponse:
    staff = request[STAFF]
    if not staff.site_ids:
        raise web.HTTPForbidden(text="no site assigned")
    raise web.HTTPFound(f"/admin/sites/{staff.site_ids[0]}/rooms")


async def login(request: web.Request) -> web.StreamResponse:
    if request.method == "GET":
        return aiohttp_jinja2.render_template("login.html", request, {"error": False,
                                                                      "next": _safe_next(request.query.get("next"))})
    if request.method != "POST":
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
    form = await request.post()
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    async with request.config_dict[SESSIONS]() as db:
        try:
            staff = await authenticate(db, username, password)
        except SignInRefused:
            await db.commit()  # keep the failure count and any lock
            return aiohttp_jinja2.render_template("login.html", request, {"error": True, "next": "/admin/"},
                                                  status=401)
        await db.commit()
    await sign_in(request, staff)
    raise web.HTTPFound(_safe_next(form.get("next")))


async def logout(request: web.Request) -> web.StreamResponse:
    (await get_session(request)).invalidate()
    raise web.HTTPFound("/admin/login")


async def set_lang(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    lang = str(form.get("lang", ""))
    if lang in LANGS:
        (await get_session(request))["lang"] = lang
    raise web.HTTPFound(_safe_next(form.get("back")))
