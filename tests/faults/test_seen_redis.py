"""WeChat dedup shared through Redis: a redelivery that reaches another web process gets the first reply."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
from redis.asyncio import from_url

from bot.seen_redis import RedisSeenStore
from tests.conftest import need_service

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def two_processes():  # type: ignore[no-untyped-def]
    """Two stores on two connections, as two web processes would have, under a prefix of this test's own."""
    a, b = from_url(REDIS_URL), from_url(REDIS_URL)
    try:
        await a.ping()
    except Exception as ex:  # noqa: BLE001
        await a.aclose()
        await b.aclose()
        need_service("Redis", str(ex))
    prefix = f"test-seen-{uuid.uuid4().hex[:8]}:"
    yield RedisSeenStore(a, prefix, ttl_s=5), RedisSeenStore(b, prefix, ttl_s=5)
    keys = [k async for k in a.scan_iter(f"{prefix}*")]
    if keys:
        await a.delete(*keys)
    await a.aclose()
    await b.aclose()


async def test_only_the_first_delivery_of_a_message_claims_it_across_processes(two_processes):
    a, b = two_processes
    claims = await asyncio.gather(*(store.claim("msg-1") for store in (a, b, a, b)))
    assert sorted(claims) == [False, False, False, True]


async def test_a_duplicate_on_another_process_waits_for_and_gets_the_first_reply(two_processes):
    a, b = two_processes
    assert await a.claim("msg-2")
    waiting = asyncio.create_task(b.reply("msg-2", timeout_s=2))
    await asyncio.sleep(0.1)
    await a.settle("msg-2", "<xml>balance 12.30</xml>")
    assert await waiting == "<xml>balance 12.30</xml>"


async def test_a_duplicate_gets_nothing_while_the_first_is_still_pending(two_processes):
    a, b = two_processes
    assert await a.claim("msg-3")
    assert await b.reply("msg-3", timeout_s=0.2) is None
    assert await b.reply("never-seen", timeout_s=0) is None
