"""Waking the command lanes when a command is queued, instead of waiting for their next look.

A command is queued inside some transaction (a payment, a staff click, a batch); the lanes that
deliver it run in a poller process, maybe on another machine. The writer calls `announce` with
the gateway of the command's meter. At commit, on PostgreSQL, the transaction sends one
`NOTIFY meterpay_commands` (PostgreSQL delivers it only if the transaction commits); the runtime
LISTENs (`listen`) and nudges those gateways' lanes at once. In one process (the embedded default)
the same wake-up is handed over in memory after the commit (`subscribe`). A rolled-back
transaction wakes nobody.

The wake-up is for latency only: the lanes still look for due commands every
`command_interval_s`, so a lost notification (a restarted database, a runtime that was
reconnecting) delays a command by at most one interval and never loses it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
CHANNEL = "meterpay_commands"
ANY = -1  # "some gateway": the runtime looks which of its gateways have something due
_KEY = "command_wake_gateways"
Wake = Callable[[frozenset[int]], None]
_subscribers: list[Wake] = []
_NOTIFY = text("SELECT pg_notify(:channel, :payload)")


def announce(session: Any, gateway_ids: Iterable[int | None]) -> None:
    """Commands for these gateways (None: not known here) were queued in `session`'s transaction."""
    target = session.sync_session if hasattr(session, "sync_session") else session
    target.info.setdefault(_KEY, set()).update(ANY if g is None else int(g) for g in gateway_ids)


def encode(gateway_ids: Iterable[int]) -> str:
    ids = sorted(set(gateway_ids))
    return "*" if ANY in ids or len(ids) > 500 else ",".join(map(str, ids))


def decode(payload: str) -> frozenset[int]:
    """Gateway ids from a notification; {ANY} for "*" or anything unreadable."""
    try:
        return frozenset(int(p) for p in payload.split(",") if p) if payload != "*" else frozenset({ANY})
    except ValueError:
        log.warning("ignoring a malformed command wake-up %r", payload[:80])
        return frozenset({ANY})


def subscribe(wake: Wake) -> Callable[[], None]:
    """Call `wake(gateway_ids)` after every commit in this process that queued commands; returns unsubscribe."""
    _subscribers.append(wake)
    return lambda: _subscribers.remove(wake) if wake in _subscribers else None


@event.listens_for(Session, "before_commit")
def _notify(session: Session) -> None:
    ids = session.info.get(_KEY)
    if ids and session.bind is not None and session.bind.dialect.name == "postgresql":
        session.execute(_NOTIFY, {"channel": CHANNEL, "payload": encode(ids)})


@event.listens_for(Session, "after_commit")
def _wake_here(session: Session) -> None:
    ids = session.info.pop(_KEY, None)
    if ids:
        for wake in list(_subscribers):
            try:
                wake(frozenset(ids))
            except Exception:  # noqa: BLE001 - a wake-up must never fail a commit
                log.exception("command wake-up subscriber failed")


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_KEY, None)


async def listen(engine: AsyncEngine, wake: Wake, retry_s: float = 5.0) -> None:
    """Until cancelled: LISTEN on PostgreSQL and pass each wake-up on; reconnect after a lost connection."""
    if engine.dialect.name != "postgresql":
        await asyncio.Event().wait()  # nothing crosses processes on SQLite: in-memory wake-ups only
    while True:
        try:
            async with engine.connect() as conn:
                driver = (await conn.get_raw_connection()).driver_connection
                lost = asyncio.Event()
                await driver.add_listener(CHANNEL, lambda _c, _pid, _ch, payload: wake(decode(payload)))
                driver.add_termination_listener(lambda _c: lost.set())
                wake(frozenset({ANY}))  # anything queued while we were not listening
                await lost.wait()
        except asyncio.CancelledError:
            raise
        except Exception as ex:  # noqa: BLE001 - the database is away: the lanes' interval covers it
            log.warning("command wake-ups unavailable (%s); retrying in %.0f s", ex, retry_s)
        await asyncio.sleep(retry_s)
