"""Site scoping for views: an object of a site the user does not have is simply not found."""

from __future__ import annotations

from typing import Any, TypeVar

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from admin.readdb import reads
from admin.security import STAFF
from meterpay.web import SESSIONS
from services.errors import NotFound
from services.staff import scoped
from store.models import Site

T = TypeVar("T")


def db(request: web.Request) -> AsyncSession:
    """A session for a page's reads (writes go through `sessions(request)` and in_transaction)."""
    return reads(request)


def sessions(request: web.Request) -> Any:
    return request.config_dict[SESSIONS]


async def site_of(session: AsyncSession, request: web.Request, key: str = "site_id") -> Site:
    """The site named in the URL, if the user has it; NotFound otherwise (404)."""
    staff = request[STAFF]
    try:
        site_id = int(request.match_info[key])
    except ValueError:
        raise NotFound("not found") from None
    if site_id not in staff.site_ids:
        raise NotFound("not found")
    site = await session.get(Site, site_id)
    if site is None:
        raise NotFound("not found")
    return site


async def obj_of(session: AsyncSession, request: web.Request, model: type[T], key: str) -> T:
    return await scoped(session, model, request.match_info[key], request[STAFF])
