"""Redis for the arq tests (a queue name of this test's own), and the alerting fixtures reused."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import from_url

from tests.alerting.conftest import boxes, channels  # noqa: F401 - fixtures shared with tests/alerting
from tests.conftest import RUN_ID, need_service

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def redis_url() -> str:
    client = from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as ex:  # noqa: BLE001 - reported as skip / CI failure
        need_service("Redis", str(ex))
    finally:
        await client.aclose()
    return REDIS_URL


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[str]:
    """A queue name unique to this test; its keys are removed afterwards."""
    name = f"meterpay-test:{RUN_ID}:{uuid.uuid4().hex[:8]}"
    yield name
    client = from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"*{name}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
