"""The staff panel under /admin/: server-rendered pages over the same services as everything else."""

from __future__ import annotations

from collections.abc import Callable

import base64
import hashlib
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import setup as setup_session
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from admin.readdb import reads_ctx
from admin.routes import add_routes
from admin.security import errors, guard
from admin.templating import context, filters
from admin.views_monitor import states_ctx
from meterpay.web import SETTINGS

HERE = Path(__file__).parent
ADMIN = web.AppKey("admin", web.Application)


def session_key(secret_key: str) -> str:
    """A Fernet key (as str, which aiohttp-session wants) derived from SECRET_KEY for this purpose only."""
    digest = hashlib.sha256(b"meterpay/admin-session\x00" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def build_admin(parent: web.Application) -> web.Application:
    settings = parent[SETTINGS]
    sub = web.Application(middlewares=[errors])
    storage = EncryptedCookieStorage(session_key(settings.secret_key), cookie_name="meterpay_admin",
                                     path="/admin", httponly=True, samesite="Lax",
                                     secure=settings.public_url.startswith("https://"))
    setup_session(sub, storage)
    sub.middlewares.append(guard)
    aiohttp_jinja2.setup(sub, loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                         context_processors=[context], filters=filters(), default_helpers=True)
    sub.cleanup_ctx.append(reads_ctx(settings.database_url))
    # after reads_ctx, so stopped before its engine is disposed; ADMIN_STATES_MAX_AGE_S: see admin.monitor
    sub.cleanup_ctx.append(states_ctx(float(settings.get("ADMIN_STATES_MAX_AGE_S") or 2.0)))
    add_routes(sub, HERE / "static")
    return sub


def setup_admin(app: web.Application,
                extra: "tuple[Callable[[web.Application], None], ...]" = ()) -> web.Application:
    """Mount the staff panel at /admin/ on the main application (once); returns the sub-application.

    `extra` adds more pages (reports, finance, batches) to the sub-application before it is
    mounted, since a mounted sub-application's router is frozen.
    """
    if ADMIN in app:
        return app[ADMIN]
    sub = build_admin(app)
    for add_pages in extra:
        add_pages(sub)
    app.add_subapp("/admin/", sub)
    app[ADMIN] = sub
    app.router.add_get("/admin", _slash)
    return sub


async def _slash(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/admin/")
