"""The one-statement balance read (services.tenant_balance) over every shape of account, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import event

from billing.money import Money
from services.accounts import OpenAccount, open_account
from services.tenant_balance import bound_balances
from services.uow import in_transaction
from services.wallets import recharge
from store.models import Account, Reading, TenantLink
from tests.factories import add_meter, make_site
from tests.tenant.seed import NOW, Clock, make_port

OPENID = "o-shapes"
DAY = timedelta(days=1)


def reading(meter, account_id: int, at, fen: int) -> Reading:
    return Reading(meter_id=meter.id, account_id=account_id, epoch=1, taken_at=at, received_at=at, total=fen,
                   verdict="billed", quantity=fen, amount_fen=fen)


async def build_shapes(sessions) -> dict[str, int]:
    """Four accounts bound to one openid: per-meter wallets, a meter-side meter, no meters, a new account."""
    async def build(s):
        kit = await make_site(s, "SH")
        kit.site.name = "形状公寓"
        e1, w1 = await add_meter(s, kit, "101", None), await add_meter(s, kit, "101W", None, "water")
        per = await open_account(s, OpenAccount(kit.site.id, "甲", "13700000001", (e1.id, w1.id), "per_meter"))
        per.opened_at = NOW - 60 * DAY
        await recharge(s, per.id, Money.yuan(70), "per-e", meter_id=e1.id)
        await recharge(s, per.id, Money.yuan(9), "per-w", meter_id=w1.id)
        s.add_all([reading(e1, per.id, NOW - 2 * DAY, 700), reading(e1, per.id, NOW - 30 * DAY, 99_999),
                   reading(w1, per.id, NOW - DAY, 300), reading(e1, per.id, NOW + DAY, 88_888)])

        side, wat = (await add_meter(s, kit, "202", None, billing_side="meter", meter_balance_fen=5_000),
                     await add_meter(s, kit, "202W", None, "water"))
        mixed = await open_account(s, OpenAccount(kit.site.id, "乙", "13700000002", (side.id, wat.id)))
        mixed.opened_at = NOW - 60 * DAY
        await recharge(s, mixed.id, Money.yuan(12), "mixed")
        s.add_all([reading(side, mixed.id, NOW - DAY, 1_000), reading(wat, mixed.id, NOW - DAY, 200)])

        bare = Account(site_id=kit.site.id, tenant_id=per.tenant_id, code="BARE-1", opened_at=NOW - 60 * DAY)
        s.add(bare)
        await s.flush()

        e4 = await add_meter(s, kit, "404", None)
        new = await open_account(s, OpenAccount(kit.site.id, "丁", "13700000004", (e4.id,)))
        new.opened_at = NOW - 2 * DAY
        await recharge(s, new.id, Money.yuan(10), "new")
        s.add_all([reading(e4, new.id, NOW - 3 * DAY, 50_000), reading(e4, new.id, NOW - DAY, 400)])
        for acc in (per, mixed, bare, new):
            s.add(TenantLink(openid=OPENID, account_id=acc.id, via="staff"))
        return {"per": per.id, "mixed": mixed.id, "bare": bare.id, "new": new.id}

    return await in_transaction(sessions, build)


async def test_every_account_shape_in_binding_order(sessions):
    ids = await build_shapes(sessions)
    views = await in_transaction(sessions, lambda s: bound_balances(s, OPENID, Clock()()))
    got = [(int(v.room.account_id), v.room.room_no, v.utility, v.balance, v.days_left) for v in views]
    assert got == [
        # per-meter: a wallet per meter; 700 fen over the last 7 days (the 30-day-old and future ones are out)
        (ids["per"], "A101", "electricity", Money.yuan(70), 70_00 * 7 // 700),
        (ids["per"], "A101", "water", Money.yuan(9), 9_00 * 7 // 300),
        # merged with a meter-side meter: the platform wallet (water only) first, then the meter's own balance
        (ids["mixed"], "A202", "water", Money.yuan(12), 12_00 * 7 // 200),
        (ids["mixed"], "A202", "electricity", Money(5_000), 5_000 * 7 // 1_000),
        # no meters: the account code names it, no wallet yet, nothing to estimate from
        (ids["bare"], "BARE-1", "electricity", Money(0), None),
        # opened two days ago: only usage since opening counts, over two days
        (ids["new"], "A404", "electricity", Money.yuan(10), 10_00 * 2 // 400),
    ]
    assert views[0].room.site_name == "形状公寓"


async def test_a_balance_question_is_one_statement(sessions, engine):
    await build_shapes(sessions)
    port = make_port(sessions, None, Clock())  # type: ignore[arg-type]
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        views = await port.balance(OPENID)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert len(views) == 6
    assert len(statements) == 1, statements


async def test_closed_and_other_users_accounts_are_not_shown(sessions):
    ids = await build_shapes(sessions)

    async def close(s):
        (await s.get(Account, ids["bare"])).state = "closed"
    await in_transaction(sessions, close)
    views = await in_transaction(sessions, lambda s: bound_balances(s, OPENID, Clock()()))
    assert ids["bare"] not in {int(v.room.account_id) for v in views}
    assert await in_transaction(sessions, lambda s: bound_balances(s, "o-someone-else", Clock()())) == []


async def test_questions_asked_together_share_one_statement(sessions, engine):
    ids = await build_shapes(sessions)
    port = make_port(sessions, None, Clock())  # type: ignore[arg-type]
    alone = await port.balance(OPENID)
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        together = await asyncio.gather(port.balance(OPENID), port.balance("o-nobody"), port.balance(OPENID))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert together == [alone, [], alone] and len(alone) == 6 and int(alone[0].room.account_id) == ids["per"]
    assert len(statements) == 1, statements


async def test_a_failed_shared_read_fails_every_question_in_it(sessions, engine):
    from bot.port import PortUnavailable

    port = make_port(sessions, None, Clock())  # type: ignore[arg-type]
    await engine.dispose()

    def refuse(*args):  # type: ignore[no-untyped-def]
        raise OSError("database is down")

    event.listen(engine.sync_engine, "do_connect", refuse)
    try:
        results = await asyncio.gather(port.balance(OPENID), port.balance("o-other"), return_exceptions=True)
    finally:
        event.remove(engine.sync_engine, "do_connect", refuse)
    assert [type(r) for r in results] == [PortUnavailable, PortUnavailable]
    assert await port.balance("o-nobody") == []  # the next question reads again
