"""The arq worker (`python app.py worker`): job functions, cron, and a ctx opened at startup.

Env: REDIS_URL (required here), ARQ_QUEUE_NAME (default "meterpay:queue"), OUTBOX_ACK_TIMEOUT_S.
Results are not kept (keep_result=0): jobs ack through the outbox, and a finished job id can then
be enqueued again by the sweeper if its row was somehow left unacknowledged.
"""

from __future__ import annotations

import logging
from typing import Any

from arq import cron
from arq.cron import CronJob
from arq.worker import Function, Worker, create_worker, func

from jobs import wiring
from jobs.context import close_context, open_context
from jobs.enqueuer import ArqEnqueuer, redis_settings
from jobs.tasks import (MAX_TRIES, all_jobs, alert_repeats, daily_rollup, deliver_notifications,
                        scan_lost_links, staff_digest, sweep_outbox)
from meterpay.heap import settle_startup_heap
from meterpay.settings import Settings
from services.outbox import DEFAULT_ACK_TIMEOUT_S

log = logging.getLogger(__name__)
DEFAULT_QUEUE = "meterpay:queue"


def job_functions() -> list[Function]:
    """The queued job functions, with the shared retry limit."""
    wiring.install()
    return [func(f, max_tries=MAX_TRIES) for f in (*all_jobs(), *wiring.contributed_functions())]


def cron_jobs() -> list[CronJob]:
    """Periodic work (times in UTC; staff_digest checks each site's local hour itself)."""
    return [
        cron(sweep_outbox, second=set(range(0, 60, 2)), run_at_startup=True),
        cron(deliver_notifications, second=set(range(5, 60, 10))),
        cron(alert_repeats, minute=set(range(0, 60, 5)), second=20),
        cron(scan_lost_links, minute=set(range(2, 60, 5)), second=40),
        cron(staff_digest, minute=0, second=30),
        cron(daily_rollup, hour=16, minute=10, second=0),  # 00:10 in China
        *wiring.contributed_cron(),
    ]


async def startup(ctx: dict[str, Any]) -> None:
    """arq on_startup: database, HTTP client, channels and the enqueuer on the worker's pool."""
    settings = ctx.get("settings") or Settings.from_env()
    await open_context(ctx, settings)
    ctx.setdefault("ack_timeout_s", int(settings.get("OUTBOX_ACK_TIMEOUT_S") or DEFAULT_ACK_TIMEOUT_S))
    ctx.setdefault("enqueuer", ArqEnqueuer(ctx.get("queue_name", DEFAULT_QUEUE), pool=ctx["redis"]))
    if ctx.get("settle_heap"):
        settle_startup_heap()


async def shutdown(ctx: dict[str, Any]) -> None:
    """arq on_shutdown."""
    await close_context(ctx)


class WorkerSettings:
    """For `arq jobs.worker.WorkerSettings` too (Redis then from arq's defaults)."""

    functions = job_functions()
    cron_jobs = cron_jobs()
    on_startup = startup
    on_shutdown = shutdown
    keep_result = 0
    max_tries = MAX_TRIES
    queue_name = DEFAULT_QUEUE


def make_worker(settings: Settings, ctx: dict[str, Any] | None = None, **overrides: Any) -> Worker:
    """A worker for these settings; tests pass ctx (sessions, channels, clock) and overrides."""
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set: jobs run embedded in `python app.py run`")
    queue = settings.get("ARQ_QUEUE_NAME") or DEFAULT_QUEUE
    kwargs: dict[str, Any] = dict(redis_settings=redis_settings(settings.redis_url), queue_name=queue,
                                  functions=job_functions(), cron_jobs=cron_jobs(),
                                  ctx={"settings": settings, "queue_name": queue, **(ctx or {})})
    return create_worker(WorkerSettings, **{**kwargs, **overrides})


def run_worker(settings: Settings, retry_s: float = 2.0, settle_heap: bool = False) -> None:
    """`python app.py worker`: run until SIGINT/SIGTERM, and come back when Redis does.

    arq's worker exits when its Redis connection is lost; outbox rows wait in the database
    meanwhile, so starting a new worker once Redis answers again loses nothing.
    """
    import time

    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    log.info("arq worker starting on queue %s", settings.get("ARQ_QUEUE_NAME") or DEFAULT_QUEUE)
    while True:
        try:
            make_worker(settings, ctx={"settle_heap": settle_heap}).run()
            return
        except (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError) as ex:
            log.warning("lost Redis (%s); starting again in %.0f s", type(ex).__name__, retry_s)
            time.sleep(retry_s)
