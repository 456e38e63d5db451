"""The security sweep: every route of the whole app is in admin/route_roles.py, and access is exactly as it says.

Walked as anonymous, as each staff role (owner / operator / cashier / viewer) and as a tenant with
an API token. Unsafe staff requests carry the session's CSRF token, so only sign-in and role
decide. Signed routes (provider notifies, /wechat) and pay links are refused to everyone who
does not hold the key or the link; their signed paths are tested in payments/, bot/ and tenant/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiohttp import web
from aiohttp.test_utils import TestClient

from admin.route_roles import ROUTES, Access, table_markdown
from api import tokens
from meterpay.web import init_app
from services.staff import PERMISSIONS
from services.tenant import pay_signature
from tests.admin.conftest import csrf_of, sign_in
from tests.admin.routes_walk import KNOWN, PLACEHOLDER, full_form

IDENTITIES = ("anonymous", "viewer", "cashier", "operator", "owner", "tenant")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    permission: str | None


def app_routes(app: web.Application, prefix: str = "") -> list[Route]:
    """Every (method, path) the application serves, sub-applications included; HEAD is GET's twin."""
    out = []
    for r in app.router.routes():
        info = r.resource.get_info() if r.resource else {}
        if "app" in info:
            out += app_routes(info["app"], prefix + info["prefix"].rstrip("/"))
            continue
        path = prefix + (info.get("formatter") or info.get("path") or info.get("prefix") or "")
        for method in (("GET", "POST") if r.method == "*" else (r.method,)):
            if method != "HEAD":
                out.append(Route(method, path, getattr(r.handler, "permission", None)))
    return out


def test_every_route_of_the_application_is_in_the_table(full_settings):
    served = {(r.method, r.path) for r in app_routes(init_app(full_settings))}
    assert served - ROUTES.keys() == set(), "routes missing from admin/route_roles.py"
    assert ROUTES.keys() - served == set(), "routes in admin/route_roles.py that the app does not serve"
    assert table_markdown().count("\n") == len(ROUTES) + 1


def test_the_table_agrees_with_each_views_declared_permission(full_settings):
    for r in app_routes(init_app(full_settings)):
        if r.permission is not None:
            assert ROUTES[(r.method, r.path)].roles == PERMISSIONS[r.permission], (r, r.permission)


def _fill(path: str, ids, user_id: int, task_id: int) -> str:  # type: ignore[no-untyped-def]
    values = {"site_id": ids.site, "room_id": ids.room, "account_id": ids.account, "meter_id": ids.meter,
              "tariff_id": ids.tariff, "order_id": ids.order, "user_id": user_id, "task_id": task_id,
              "provider": "alipay", "order_no": "P000000000", "fee_id": 999_999, "bill_id": 999_999}
    assert set(PLACEHOLDER.findall(path)) <= set(values) | set(KNOWN), path
    if path == "/admin/static":
        return "/admin/static/admin.css"
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), path)


class Caller:
    """One identity's client: a staff session with its CSRF token, a tenant token, or nothing."""

    def __init__(self, client: TestClient, identity: str, csrf: str | None, headers: dict[str, str]) -> None:
        self.client, self.identity, self.csrf, self.headers = client, identity, csrf, headers

    async def call(self, method: str, url: str, form: dict[str, str]) -> tuple[int, str, bytes]:
        headers = dict(self.headers)
        if self.csrf and method not in ("GET", "HEAD"):
            headers["X-CSRF-Token"] = self.csrf
        data = {**form, "_csrf": self.csrf} if self.csrf else form
        kwargs = {"data": data} if method == "POST" else {}
        if url.endswith("/stream"):
            headers["Accept"] = "text/event-stream"
        async with self.client.request(method, url, headers=headers, allow_redirects=False, **kwargs) as resp:
            body = b"" if url.endswith("/stream") else await resp.read()
            return resp.status, resp.headers.get("Location", ""), body


def refused(access: Access, method: str, status: int, location: str, body: bytes) -> bool:
    """Whether the answer turned the caller away for lack of identity, key or link.

    The panel answers an anonymous GET with a redirect to its sign-in page and an anonymous POST
    with 401; a signed-in user without the permission gets 403. The sign-in form itself answers
    wrong credentials with 401, which is its answer, not a refusal of the route.
    """
    if access.kind == "signature":
        return status in (400, 401, 403) or body.strip() in (b"failure", b"fail") or b'"FAIL"' in body
    if access.kind == "public":
        return status in (302, 303) and "/admin/login" in location
    if status in (401, 403):
        return True
    return method == "GET" and status in (302, 303) and "/admin/login" in location


async def _caller(aiohttp_client, settings, identity: str) -> Caller:  # type: ignore[no-untyped-def]
    client = await aiohttp_client(init_app(settings))
    if identity in ("anonymous", "tenant"):
        csrf = await csrf_of(client)  # a CSRF token without a sign-in: only the identity is missing
        token = tokens.issue(settings.secret_key, "o-sweep-tenant", 600)
        return Caller(client, identity, csrf, {"Authorization": f"Bearer {token}"} if identity == "tenant" else {})
    return Caller(client, identity, await sign_in(client, identity), {})


async def _batch_task(caller: Caller, world) -> int:  # type: ignore[no-untyped-def]
    form = {"action": "recharge", "amount": "1.00", "meter_ids": str(world.a.meter), "name": "sweep"}
    status, location, _ = await caller.call("POST", f"/admin/sites/{world.a.site}/batches", form)
    assert status == 302, status
    return int(re.search(r"/admin/batches/(\d+)", location).group(1))  # type: ignore[union-attr]


async def test_each_identity_reaches_exactly_the_routes_the_table_allows(aiohttp_client, full_settings, world):
    callers = {i: await _caller(aiohttp_client, full_settings, i) for i in IDENTITIES}
    task_id = await _batch_task(callers["owner"], world)
    wrong = []
    order = sorted(ROUTES.items(), key=lambda kv: kv[0][1] in ("/admin/logout",))  # sign-outs last
    for (method, path), access in order:
        url = _fill(path, world.a, world.users["viewer"], task_id)
        form = full_form(world.a, None) | ({"action": "recharge"} if "batches" in path else {})
        for identity, caller in callers.items():
            status, location, body = await caller.call(method, url, form)
            assert status < 500, (identity, method, url, status, body[:300])
            expected_refused = not access.allows(identity)
            if refused(access, method, status, location, body) != expected_refused:
                wrong.append((identity, method, url, status, location))
    assert wrong == [], "\n".join(map(str, wrong))


async def test_a_signed_pay_link_opens_the_pay_page_and_a_forged_one_does_not(aiohttp_client, full_settings, world):
    client = await aiohttp_client(init_app(full_settings))
    good = pay_signature(full_settings.secret_key, world.a.account)
    assert (await client.get("/pay/", params={"account": world.a.account, "sig": good})).status == 200
    assert (await client.get("/pay/", params={"account": world.a.account, "sig": good[:-2] + "xx"})).status == 403
    assert (await client.get("/pay/", params={"account": world.b.account, "sig": good})).status == 403
