"""What every template gets: the translator, the CSRF token, the signed-in user, money formatting."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Callable
from zoneinfo import ZoneInfo

from aiohttp import web
from aiohttp_session import get_session

from admin.i18n import norm, translate
from admin.security import STAFF, csrf_token
from billing.money import Money

SHANGHAI = ZoneInfo("Asia/Shanghai")


def yuan(fen: int | None) -> str:
    return "—" if fen is None else Money(int(fen)).to_yuan_str()


def local(dt: datetime | None, tz: str = "Asia/Shanghai") -> str:
    return "—" if dt is None else dt.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S")


def as_json(value: Any) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def filters() -> dict[str, Callable[..., str]]:
    return {"yuan": yuan, "local": local, "as_json": as_json}


async def context(request: web.Request) -> dict[str, Any]:
    session = await get_session(request)
    lang = norm(session.get("lang"))
    staff = request.get(STAFF)
    return {"_": lambda key: translate(key, lang), "lang": lang, "csrf": csrf_token(session), "staff": staff,
            "request": request,
            "new_key": lambda: uuid.uuid4().hex}
