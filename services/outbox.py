"""The transactional outbox: rows written with the change, relayed to the job queue, acked by the job.

A row is relayed (enqueued under job id = its key) when `available_at` has come; relaying pushes
`available_at` one ack timeout ahead, so a row whose job never acknowledged it (a dead Redis, a
killed worker) is relayed again by the next sweep. A row is finished only by `ack` (done_at).
When the queue is down nothing changes in the table: the rows wait for the next sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.uow import in_transaction
from store.db import insert_rows_or_ignore
from store.models import Outbox
from store.types import utcnow

log = logging.getLogger(__name__)

# topic -> the job function (by name) that carries it out; other modules may add topics.
TOPIC_JOBS: dict[str, str] = {
    "notify": "dispatch_notify",
}
DEFAULT_ACK_TIMEOUT_S = 120


class EnqueueError(Exception):
    """The job queue could not be reached; the outbox rows stay pending."""


class Enqueuer(Protocol):
    """Puts one job on the queue; `job_id` makes a second enqueue of a queued job a no-op."""

    async def enqueue(self, function: str, job_id: str) -> bool:
        """True when queued now, False when a job with this id was already queued."""
        ...


@dataclass(frozen=True)
class RelayReport:
    """What one sweep did."""

    enqueued: int
    already_queued: int
    error: str | None = None


def register_topic(topic: str, function: str) -> None:
    """Route a new outbox topic to a job function (call at import of the module that owns it)."""
    TOPIC_JOBS[topic] = function


async def write(session: AsyncSession, key: str, topic: str, payload: dict[str, Any],
                now: datetime | None = None) -> bool:
    """Add a row in the caller's transaction; a key written before is left as it was (False)."""
    now = now or utcnow()
    values = dict(key=key, topic=topic, payload=payload, created_at=now, available_at=now,
                  attempts=0)
    return await insert_ignoring(session, Outbox, values, ["key"])


async def write_many(session: AsyncSession, topic: str,
                     rows: Sequence[tuple[str, dict[str, Any], datetime]]) -> None:
    """Add several rows (key, payload, at) in one statement; keys written before are left alone."""
    if not rows:
        return
    values = [dict(key=key, topic=topic, payload=payload, created_at=at, available_at=at, attempts=0)
              for key, payload, at in rows]
    await session.execute(insert_rows_or_ignore(session, Outbox, ["key"]), values)


async def insert_ignoring(session: AsyncSession, model: Any, values: dict[str, Any],
                          unique: list[str]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING (SQLite and PostgreSQL): True when the row is new.

    One prebuilt Core statement (the session autoflushes before it, as before an ORM one)."""
    result = await session.execute(insert_rows_or_ignore(session, model, unique), values)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def pending(session: AsyncSession, now: datetime, limit: int = 500) -> Sequence[Outbox]:
    """Rows due for (re)enqueueing, oldest first; only topics some job carries out: rows of a
    retired topic (meter_command, before commands were claimed straight from meter_commands)
    stay unfinished in the table, and must not fill every sweep ahead of the rows that count."""
    stmt = (select(Outbox).where(Outbox.done_at.is_(None), Outbox.available_at <= now,
                                 Outbox.topic.in_(sorted(TOPIC_JOBS)))
            .order_by(Outbox.id).limit(limit))
    return list(await session.scalars(stmt))


async def relay_pending(
    sessions: async_sessionmaker[AsyncSession], enqueuer: Enqueuer, now: datetime | None = None,
    ack_timeout_s: int = DEFAULT_ACK_TIMEOUT_S, limit: int = 500,
) -> RelayReport:
    """Enqueue every due row under its key; the sweeper and the fast path after a commit."""
    now = now or utcnow()
    async with sessions() as session:
        rows = [(r.id, r.key, r.topic, r.available_at) for r in await pending(session, now, limit)]
    queued: list[tuple[int, datetime]] = []
    fresh, error = 0, None
    for row_id, key, topic, seen_at in rows:
        function = TOPIC_JOBS.get(topic)
        if function is None:
            log.warning("outbox row %s has unknown topic %r; left pending", key, topic)
            continue
        try:
            fresh += await enqueuer.enqueue(function, key)
        except EnqueueError as ex:
            error = str(ex)
            log.warning("job queue unavailable, %d outbox rows wait: %s", len(rows) - len(queued), ex)
            break
        queued.append((row_id, seen_at))
    if queued:
        await in_transaction(sessions, lambda s: _lease(s, queued, now + timedelta(seconds=ack_timeout_s)))
    return RelayReport(fresh, len(queued) - fresh, error)


async def _lease(session: AsyncSession, queued: list[tuple[int, datetime]], until: datetime) -> None:
    for row_id, seen_at in queued:  # conditional: a concurrent sweep or an ack wins
        await session.execute(update(Outbox).where(
            Outbox.id == row_id, Outbox.available_at == seen_at, Outbox.done_at.is_(None),
        ).values(available_at=until, attempts=Outbox.attempts + 1))


async def load(session: AsyncSession, key: str) -> Outbox | None:
    """The row for a job id, or None."""
    return await session.scalar(select(Outbox).where(Outbox.key == key))


async def ack(session: AsyncSession, key: str, now: datetime | None = None) -> None:
    """Mark the row done; a job calls this in the same transaction as its effect."""
    await session.execute(update(Outbox).where(Outbox.key == key, Outbox.done_at.is_(None))
                          .values(done_at=now or utcnow(), last_error=None))


async def note_error(sessions: async_sessionmaker[AsyncSession], key: str, error: str) -> None:
    """Keep the last failure on the row, for staff (its own short transaction)."""
    async def _note(session: AsyncSession) -> None:
        await session.execute(update(Outbox).where(Outbox.key == key)
                              .values(last_error=error[:500]))
    await in_transaction(sessions, _note)
