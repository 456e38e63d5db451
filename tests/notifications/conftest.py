"""Fixtures for the notification channel tests: an HTTP client session and sample messages."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from notifications.channel import Message, Rendered
from notifications.templates import render

LOW2 = {"account": "A-101", "balance": "12.30", "threshold": "20.00"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _message(kind: str = "low_balance_2", to: str = "13800138000", key: str = "alert:acct42:level2:crossing7",
            locale: str = "zh-CN", params: dict[str, str] | None = None) -> tuple[Message, Rendered]:
    """A message and its rendering, for channel tests."""
    msg = Message(key=key, kind=kind, locale=locale, to=to, params=dict(params or LOW2))
    return msg, render(kind, locale, msg.params)


@pytest.fixture
def message():
    """Build (Message, Rendered) pairs: message(kind=..., to=..., key=..., locale=..., params=...)."""
    return _message
