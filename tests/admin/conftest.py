"""Fixtures for the staff panel: two sites of two companies, one user per role, a signed-in client."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from admin import setup_admin
from billing.money import Money
from meterpay.settings import Settings
from meterpay.web import init_app
from services.accounts import OpenAccount, open_account
from services.staff import add_user
from services.uow import in_transaction
from services.wallets import recharge
from tests.factories import FLAT_1, add_meter, add_tariff, make_site

PASSWORD = "correct horse"
CSRF_RE = re.compile(r'name="_csrf" value="([^"]+)"')


@pytest.fixture(autouse=True)
def _fast_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERPAY_FAST_HASH", "1")


@dataclass
class SiteIds:
    site: int
    room: int
    meter: int
    account: int
    tariff: int
    vacant_room: int
    vacant_meter: int
    order: int = 0


@dataclass
class World:
    a: SiteIds
    b: SiteIds
    users: dict[str, int] = field(default_factory=dict)


async def _site(s, code: str) -> SiteIds:  # type: ignore[no-untyped-def]
    kit = await make_site(s, code)
    t = await add_tariff(s, kit, f"flat-{code}", FLAT_1)
    m = await add_meter(s, kit, "101", t, online=True)
    vacant = await add_meter(s, kit, "102", t, online=False)
    acc = await open_account(s, OpenAccount(kit.site.id, f"Tenant {code}", "13900000001", (m.id,), code=f"ACC-{code}"))
    order = await recharge(s, acc.id, Money(100_00), f"seed-{code}")
    return SiteIds(kit.site.id, m.room_id or 0, m.id, acc.id, t.id, vacant.room_id or 0, vacant.id, order.id)


@pytest.fixture
async def world(sessions) -> World:  # type: ignore[no-untyped-def]
    async def build(s):  # type: ignore[no-untyped-def]
        a, b = await _site(s, "A"), await _site(s, "B")
        w = World(a, b)
        for role in ("owner", "operator", "cashier", "viewer"):
            w.users[role] = (await add_user(s, role, PASSWORD, role, [a.site])).id
        w.users["owner_b"] = (await add_user(s, "owner_b", PASSWORD, "owner", [b.site])).id
        return w
    return await in_transaction(sessions, build)


def make_settings(db_url: str, **extra: str) -> Settings:
    return Settings(database_url=db_url, secret_key="test-secret-key", extra={"METERPAY_FAST_HASH": "1", **extra})


def make_app(settings: Settings) -> web.Application:
    app = init_app(settings)
    setup_admin(app)
    return app


@pytest.fixture
async def client(aiohttp_client, db_url, world) -> TestClient:  # type: ignore[no-untyped-def]
    return await aiohttp_client(make_app(make_settings(db_url)))


async def csrf_of(client: TestClient, path: str = "/admin/login") -> str:
    resp = await client.get(path)
    m = CSRF_RE.search(await resp.text())
    assert m, f"no CSRF token on {path}"
    return m.group(1)


async def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Sign in and return the session's CSRF token."""
    token = await csrf_of(client)
    resp = await client.post("/admin/login", data={"username": username, "password": password, "_csrf": token},
                             allow_redirects=False)
    assert resp.status == 302, await resp.text()
    return await csrf_of(client, "/admin/audit")
