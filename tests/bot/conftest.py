"""Fixtures for the bot tests: the seeded fake port, recorded custom messages, the app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from botsim import AES_KEY, APPID, TOKEN, CustomMessages, MakeWeChat, Mode, WeChat, seeded_port

from bot.fake_port import FakeTenantPort
from bot.seen import InMemorySeenStore
from bot.wechat import make_wechat_app


@pytest.fixture
def port() -> FakeTenantPort:
    return seeded_port()


@pytest.fixture
def custom() -> CustomMessages:
    return CustomMessages()


@pytest.fixture
def make_wechat(aiohttp_client: Callable[..., Awaitable[TestClient]], port: FakeTenantPort,
                custom: CustomMessages) -> MakeWeChat:
    """Start the /wechat app over the fake port and return a WeChat stand-in talking to it."""

    async def make(mode: Mode = "plain", **options: float) -> WeChat:
        app: web.Application = make_wechat_app(port, TOKEN, APPID, AES_KEY, custom,
                                               InMemorySeenStore(), **options)
        return WeChat(await aiohttp_client(app), mode)

    return make
