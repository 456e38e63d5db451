"""The arq side of the outbox: enqueue a job under its outbox key, translating Redis faults."""

from __future__ import annotations

import asyncio

from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.exceptions import RedisError

from services.outbox import EnqueueError


class ArqEnqueuer:
    """services.outbox.Enqueuer over arq; connects lazily so a dead Redis at start is not fatal."""

    def __init__(self, queue_name: str, pool: ArqRedis | None = None,
                 redis_settings: RedisSettings | None = None) -> None:
        self.queue_name = queue_name
        self._pool = pool
        self._owned = pool is None
        self._settings = redis_settings or RedisSettings()

    async def enqueue(self, function: str, job_id: str) -> bool:
        """Queue `function(job_id)`; False when that job is already queued or running.

        arq's job id is "<queue>:<outbox key>", so deployments sharing a Redis do not collide.
        """
        try:
            if self._pool is None:
                self._pool = await create_pool(self._settings, default_queue_name=self.queue_name)
            job = await self._pool.enqueue_job(function, job_id, _job_id=f"{self.queue_name}:{job_id}",
                                               _queue_name=self.queue_name)
        except (RedisError, OSError, asyncio.TimeoutError) as ex:
            raise EnqueueError(f"{type(ex).__name__}: {ex}") from ex
        return job is not None

    async def close(self) -> None:
        """Close the pool if this enqueuer opened it."""
        if self._owned and self._pool is not None:
            await self._pool.aclose()
            self._pool = None


def redis_settings(url: str, conn_retries: int = 5) -> RedisSettings:
    """arq RedisSettings from REDIS_URL."""
    settings = RedisSettings.from_dsn(url)
    settings.conn_retries = conn_retries
    return settings
