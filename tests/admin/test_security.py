"""The panel's guards: CSRF on every state change, site scoping, roles, lock-out, idle timeout, no clear passwords."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import func, select

from store.models import AuditEntry, User
from tests.admin.conftest import PASSWORD, csrf_of, make_app, make_settings, sign_in
from tests.admin.routes_walk import fill, full_form, known, routes

async def _audit_count(sessions) -> int:  # type: ignore[no-untyped-def]
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(AuditEntry)) or 0)


async def test_every_state_changing_route_refuses_a_missing_or_wrong_csrf_token(client, world, sessions):
    await sign_in(client, "owner")
    posts = [r for r in routes(client.server.app) if r.method == "POST"]
    assert len(posts) >= 13
    before = await _audit_count(sessions)
    for route in posts:
        url = fill(route, world.a, world.users["viewer"])
        for token in (None, "wrong-token"):
            resp = await client.post(url, data=full_form(world.a, token), allow_redirects=False)
            assert resp.status == 403, (route.name, token, resp.status)
        resp = await client.post(url, data=full_form(world.a, None), headers={"X-CSRF-Token": "nope"},
                                 allow_redirects=False)
        assert resp.status == 403, route.name
    assert await _audit_count(sessions) == before
    assert (await client.get("/admin/audit")).status == 200  # still signed in: the refusals changed nothing


async def test_a_user_of_site_a_gets_404_for_every_object_of_site_b(client, world, sessions):
    token = await sign_in(client, "owner")
    before = await _audit_count(sessions)
    checked = 0
    for route in routes(client.server.app):
        if "{" not in route.path or not known(route):
            continue
        url = fill(route, world.b, world.users["owner_b"])
        if route.method == "GET":
            resp = await client.get(url + ("?action=off" if route.name == "admin.relay_confirm" else ""))
        else:
            resp = await client.post(url, data=full_form(world.b, token), allow_redirects=False)
        assert resp.status == 404, (route.name, route.method, resp.status, await resp.text())
        checked += 1
    assert checked >= 17
    assert await _audit_count(sessions) == before
    users_page = await (await client.get("/admin/users")).text()
    assert "owner_b" not in users_page
    audit_page = await (await client.get("/admin/audit")).text()
    assert "owner_b" not in audit_page


async def test_a_user_cannot_grant_a_site_he_does_not_have(client, world, sessions):
    token = await sign_in(client, "owner")
    form = full_form(world.a, token) | {"site_id": str(world.b.site), "username": "sneaky"}
    resp = await client.post("/admin/users", data=form, allow_redirects=False)
    assert resp.status == 404
    async with sessions() as s:
        assert await s.scalar(select(User.id).where(User.username == "sneaky")) is None


ALLOWED = {  # route name -> roles that may use it (written out here, not read from the code under test)
    "admin.recharge": {"owner", "operator", "cashier"},
    "admin.refund": {"owner", "operator", "cashier"},
    "admin.open_account": {"owner", "operator"},
    "admin.close_account": {"owner", "operator"},
    "admin.set_tariff": {"owner", "operator"},
    "admin.tariff_create": {"owner", "operator"},
    "admin.version_add": {"owner", "operator"},
    "admin.relay": {"owner", "operator"},
    "admin.user_create": {"owner"},
    "admin.user_unlock": {"owner"},
}


async def test_each_role_may_do_exactly_what_its_permission_table_says(aiohttp_client, db_url, world):
    clients = {}
    for role in ("viewer", "cashier", "operator", "owner"):
        clients[role] = client = await aiohttp_client(make_app(make_settings(db_url)))
        await sign_in(client, role)
        page = await (await client.get(f"/admin/rooms/{world.a.room}")).text()
        assert ("recharge-form" in page) == (role != "viewer")
        assert (f"relay-off-{world.a.meter}" in page) == (role in ("owner", "operator"))
    for role, client in clients.items():
        token = await csrf_of(client, "/admin/audit")
        for route in routes(client.server.app):
            if route.method != "POST" or route.name not in ALLOWED:
                continue
            url = fill(route, world.a, world.users["viewer"])
            resp = await client.post(url, data=full_form(world.a, token), allow_redirects=False)
            refused = resp.status == 403
            assert refused == (role not in ALLOWED[route.name]), (role, route.name, resp.status, await resp.text())


async def test_a_locked_out_user_stays_out_even_with_the_right_password(client, world, sessions):
    for _ in range(5):
        token = await csrf_of(client)
        resp = await client.post("/admin/login", data={"username": "cashier", "password": "wrong", "_csrf": token},
                                 allow_redirects=False)
        assert resp.status == 401
    token = await csrf_of(client)
    resp = await client.post("/admin/login", data={"username": "cashier", "password": PASSWORD, "_csrf": token},
                             allow_redirects=False)
    assert resp.status == 401
    assert (await client.get("/admin/audit", allow_redirects=False)).status == 302
    async with sessions() as s:
        user = await s.scalar(select(User).where(User.username == "cashier"))
        assert user is not None and user.locked_until is not None
        assert await s.scalar(select(AuditEntry.id).where(AuditEntry.action == "user.locked")) is not None


async def test_an_idle_session_expires(aiohttp_client, db_url, world):
    client = await aiohttp_client(make_app(make_settings(db_url, ADMIN_IDLE_TIMEOUT_S="1")))
    await sign_in(client, "owner")
    await asyncio.sleep(2.1)
    resp = await client.get("/admin/audit", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"].startswith("/admin/login")


async def test_passwords_are_never_stored_or_logged_in_clear(client, world, sessions, caplog):
    caplog.set_level(logging.DEBUG)
    token = await csrf_of(client)
    await client.post("/admin/login", data={"username": "owner", "password": "not-" + PASSWORD, "_csrf": token})
    await sign_in(client, "owner")
    new_pw = "brand-new-secret"
    token = await csrf_of(client, "/admin/users")
    resp = await client.post("/admin/users", data={"_csrf": token, "username": "newbie", "password": new_pw,
                                                   "role": "viewer", "site_id": str(world.a.site)}, allow_redirects=False)
    assert resp.status == 302
    async with sessions() as s:
        hashes = list(await s.scalars(select(User.password_hash)))
        audits = [str(a.after) + str(a.before) for a in await s.scalars(select(AuditEntry))]
    assert hashes and all(h.startswith("$argon2id$") for h in hashes)
    for secret in (PASSWORD, new_pw):
        assert not any(secret in h for h in hashes + audits)
        assert secret not in caplog.text


async def test_sign_in_does_not_redirect_off_site(client, world):
    token = await csrf_of(client)
    resp = await client.post("/admin/login", data={"username": "owner", "password": PASSWORD, "_csrf": token,
                                                   "next": "//evil.example/"}, allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/admin/"
