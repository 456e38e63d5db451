"""Who is asking and may they: session sign-in, idle timeout, CSRF, roles, and errors as HTTP."""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from functools import wraps

from aiohttp import web
from aiohttp_session import Session, get_session

from admin.readdb import reads
from meterpay.web import SETTINGS
from services.errors import ServiceError
from services.staff import Staff, load_staff

log = logging.getLogger(__name__)
STAFF = web.RequestKey("staff", Staff)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PUBLIC = frozenset({"admin.login", "admin.static"})
DEFAULT_IDLE_S = 30 * 60


def idle_timeout_s(request: web.Request) -> int:
    return int(request.config_dict[SETTINGS].get("ADMIN_IDLE_TIMEOUT_S") or DEFAULT_IDLE_S)


def csrf_token(session: Session) -> str:
    """The session's CSRF token, made on first use; forms echo it back as `_csrf`."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


async def _csrf_ok(request: web.Request, session: Session) -> bool:
    expected = session.get("csrf")
    sent = request.headers.get("X-CSRF-Token")
    if sent is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        sent = (await request.post()).get("_csrf")
    return bool(expected) and isinstance(sent, str) and hmac.compare_digest(sent, str(expected))


def _route_name(request: web.Request) -> str | None:
    return request.match_info.route.name


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse unsafe methods without the CSRF token; require a live sign-in except on public routes."""
    session = await get_session(request)
    if request.method in UNSAFE and not await _csrf_ok(request, session):
        raise web.HTTPForbidden(text="CSRF token missing or wrong")
    if _route_name(request) in PUBLIC:
        return await handler(request)
    uid, seen = session.get("uid"), session.get("seen", 0)
    now = int(time.time())
    staff = None
    if uid is not None and now - int(seen) <= idle_timeout_s(request):
        async with reads(request) as db:
            staff = await load_staff(db, int(uid))
    if staff is None:
        if uid is not None:
            session.invalidate()
        if request.method in UNSAFE or request.headers.get("Accept") == "text/event-stream":
            raise web.HTTPUnauthorized(text="sign in first")
        raise web.HTTPFound(request.app.router["admin.login"].url_for().with_query(next=request.path_qs))
    if now - int(seen) > 30:  # refresh the idle clock without rewriting the cookie on every request
        session["seen"] = now
    request[STAFF] = staff
    return await handler(request)


def http_error(ex: ServiceError) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden,
           404: web.HTTPNotFound, 409: web.HTTPConflict}.get(ex.status, web.HTTPBadRequest)
    return cls(text=str(ex))


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A ServiceError raised by a view becomes its HTTP status with the message."""
    try:
        return await handler(request)
    except ServiceError as ex:
        raise http_error(ex) from ex


def require(permission: str) -> Callable[[Handler], Handler]:
    """A view decorator: 403 unless the signed-in user's role has `permission`."""

    def wrap(fn: Handler) -> Handler:
        @wraps(fn)
        async def inner(request: web.Request) -> web.StreamResponse:
            if not request[STAFF].can(permission):
                raise web.HTTPForbidden(text=f"your role may not {permission}")
            return await fn(request)

        inner.permission = permission  # type: ignore[attr-defined]
        return inner

    return wrap


async def sign_in(request: web.Request, staff: Staff) -> None:
    """A fresh session (no fixation), a fresh CSRF token."""
    from aiohttp_session import new_session

    lang = (await get_session(request)).get("lang")
    session = await new_session(request)
    session["uid"], session["seen"] = staff.id, int(time.time())
    session["lang"] = lang or staff.locale
    csrf_token(session)
