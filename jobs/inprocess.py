"""The embedded default: the same job functions and cron, run in-process when REDIS_URL is unset.

Same rules as the arq worker: job id = outbox key (a queued id is not queued twice), a failing
job is retried after `arq.Retry.defer` up to MAX_TRIES, and the outbox sweeper re-enqueues rows
never acknowledged. Nothing is lost on a crash: the outbox table is the queue of record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timezone
from typing import Any

from arq import Retry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jobs import wiring
from jobs.context import close_context, open_context
from jobs.tasks import MAX_TRIES, all_jobs, retry_delay_s, sweep_outbox
from jobs.worker import cron_jobs
from meterpay.settings import Settings

log = logging.getLogger(__name__)


class InProcessWorker:
    """Runs jobs on this event loop; `async with InProcessWorker(sessions, settings): ...`."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings | None = None,
                 ctx: dict[str, Any] | None = None, poll_s: float = 1.0, concurrency: int = 4,
                 max_tries: int = MAX_TRIES, cron: bool = True) -> None:
        self.settings = settings or Settings()
        self.ctx: dict[str, Any] = {"sessions": sessions, **(ctx or {}), "enqueuer": self}
        self.poll_s, self.concurrency, self.max_tries = poll_s, concurrency, max_tries
        wiring.install()
        self._functions = {f.__qualname__: f for f in all_jobs()}
        # the sweep runs on every tick here (a cheap query, and the embedded fast path)
        self._cron = [j for j in cron_jobs() if j.coroutine is not sweep_outbox] if cron else []
        self._queue: asyncio.Queue[tuple[str, str, int]] = asyncio.Queue()
        self._ids: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self.completed = 0

    async def enqueue(self, function: str, job_id: str) -> bool:
        """services.outbox.Enqueuer: queue `function(job_id)` unless that id is queued or running."""
        if job_id in self._ids:
            return False
        if function not in self._functions:
            raise KeyError(f"unknown job function {function!r}")
        self._ids.add(job_id)
        self._queue.put_nowait((function, job_id, 1))
        return True

    async def start(self) -> None:
        """Open the context and start the job runners and the cron ticker."""
        await open_context(self.ctx, self.settings)
        now = datetime.now(timezone.utc)
        for job in self._cron:
            job.next_run = now if job.run_at_startup else None
            if job.next_run is None:
                job.calculate_next(now)
        self._tasks = [asyncio.create_task(self._run(), name=f"inprocess-job-{i}")
                       for i in range(self.concurrency)]
        self._tasks.append(asyncio.create_task(self._tick(), name="inprocess-cron"))

    async def stop(self) -> None:
        """Cancel runners and timers (queued jobs stay in the outbox), close the context."""
        for timer in self._timers:
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await close_context(self.ctx)

    async def __aenter__(self) -> InProcessWorker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def join(self) -> None:
        """Wait until every queued job (retries included) has finished."""
        while self._ids:
            await asyncio.sleep(0.01)

    async def _run(self) -> None:
        while True:
            name, job_id, try_no = await self._queue.get()
            try:
                await self._functions[name]({**self.ctx, "job_try": try_no}, job_id)
                self.completed += 1
            except Retry as retry:
                if try_no < self.max_tries:
                    delay = (retry.defer_score or 0) / 1000 or retry_delay_s(try_no)
                    self._later(delay, (name, job_id, try_no + 1))
                    continue
                log.error("job %s(%s) gave up after %d tries", name, job_id, try_no)
            except Exception:  # noqa: BLE001 - one bad job must not stop the runner
                log.exception("job %s(%s) crashed", name, job_id)
            self._ids.discard(job_id)

    def _later(self, delay_s: float, item: tuple[str, str, int]) -> None:
        def put() -> None:
            self._timers.discard(timer)
            self._queue.put_nowait(item)
        timer = asyncio.get_running_loop().call_later(delay_s, put)
        self._timers.add(timer)

    async def _tick(self) -> None:
        while True:
            try:
                await sweep_outbox(self.ctx)
            except Exception:  # noqa: BLE001 - logged; the next tick tries again
                log.exception("outbox sweep failed")
            now = datetime.now(timezone.utc)
            for job in self._cron:
                if job.next_run is not None and job.next_run <= now:
                    job.calculate_next(now)
                    try:
                        await job.coroutine(self.ctx)
                    except Exception:  # noqa: BLE001 - logged; the next tick tries again
                        log.exception("cron %s failed", job.name)
            await asyncio.sleep(self.poll_s)
