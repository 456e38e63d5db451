"""One command, one transaction: run a service function in a session, retrying lost races.

A unique-key race (two notifies inserting the same ledger key) or a PostgreSQL serialization
failure rolls the whole transaction back; running it again then finds the winner's row and
becomes a no-op, which is what makes retried and concurrent commands exactly-once.

A connection lost before the commit (a PostgreSQL restart the pool had not seen: see
`store.db.make_engine`) is retried too: the server rolled that transaction back, so running it
again on a fresh connection is safe. One lost during the commit is not: whether it committed is
unknown, and the caller (a provider retrying a notify, a job retried) must decide.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

T = TypeVar("T")
log = logging.getLogger(__name__)
RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock


async def in_transaction(
    sessions: async_sessionmaker[AsyncSession],
    fn: Callable[[AsyncSession], Awaitable[T]],
    attempts: int = 5,
) -> T:
    """Run `fn(session)` inside one transaction; commit on success, retry on a lost race."""
    for attempt in range(1, attempts + 1):
        committing = False
        try:
            async with sessions() as session, session.begin():
                result = await fn(session)
                committing = True
            return result
        except IntegrityError:
            if attempt == attempts:
                raise
            log.debug("unique-key race, retrying (attempt %d)", attempt)
        except DBAPIError as ex:
            code = getattr(ex.orig, "sqlstate", None) or getattr(ex.orig, "pgcode", None)
            lost = ex.connection_invalidated and not committing
            if (code not in RETRYABLE_SQLSTATES and not lost) or attempt == attempts:
                raise
            if lost:
                log.warning("database connection lost before the commit, retrying (attempt %d)", attempt)
        await asyncio.sleep(0.005 * attempt)
    raise AssertionError("unreachable")
