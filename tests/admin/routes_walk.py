"""Walking the panel's router: every route, its method, and a URL for it filled with one site's ids."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from aiohttp import web

from admin import ADMIN
from tests.admin.conftest import SiteIds

PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str  # with {placeholders}


def routes(app: web.Application) -> list[Route]:
    out = []
    for r in app[ADMIN].router.routes():
        info = r.resource.get_info() if r.resource else {}
        path = info.get("formatter") or info.get("path") or ""
        if r.name == "admin.static" or not path or r.method == "HEAD":
            continue
        for method in (("GET", "POST") if r.method == "*" else (r.method,)):
            out.append(Route(r.name or "", method, path))
    return out


def known(route: Route) -> bool:
    """Whether `fill` knows an object for every placeholder (routes other entrypoints add may not)."""
    return all(name in KNOWN for name in PLACEHOLDER.findall(route.path))


KNOWN = ("site_id", "room_id", "account_id", "meter_id", "tariff_id", "order_id", "user_id")


def fill(route: Route, ids: SiteIds, user_id: int) -> str:
    values = {"site_id": ids.site, "room_id": ids.room, "account_id": ids.account, "meter_id": ids.meter,
              "tariff_id": ids.tariff, "order_id": ids.order, "user_id": user_id}
    return PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), 1)), route.path)


def full_form(ids: SiteIds, csrf: str | None) -> dict[str, str]:
    """A form that every action would accept, so only scoping, roles or CSRF can refuse it."""
    form = {"amount": "1.00", "idem": uuid.uuid4().hex, "note": "n", "reason": "test", "action": "off",
            "confirm": "yes", "tariff_id": str(ids.tariff), "tenant_name": "T", "tenant_phone": "13900000009",
            "balance_model": "merged", "payment_mode": "prepaid", "meter_id": str(ids.vacant_meter),
            "spec": '{"kind": "flat", "price": "1.20"}', "effective_from": "2031-01-01",
            "name": f"t-{uuid.uuid4().hex[:6]}", "utility": "electricity", "username": f"u{uuid.uuid4().hex[:8]}",
            "password": "secret-pw", "role": "viewer", "site_id": str(ids.site), "lang": "en", "back": "/admin/"}
    if csrf is not None:
        form["_csrf"] = csrf
    return form
