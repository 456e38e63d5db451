"""Fixtures for the tenant tests: a seeded database and the port over it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from api import setup_tenant_routes
from meterpay.settings import Settings
from meterpay.web import SESSIONS, SETTINGS
from services.tenant import DbTenantPort
from tests.tenant.fakes import APP_SECRET, APPID, FakeStarter, fake_wechat_app
from tests.tenant.seed import SECRET, Clock, Seeded, make_port, seed


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def seeded(sessions) -> Seeded:
    return await seed(sessions)


@pytest.fixture
def port(sessions, seeded: Seeded, clock: Clock) -> DbTenantPort:
    return make_port(sessions, seeded, clock)


# -- the API and pay page over HTTP ------------------------------------------------------------
LOGIN_CODES = {"code-han": "o-han", "code-new": "o-new"}


def build_app(sessions, seeded: Seeded, starter: FakeStarter, wechat_base: str,
              public_url: str = "http://pay.test", clock: Clock | None = None) -> web.Application:
    async def send_sms(phone: str, code: str) -> None:
        seeded.sms.append((phone, code))

    app = web.Application()
    app[SETTINGS] = Settings(secret_key=SECRET, public_url=public_url, extra={
        "WECHAT_MINIAPP_APPID": APPID, "WECHAT_MINIAPP_SECRET": APP_SECRET,
        "WECHAT_APPID": APPID, "WECHAT_SECRET": APP_SECRET, "WECHAT_API_BASE": wechat_base})
    app[SESSIONS] = sessions
    setup_tenant_routes(app, send_sms=send_sms, payment_starter=starter, clock=clock or Clock())
    return app


@dataclass
class Api:
    client: TestClient
    starter: FakeStarter
    seeded: Seeded

    async def login(self, code: str = "code-han") -> dict[str, str]:
        resp = await self.client.post("/api/login", json={"code": code})
        assert resp.status == 200, await resp.text()
        return {"Authorization": f"Bearer {(await resp.json())['token']}"}


@pytest.fixture
async def api(sessions, seeded: Seeded, clock: Clock, aiohttp_client, aiohttp_server):
    wechat = await aiohttp_server(fake_wechat_app(LOGIN_CODES))
    starter = FakeStarter(sessions)
    client = await aiohttp_client(build_app(sessions, seeded, starter, str(wechat.make_url("")), clock=clock))
    yield Api(client, starter, seeded)
    await starter.settle()