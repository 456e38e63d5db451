"""The arq worker against the real Redis: outbox rows become jobs with stable ids, each job runs
once, a dead Redis loses nothing, an unacknowledged row is swept up again, failures retry."""

from __future__ import annotations

from datetime import timedelta

from arq.connections import RedisSettings
from sqlalchemy import select

from jobs import tasks
from jobs.enqueuer import ArqEnqueuer
from jobs.worker import make_worker
from meterpay.settings import Settings
from services import outbox
from store.models import MeterCommand, Outbox
from tests.alerting.conftest import local, make_flat
from tests.jobs.conftest import PROBE_TOPIC, Probe

AT = local(2, 12)
L3_SENT = [("sms", "SMS_3"), ("voice", "TTS_3"), ("wechat_template", "tmpl-low_balance_3")]
NOTICE, PROBE = "cutoff_warning:1:L3:c1", "probe:1"


async def cut_off(sessions, channels, probe: Probe):
    """A tenant runs out at noon: a cut-off notice (topic notify) and a row of the test's own topic.

    The relay-open command waits in meter_commands for the meter runtime: it has no outbox row."""
    flat = await make_flat(sessions, channels)
    await flat.use(65, AT)
    await probe.write(sessions, PROBE, AT)
    async with sessions() as s:
        assert [(c.kind, c.state) for c in await s.scalars(select(MeterCommand))] == [("relay_open", "queued")]
    # topics only: an in-process worker may already be running these rows
    assert {key: topic for key, (topic, _, _) in (await rows(sessions)).items()} == {NOTICE: "notify", PROBE: PROBE_TOPIC}
    return flat


async def rows(sessions) -> dict[str, tuple[str, int, bool]]:
    async with sessions() as s:
        return {r.key: (r.topic, r.attempts, r.done_at is not None) for r in await s.scalars(select(Outbox))}


async def run_worker(sessions, channels, redis_url, queue) -> int:
    settings = Settings(redis_url=redis_url, extra={"ARQ_QUEUE_NAME": queue})
    worker = make_worker(settings, ctx={"sessions": sessions, "channels": channels, "clock": lambda: AT},
                         burst=True, handle_signals=False, cron_jobs=[], poll_delay=0.05)
    try:
        return await worker.run_check()
    finally:
        await worker.close()


async def test_outbox_rows_become_jobs_that_run_once_and_ack(sessions, channels, boxes, probe, redis_url, queue):
    await cut_off(sessions, channels, probe)
    enqueuer = ArqEnqueuer(queue, redis_settings=RedisSettings.from_dsn(redis_url))
    try:
        assert (await outbox.relay_pending(sessions, enqueuer, AT)).enqueued == 2
        again = await outbox.relay_pending(sessions, enqueuer, AT + timedelta(seconds=outbox.DEFAULT_ACK_TIMEOUT_S))
        assert (again.enqueued, again.already_queued) == (0, 2)  # same job ids: arq refuses twice
    finally:
        await enqueuer.close()
    assert await run_worker(sessions, channels, redis_url, queue) == 2
    assert probe.calls == [PROBE]
    assert boxes.take() == L3_SENT
    assert {key: done for key, (_, _, done) in (await rows(sessions)).items()} == {PROBE: True, NOTICE: True}


async def test_rows_written_while_redis_is_down_go_out_once_it_is_back(
        sessions, channels, boxes, probe, redis_url, queue, unused_tcp_port):
    await cut_off(sessions, channels, probe)
    dead = ArqEnqueuer(queue, redis_settings=RedisSettings(port=unused_tcp_port, conn_retries=0))
    report = await outbox.relay_pending(sessions, dead, AT)
    assert report.enqueued == 0 and report.error and "Connect" in report.error
    assert await rows(sessions) == {PROBE: (PROBE_TOPIC, 0, False), NOTICE: ("notify", 0, False)}
    back = ArqEnqueuer(queue, redis_settings=RedisSettings.from_dsn(redis_url))
    try:  # Redis is back: the sweeper enqueues each row, and sweeping twice changes nothing
        assert (await outbox.relay_pending(sessions, back, AT + timedelta(minutes=5))).enqueued == 2
        assert (await outbox.relay_pending(sessions, back, AT + timedelta(minutes=9))).enqueued == 0
    finally:
        await back.close()
    assert await run_worker(sessions, channels, redis_url, queue) == 2
    assert probe.calls == [PROBE]
    assert boxes.take() == L3_SENT
    assert all(done for _, _, done in (await rows(sessions)).values())


async def test_a_job_lost_from_redis_is_swept_up_after_the_ack_timeout(
        sessions, channels, boxes, probe, redis_url, queue):
    await cut_off(sessions, channels, probe)
    enqueuer = ArqEnqueuer(queue, redis_settings=RedisSettings.from_dsn(redis_url))
    try:
        await outbox.relay_pending(sessions, enqueuer, AT)
        pool = enqueuer._pool
        assert pool is not None
        await pool.delete(queue, *[f"arq:job:{queue}:{k}" for k in (PROBE, NOTICE)])
        assert (await outbox.relay_pending(sessions, enqueuer, AT + timedelta(seconds=60))).enqueued == 0
        late = AT + timedelta(seconds=outbox.DEFAULT_ACK_TIMEOUT_S)
        assert (await outbox.relay_pending(sessions, enqueuer, late)).enqueued == 2
    finally:
        await enqueuer.close()
    assert await run_worker(sessions, channels, redis_url, queue) == 2
    assert probe.calls == [PROBE] and boxes.take() == L3_SENT
    assert {attempts for _, attempts, _ in (await rows(sessions)).values()} == {2}


async def test_a_failing_job_is_retried_by_arq_with_its_error_noted_and_acked_once(
        sessions, channels, boxes, probe, redis_url, queue):
    probe.fail_first = 1
    await cut_off(sessions, channels, probe)
    enqueuer = ArqEnqueuer(queue, redis_settings=RedisSettings.from_dsn(redis_url))
    try:
        await outbox.relay_pending(sessions, enqueuer, AT)
    finally:
        await enqueuer.close()
    await run_worker(sessions, channels, redis_url, queue)
    assert probe.calls == [PROBE, PROBE]
    assert probe.errors_seen == [None, "ConnectionError: gateway busy"]  # the second try found the first's error
    assert probe.tried_at[1] - probe.tried_at[0] >= tasks.retry_delay_s(1) - 0.05  # after the backoff
    assert (await rows(sessions))[PROBE] == (PROBE_TOPIC, 1, True)
    async with sessions() as s:
        assert (await outbox.load(s, PROBE)).last_error is None  # the ack clears it
