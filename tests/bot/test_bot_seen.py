"""The in-memory dedup store: one claim per key, the same reply for duplicates, bounded."""

from __future__ import annotations

import asyncio

from bot.seen import InMemorySeenStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_key_is_claimed_only_once():
    seen = InMemorySeenStore()
    assert await seen.claim("msg:1") is True
    assert await seen.claim("msg:1") is False
    assert await seen.claim("msg:2") is True


async def test_a_duplicate_reads_the_settled_reply():
    seen = InMemorySeenStore()
    await seen.claim("msg:1")
    await seen.settle("msg:1", "余额 ¥1.00")
    assert await seen.reply("msg:1", timeout_s=0) == "余额 ¥1.00"


async def test_a_duplicate_waits_for_a_pending_reply_up_to_its_timeout():
    seen = InMemorySeenStore()
    await seen.claim("msg:1")
    assert await seen.reply("msg:1", timeout_s=0.01) is None
    waiter = asyncio.create_task(seen.reply("msg:1", timeout_s=1))
    await asyncio.sleep(0)
    await seen.settle("msg:1", "done")
    assert await waiter == "done"


async def test_keys_expire_after_their_ttl():
    clock = Clock()
    seen = InMemorySeenStore(ttl_s=60, clock=clock)
    await seen.claim("msg:1")
    clock.now += 61
    assert await seen.reply("msg:1", timeout_s=0) is None
    assert await seen.claim("msg:1") is True


async def test_the_store_keeps_at_most_max_keys_dropping_the_oldest():
    seen = InMemorySeenStore(max_keys=100)
    for n in range(250):
        await seen.claim(f"msg:{n}")
    assert len(seen) == 100
    assert await seen.claim("msg:0") is True
    assert await seen.claim("msg:249") is False


async def test_expired_keys_are_dropped_when_new_ones_arrive():
    clock = Clock()
    seen = InMemorySeenStore(ttl_s=10, clock=clock)
    for n in range(5):
        await seen.claim(f"msg:{n}")
    clock.now += 11
    await seen.claim("msg:new")
    assert len(seen) == 1
