"""Redis for the arq tests (a queue name of this test's own), a job of the tests' own, and the
alerting fixtures reused."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from redis.asyncio import from_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jobs import tasks
from services import outbox
from services.uow import in_transaction
from tests.alerting.conftest import boxes, channels  # noqa: F401 - fixtures shared with tests/alerting
from tests.conftest import RUN_ID, need_service

PROBE_TOPIC = "test_probe"

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


@dataclass
class Probe:
    """The job `deliver_probe` on PROBE_TOPIC: built like the real jobs, it records what it saw."""

    fail_first: int = 0  # tries that find the row pending and raise before acking
    calls: list[str] = field(default_factory=list)  # every run, no-op runs included
    errors_seen: list[str | None] = field(default_factory=list)  # the row's last_error at each try
    tried_at: list[float] = field(default_factory=list)  # time.monotonic() at each try

    async def write(self, sessions: async_sessionmaker[AsyncSession], key: str, at: datetime) -> None:
        """Commit one outbox row of PROBE_TOPIC."""
        await in_transaction(sessions, lambda s: outbox.write(s, key, PROBE_TOPIC, {"probe": key}, at))


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> Probe:
    """PROBE_TOPIC routed to `deliver_probe` by jobs.tasks.register_job, for this test only."""
    monkeypatch.setattr(tasks, "_extra_jobs", list(tasks._extra_jobs))
    monkeypatch.setattr(outbox, "TOPIC_JOBS", dict(outbox.TOPIC_JOBS))
    state = Probe()

    async def deliver_probe(ctx: dict[str, Any], key: str) -> bool:
        state.calls.append(key)
        sessions = ctx["sessions"]

        async def body() -> bool:
            async with sessions() as session:
                row = await outbox.load(session, key)
            if row is None or row.done_at is not None:
                return False
            state.errors_seen.append(row.last_error)
            state.tried_at.append(time.monotonic())
            if len(state.errors_seen) <= state.fail_first:
                raise ConnectionError("gateway busy")
            await in_transaction(sessions, lambda s: outbox.ack(s, key, tasks.now_of(ctx)))
            return True

        return bool(await tasks.guarded(ctx, key, body))

    tasks.register_job(PROBE_TOPIC, deliver_probe)
    return state
