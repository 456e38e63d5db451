"""The database behind devices.commands.CommandStore: meter_commands rows, claimed safely, confirmed once.

`claim` takes commands by pushing their `next_attempt_at` forward by a claim lease inside the
claiming transaction (PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED; SQLite has one writer at a
time anyway), so two executor processes never pick the same row at once, and a crashed one's
claims come back when the lease runs out. A confirmation writes what the meter now is
(relay/valve state, purchase counter), settles a pending meter credit in the ledger and leaves
an audit entry, all in the transaction that marks the row confirmed.

Outcomes are written in groups (`save_many`, and `GroupCommit` to coalesce the saves of many
executors running at once into one transaction), so a busy bus does not wait on one database
round trip per command. A `sent` mark that finds its row settled meanwhile (cancelled by staff
or by a batch that gave up) raises `CommandWithdrawn`: the write never leaves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices.commands import OPEN_STATES, WANT_CLOSED, Command
from devices.errors import DeviceError
from devices.sample import MeterRef
from services import meter_credit
from services.uow import in_transaction
from store.models import Account, AuditEntry, Gateway, Meter, MeterCommand
from store.types import utcnow

log = logging.getLogger(__name__)
ACTOR = "system:commands"
# The outcome round's look-ups, built once and run on the connection: through the session each
# paid the ORM's compile and cache-key work (a tenth of the runtime's CPU at 100 credits/s).
_IDS = bindparam("ids", expanding=True)
_OWNERS = (select(MeterCommand.id, MeterCommand.kind, MeterCommand.params, Meter.account_id)
           .join(Meter, Meter.id == MeterCommand.meter_id).where(MeterCommand.id.in_(_IDS)))
_LOCK_ACCOUNTS = {skip: select(Account.id).where(Account.id.in_(_IDS)).order_by(Account.id)
                  .with_for_update(key_share=True, skip_locked=skip) for skip in (False, True)}
_OUTCOME_ROWS = (select(MeterCommand.id, MeterCommand.state, MeterCommand.kind, MeterCommand.meter_id,
                        MeterCommand.sent_at, MeterCommand.reason, MeterCommand.params, Meter.site_id, Meter.utility,
                        Meter.address)
                 .join(Meter, Meter.id == MeterCommand.meter_id).where(MeterCommand.id.in_(_IDS))
                 .order_by(MeterCommand.id).with_for_update(of=MeterCommand))
_METER_OWNERS = (select(Meter.account_id).where(Meter.id.in_(_IDS)).order_by(Meter.id)
                 .with_for_update(key_share=True))


def _due_commands(*columns: Any, now: Any, limit: Any, gateways: Any = None) -> Any:
    """The due commands of these gateways (None: every gateway), oldest first: what a claim takes."""
    stmt = (select(*columns).join(Meter, Meter.id == MeterCommand.meter_id).join(Gateway, Gateway.id == Meter.gateway_id)
            .where(MeterCommand.state.in_(OPEN_STATES), MeterCommand.next_attempt_at <= now)
            .order_by(MeterCommand.next_attempt_at, MeterCommand.id).limit(limit))
    return stmt if gateways is None else stmt.where(Gateway.code.in_(gateways))


def _claim_statement(by_gateway: bool) -> Any:
    """PostgreSQL: pick the due commands (SKIP LOCKED: another executor's picks are passed over),
    lease them and return them with their bus address, in one statement."""
    when = MeterCommand.__table__.c.next_attempt_at.type
    picked = _due_commands(MeterCommand.id, MeterCommand.next_attempt_at.label("due"), Gateway.code, Meter.port,
                           Meter.address, now=bindparam("now", type_=when), limit=bindparam("limit"),
                           gateways=bindparam("gateways", expanding=True) if by_gateway else None)
    c = picked.with_for_update(of=MeterCommand, skip_locked=True).cte("picked")
    mc = MeterCommand.__table__
    return (update(mc).where(mc.c.id == c.c.id).values(next_attempt_at=bindparam("lease", type_=when))
            .returning(mc.c.id, mc.c.kind, mc.c.expires_at, mc.c.params, mc.c.state, mc.c.attempts,
                       mc.c.last_error, c.c.due.label("next_attempt_at"), c.c.code, c.c.port, c.c.address))


_CLAIM_PG = {by_gateway: _claim_statement(by_gateway) for by_gateway in (False, True)}
AUDITED = frozenset(WANT_CLOSED) | {"push_credit"}
SaveMany = Callable[[list[Command], "set[str] | None"], Awaitable[set[str]]]
PATIENCE_S = 0.25  # how long an outcome may be put off because its account is busy; then a round waits
RECHECK_S = 0.005  # a round of put-off outcomes alone waits this long first


class CommandWithdrawn(DeviceError):
    """The command was settled elsewhere (cancelled) before its write left: it is not sent."""


def to_command(row: MeterCommand, gateway: str, port: int, address: str) -> Command:
    return Command(id=str(row.id), kind=row.kind, target=MeterRef(gateway, port, address),  # type: ignore[arg-type]
                   expires_at=row.expires_at, params=dict(row.params or {}), state=row.state,  # type: ignore[arg-type]
                   attempts=row.attempts, next_attempt_at=row.next_attempt_at, last_error=row.last_error)


class GroupCommit:
    """Saves from many concurrent callers, written together: one transaction per round.

    A round takes every save queued so far (up to `max_group`), in order; while it runs, new
    saves queue for the next one. If the group's transaction fails, its saves are retried one by
    one so a single bad row fails only its own caller.

    A round does not wait for accounts other transactions hold (a payment, an ingest batch): the
    outcomes that need them are put off to a later round (`save_outcomes`' `busy`) for up to
    PATIENCE_S, after which a round waits for them. Without this one confirmation waiting for
    a busy account held up every other save of the round — every bus's `sent` marks — while the
    accounts the round had already locked held up the payments behind them: a lock convoy that
    100 payments/s on 32 accounts fell into.
    """

    def __init__(self, save_many: SaveMany, max_group: int = 200) -> None:
        self.save_many, self.max_group = save_many, max_group
        self._queue: list[tuple[Command, asyncio.Future[bool]]] = []
        self._task: asyncio.Task[None] | None = None
        self._put_off: dict[str, float] = {}  # command id -> when its outcome was first put off
        self.rounds = 0
        self.deferred = 0  # outcomes put off, in all

    async def save(self, command: Command) -> bool:
        """Queue one save and wait for its round; True if the row was no longer open (refused)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((command, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="meter command writes")
        return await asyncio.shield(future)  # a cancelled caller does not take its save away from the round

    async def close(self) -> None:
        """Let queued saves finish (a stopping runtime still records what the meters did)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            if all(c.id in self._put_off for c, _ in self._queue):  # nothing new: give the holders a moment
                await asyncio.sleep(RECHECK_S)
            group, self._queue = self._queue[: self.max_group], self._queue[self.max_group:]
            self.rounds += 1
            now = loop.time()
            patient = any(now - self._put_off.get(c.id, now) >= PATIENCE_S for c, _ in group)
            busy: set[str] = set()
            try:
                refused = await self.save_many([c for c, _ in group], None if patient else busy)
            except Exception:  # noqa: BLE001 - fall back to one transaction per save below
                log.warning("a group of %d command saves failed; saving them one by one", len(group), exc_info=True)
                for command, future in group:
                    self._put_off.pop(command.id, None)
                    try:
                        one = await self.save_many([command], None)
                    except Exception as ex:  # noqa: BLE001 - handed to that caller
                        _settle(future, exc=ex)
                    else:
                        _settle(future, result=command.id in one)
                continue
            later = [(c, f) for c, f in group if c.id in busy]
            for command, future in group:
                if command.id in busy:
                    self._put_off.setdefault(command.id, now)
                else:
                    self._put_off.pop(command.id, None)
                    _settle(future, result=command.id in refused)
            if later:
                self.deferred += len(later)
                self._queue[:0] = later  # first in the next round, still in their order


def _settle(future: asyncio.Future[bool], result: bool = False, exc: BaseException | None = None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


class DbCommandStore:
    """CommandStore on meter_commands; `gateways` limits it to the gateways this process drives.

    With `group` set, saves go through that GroupCommit (shared by every executor of a runtime).
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], gateways: Collection[str] | None = None,
                 claim_s: float = 300.0, group: GroupCommit | None = None) -> None:
        self.sessions, self.claim_s, self.group = sessions, claim_s, group
        self.gateways = None if gateways is None else frozenset(gateways)
        self._withdrawn: set[str] = set()

    async def due(self, now: datetime, limit: int = 100) -> list[Command]:
        """Claim up to `limit` queued/sent commands that are due, oldest first."""
        return await self.claim(now, limit, self.gateways)

    async def claim(self, now: datetime, limit: int, gateways: Collection[str] | None) -> list[Command]:
        """Claim up to `limit` due commands of these gateways (None: every gateway), in one transaction.

        On PostgreSQL that is one statement in autocommit (pick SKIP LOCKED, lease, return): a lane
        claims once per wake-up, about once per payment, and BEGIN, the look-up, the UPDATE and
        COMMIT were four round trips."""
        engine = self.sessions.kw.get("bind")
        if engine is not None and engine.dialect.name == "postgresql":
            return await self._claim_pg(engine, now, limit, gateways)
        return await in_transaction(self.sessions, lambda s: self._claim(s, now, limit, gateways))

    async def _claim_pg(self, engine: Any, now: datetime, limit: int,
                        gateways: Collection[str] | None) -> list[Command]:
        lease = now + timedelta(seconds=self.claim_s)
        params: dict[str, Any] = {"now": now, "limit": limit, "lease": lease}
        if gateways is not None:
            params["gateways"] = sorted(gateways)
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            rows = (await conn.execute(_CLAIM_PG[gateways is not None], params)).all()
        rows.sort(key=lambda r: (r.next_attempt_at, r.id))  # RETURNING keeps no order: as picked
        return [replace(to_command(r, r.code, r.port, r.address), next_attempt_at=lease) for r in rows]  # type: ignore[arg-type]

    async def _claim(self, session: AsyncSession, now: datetime, limit: int,
                     gateways: Collection[str] | None) -> list[Command]:
        stmt = _due_commands(MeterCommand.id, MeterCommand.kind, MeterCommand.expires_at, MeterCommand.params,
                             MeterCommand.state, MeterCommand.attempts, MeterCommand.next_attempt_at,
                             MeterCommand.last_error, Gateway.code, Meter.port, Meter.address, now=now, limit=limit,
                             gateways=None if gateways is None else sorted(gateways))
        if session.bind.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True, of=MeterCommand)
        rows = (await session.execute(stmt)).all()
        lease = now + timedelta(seconds=self.claim_s)
        if rows:  # the claim: invisible to other executors until the lease ends
            await session.execute(update(MeterCommand).where(MeterCommand.id.in_([r.id for r in rows]))
                                  .values(next_attempt_at=lease).execution_options(synchronize_session=False))
        return [replace(to_command(row, row.code, row.port, row.address), next_attempt_at=lease) for row in rows]  # type: ignore[arg-type]

    async def due_gateways(self, now: datetime, gateways: Collection[str]) -> set[str]:
        """Which of these gateways have a command due (a cheap look, nothing claimed)."""
        async with self.sessions() as session:
            stmt = (select(Gateway.code).distinct().join(Meter, Meter.gateway_id == Gateway.id)
                    .join(MeterCommand, MeterCommand.meter_id == Meter.id)
                    .where(MeterCommand.state.in_(OPEN_STATES), MeterCommand.next_attempt_at <= now,
                           Gateway.code.in_(sorted(gateways))))
            return set(await session.scalars(stmt))

    async def release(self, commands: Collection[Command], now: datetime) -> None:
        """Hand claimed commands that were never started back (due now), e.g. when a runtime stops."""
        ids = [int(c.id) for c in commands]
        if ids:
            await in_transaction(self.sessions, lambda s: s.execute(
                update(MeterCommand).where(MeterCommand.id.in_(ids), MeterCommand.state.in_(OPEN_STATES))
                .values(next_attempt_at=now).execution_options(synchronize_session=False)))

    async def save(self, command: Command) -> None:
        refused = await (self.group.save(command) if self.group else self._save_one(command))
        if refused and command.state == "sent" and command.id not in self._withdrawn:
            self._withdrawn.add(command.id)  # the executor's own follow-up save of this attempt is quiet
            raise CommandWithdrawn(f"command {command.id} was settled elsewhere before it was sent")
        self._withdrawn.discard(command.id)

    async def _save_one(self, command: Command) -> bool:
        return command.id in await self.save_many([command])

    async def save_many(self, commands: list[Command], busy: set[str] | None = None) -> set[str]:
        """Record these outcomes in one transaction, in order; the ids whose row was no longer open.
        With `busy`, outcomes whose accounts are held elsewhere are left for later (see save_outcomes)."""
        return await in_transaction(self.sessions, lambda s: save_outcomes(s, commands, busy))


async def save_outcomes(session: AsyncSession, commands: list[Command], busy: set[str] | None = None) -> set[str]:
    """Record outcomes in order; the ids whose row was no longer open (their outcome is dropped).

    `busy` (PostgreSQL; SQLite has no row locks): the accounts are locked SKIP LOCKED, and the
    outcomes of a command whose account another transaction holds are not written now: their ids
    go into `busy` for the caller to save in a later round, instead of this one waiting.

    Locks follow the order every writer takes (README): the accounts of the meters whose outcome
    reaches past the command row (a confirmation moves the meter; a settled or voided credit moves
    the ledger), then the command rows, then those meters, each in id order; the ledger accounts
    come last, in the postings. A `sent` mark or a retry writes only its command row, so it takes
    no account lock and never waits behind an ingest batch on the bus's critical path. Outcomes
    are written with a few bulk statements (relay batches, and credits: their `sent` marks like any
    other, the confirmed ones settled in one bulk ledger post); only a credit that failed or
    expired goes through the ORM, to void its hold.
    """
    owners = await owners_by_command(session, {int(c.id) for c in commands if _reaches_owner(c)})
    wanted = set().union(*owners.values())
    if busy is not None and session.bind.dialect.name == "postgresql":
        busy.clear()  # a retried transaction starts over
        locked = await lock_accounts(session, wanted, skip_locked=True)
        later = {str(cid) for cid, accounts in owners.items() if not accounts <= locked}
        if later:
            busy.update(later)
            commands = [c for c in commands if c.id not in later]
    else:
        locked = await lock_accounts(session, wanted)
    ids = sorted({int(c.id) for c in commands})
    found = (await _by_ids(session, _OUTCOME_ROWS, ids)).all()
    rows = {r.id: r for r in found}
    confirming = sorted({rows[int(c.id)].meter_id for c in commands if c.state == "confirmed" and int(c.id) in rows})
    if confirming:
        owners = set((await _by_ids(session, _METER_OWNERS, confirming)).scalars())
        late = {i for i in owners if i is not None} - locked
        if late:  # an account opened on one of these meters since the first look (rare): lock it too, late
            await lock_accounts(session, late)
    now = utcnow()
    state = {i: (r.state, r.sent_at) for i, r in rows.items()}
    updates: dict[int, dict[str, Any]] = {}
    relays: dict[int, bool] = {}
    audits: list[dict[str, Any]] = []
    credits: list[Command] = []  # failed / expired: their hold is voided through the ORM
    settled: list[meter_credit.Confirmed] = []
    counters: dict[int, int] = {}  # meter id -> highest purchase confirmed in this round
    refused: set[str] = set()
    for command in commands:
        cid = int(command.id)
        if cid not in rows:
            log.warning("command %s vanished before its outcome was saved", command.id)
            continue
        before, sent_at = state[cid]
        if before not in OPEN_STATES:
            refused.add(command.id)  # cancelled (or settled) meanwhile: a later outcome does not overwrite it
            continue
        row = rows[cid]
        if row.kind == "push_credit" and command.state in ("failed", "expired", "cancelled"):
            credits.append(command)
            continue
        if row.kind == "push_credit" and command.state == "confirmed":
            count = int(row.params["purchase_count"])
            counters[row.meter_id] = max(counters.get(row.meter_id, 0), count)
            settled.append(meter_credit.Confirmed(cid, row.params, row.meter_id, row.site_id, row.utility,
                                                  row.address))
        if command.state == "sent" and sent_at is None:
            sent_at = now
        state[cid] = (command.state, sent_at)
        updates[cid] = dict(b_id=cid, b_state=command.state, b_attempts=command.attempts,
                            b_error=(command.last_error or None) and command.last_error[:500],
                            b_next=command.next_attempt_at or now, b_sent=sent_at,
                            b_confirmed=now if command.state == "confirmed" else None)
        if command.state == "confirmed" and row.kind in WANT_CLOSED:
            relays[row.meter_id] = WANT_CLOSED[row.kind]
        if command.state != before and command.state not in OPEN_STATES and row.kind in AUDITED:
            audits.append(_audit_values(cid, row.kind, command.state, before, command.attempts,
                                        updates[cid]["b_error"], row.reason, ACTOR, row.site_id, now))
    conn = await session.connection()
    if updates:
        table = MeterCommand.__table__
        await conn.execute(update(table).where(table.c.id == bindparam("b_id")).values(
            state=bindparam("b_state"), attempts=bindparam("b_attempts"), last_error=bindparam("b_error"),
            next_attempt_at=bindparam("b_next"), sent_at=bindparam("b_sent"),
            confirmed_at=func.coalesce(bindparam("b_confirmed", type_=table.c.confirmed_at.type), table.c.confirmed_at)),
            list(updates.values()))
    if relays:
        table = Meter.__table__
        await conn.execute(update(table).where(table.c.id == bindparam("b_id")).values(
            relay_closed=bindparam("b_closed"), relay_changed_at=bindparam("b_at")),
            [dict(b_id=m, b_closed=closed, b_at=now) for m, closed in sorted(relays.items())])
    if counters:
        table = Meter.__table__
        await conn.execute(update(table).where(table.c.id == bindparam("b_id"), table.c.purchase_count < bindparam("b_count"))
                           .values(purchase_count=bindparam("b_count")),
                           [dict(b_id=m, b_count=n) for m, n in sorted(counters.items())])
    await meter_credit.settle_many(session, settled)
    if audits:
        await conn.execute(insert(AuditEntry.__table__), audits)
    for command in credits:
        row = await session.get(MeterCommand, int(command.id))
        assert row is not None
        await _end_credit(session, row, command, now, rows[int(command.id)].site_id)
    return refused


async def _end_credit(session: AsyncSession, row: MeterCommand, command: Command, now: datetime,
                      site_id: int) -> None:
    """A credit that will not land (failed, expired): its row, its hold voided in the ledger, the audit."""
    before = row.state
    row.state, row.attempts, row.last_error = command.state, command.attempts, (command.last_error or None)
    if row.last_error:
        row.last_error = row.last_error[:500]
    row.next_attempt_at = command.next_attempt_at or now
    if command.state in ("failed", "expired"):
        await meter_credit.void(session, row)
    if command.state != before and command.state not in OPEN_STATES and row.kind in AUDITED:
        _audit(session, row, before, ACTOR, site_id, now)


def _reaches_owner(command: Command) -> bool:
    """Whether this outcome writes past its command row: a meter confirmed, or a credit settled or voided."""
    return command.state == "confirmed" or (command.kind == "push_credit" and command.state not in OPEN_STATES)


async def owners_of(session: AsyncSession, command_ids: Collection[int]) -> set[int]:
    """The accounts these commands' outcomes may write to (see owners_by_command)."""
    return set().union(*(await owners_by_command(session, command_ids)).values())


async def owners_by_command(session: AsyncSession, command_ids: Collection[int]) -> dict[int, set[int]]:
    """Per command, the accounts its outcome may write to, read without locks: its meter's account
    and, for a credit, the account whose wallet holds it (the meter may have changed hands since)."""
    if not command_ids:
        return {}
    rows = await _by_ids(session, _OWNERS, sorted(command_ids))
    out: dict[int, set[int]] = {}
    for cid, kind, params, owner in rows:
        accounts = out.setdefault(cid, set())
        if owner is not None:
            accounts.add(int(owner))
        if kind == "push_credit" and (params or {}).get("account_id") is not None:
            accounts.add(int(params["account_id"]))
    return out


async def lock_accounts(session: AsyncSession, ids: Collection[int], skip_locked: bool = False) -> set[int]:
    """Lock these accounts in id order, before anything else of theirs: the first step of the lock
    order every writer keeps (accounts, meters, wallets). NO KEY UPDATE, as ingest takes them: a
    payment and a command outcome of one account queue behind each other instead of deadlocking,
    and rows that merely point at the account can still be inserted. `skip_locked`: take only
    those no other transaction holds. Returns the ids locked."""
    if not ids:
        return set()
    return set((await _by_ids(session, _LOCK_ACCOUNTS[skip_locked], sorted(ids))).scalars())


async def _by_ids(session: AsyncSession, stmt: Any, ids: list[int]) -> Any:
    """Run a prebuilt statement for these ids on the session's connection; pending ORM changes are
    flushed first, as the session itself would."""
    await session.flush()
    return await (await session.connection()).execute(stmt, {"ids": ids})


def _audit_values(command_id: int, kind: str, state: str, before: str, attempts: int, error: str | None,
                  reason: str | None, actor: str, site_id: int | None, now: datetime) -> dict[str, Any]:
    after: dict[str, Any] = {"state": state, "kind": kind, "attempts": attempts}
    if error:
        after["error"] = error
    return dict(at=now, actor=actor, site_id=site_id, action=f"meter_command.{state}", object_type="meter_command",
                object_id=str(command_id), before={"state": before}, after=after, reason=reason and reason[:300])


def _audit(session: AsyncSession, row: MeterCommand, before: str, actor: str, site_id: int | None,
           now: datetime) -> None:
    session.add(AuditEntry(**_audit_values(row.id, row.kind, row.state, before, row.attempts, row.last_error,
                                           row.reason, actor, site_id, now)))


async def cancel(session: AsyncSession, command_id: int, actor: str, reason: str | None = None) -> bool:
    """Cancel a command that has not been sent; a sent one must be confirmed or expire.

    A credit's account is locked before its row (the hold goes back to the wallet): the lock order
    of every writer. Other kinds write only their row and take no account lock, so a batch
    cancelling many of them cannot lock accounts out of id order."""
    kind = await session.scalar(select(MeterCommand.kind).where(MeterCommand.id == command_id))
    if kind == "push_credit":
        await lock_accounts(session, await owners_of(session, [command_id]))
    row = await session.get(MeterCommand, command_id, with_for_update=True)
    if row is None or row.state != "queued":
        return False
    row.state, row.last_error = "cancelled", (reason or f"cancelled by {actor}")[:500]
    if row.kind == "push_credit":
        await meter_credit.void(session, row)
    if row.kind in AUDITED:
        site_id = await session.scalar(select(Meter.site_id).where(Meter.id == row.meter_id))
        _audit(session, row, "queued", actor, site_id, utcnow())
    return True
