"""Without REDIS_URL the same job functions run in-process, with the same ids and retry rules."""

from __future__ import annotations

import asyncio

import pytest

from jobs import tasks
from jobs.inprocess import InProcessWorker
from jobs.worker import make_worker
from meterpay.settings import Settings
from tests.jobs.conftest import PROBE_TOPIC
from tests.jobs.test_arq_worker import AT, L3_SENT, PROBE, cut_off, rows


async def settle(sessions, timeout_s: float = 15.0) -> None:
    """Wait until every outbox row is acknowledged."""
    async def done() -> bool:
        return all(d for _, _, d in (await rows(sessions)).values())
    async with asyncio.timeout(timeout_s):
        while not await done():
            await asyncio.sleep(0.02)


async def test_jobs_run_in_process_once_each_without_redis(sessions, channels, boxes, probe):
    async with InProcessWorker(sessions, ctx={"channels": channels, "clock": lambda: AT},
                               poll_s=0.02, cron=False):
        await cut_off(sessions, channels, probe)
        await settle(sessions)
        await asyncio.sleep(0.1)  # more sweeps: nothing runs twice
    assert probe.calls == [PROBE]
    assert boxes.take() == L3_SENT


async def test_a_failing_job_is_retried_in_process_by_the_same_rule(sessions, channels, boxes, probe):
    probe.fail_first = 1
    async with InProcessWorker(sessions, ctx={"channels": channels, "clock": lambda: AT},
                               poll_s=0.02, cron=False) as worker:
        await cut_off(sessions, channels, probe)
        await settle(sessions, timeout_s=tasks.retry_delay_s(1) + 15)
        await worker.join()
    assert probe.calls == [PROBE, PROBE]
    assert probe.errors_seen == [None, "ConnectionError: gateway busy"]  # the second try found the first's error
    assert probe.tried_at[1] - probe.tried_at[0] >= tasks.retry_delay_s(1) - 0.05  # after the backoff
    assert (await rows(sessions))[PROBE] == (PROBE_TOPIC, 1, True)


async def test_a_queued_job_id_is_not_queued_twice_in_process():
    worker = InProcessWorker(None, ctx={"channels": {}})  # type: ignore[arg-type] - never started
    assert await worker.enqueue("dispatch_notify", "k1") is True
    assert await worker.enqueue("dispatch_notify", "k1") is False


def test_the_arq_worker_refuses_to_start_without_redis_url():
    with pytest.raises(RuntimeError, match="REDIS_URL"):
        make_worker(Settings(redis_url=None))
