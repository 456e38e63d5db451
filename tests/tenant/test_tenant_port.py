"""The database-backed TenantPort answers the bot's questions from real ledger and reading rows."""

from __future__ import annotations

from billing.money import Money
from bot.conversation import answer
from bot.intents import recognise
from bot.port import TouSplit
from services.tenant import DbTenantPort, pay_signature
from services.uow import in_transaction
from store.models import TenantLink
from tests.tenant.seed import SECRET, Seeded

OPENID = "o-han"


async def bind(sessions, openid: str, *account_ids: int) -> None:
    async def link(s):
        for a in account_ids:
            s.add(TenantLink(openid=openid, account_id=a, via="staff"))
    await in_transaction(sessions, link)


async def test_an_unbound_user_sees_nothing(port: DbTenantPort):
    assert await port.bindings("o-nobody") == []
    assert await port.balance("o-nobody") == []
    assert await port.recent_orders("o-nobody") == []


async def test_balance_is_the_wallet_with_days_left_at_the_last_weeks_usage(sessions, port, seeded: Seeded):
    await bind(sessions, OPENID, seeded.account_id)
    [view] = await port.balance(OPENID)
    assert view.balance == Money.yuan("91.00")  # 100 - 2.30 - 2.40 - 4.30
    assert view.utility == "electricity"
    # in the last 7 days only today's 4.30 was used: 91.00 / (4.30 / 7) = 148.1
    assert view.days_left == 148
    assert (view.room.site_name, view.room.room_no, view.room.label) == ("阳光公寓", "A101", "阳光公寓 A101")


async def test_an_account_without_recent_usage_has_no_days_left(sessions, port, seeded: Seeded):
    await bind(sessions, OPENID, seeded.other_site_account_id)
    [view] = await port.balance(OPENID)
    assert (view.balance, view.days_left) == (Money.yuan(20), None)


async def test_usage_today_this_month_and_last_month_in_site_time_with_tou_split(sessions, port, seeded):
    await bind(sessions, OPENID, seeded.account_id)
    [today] = await port.usage(OPENID, "today")
    assert (today.quantity, today.cost, today.tou) == (5_000, Money.yuan("4.30"), TouSplit(0, 4_000, 0, 1_000))
    [month] = await port.usage(OPENID, "month")
    assert (month.quantity, month.cost, month.tou) == (13_000, Money.yuan("6.70"), TouSplit(0, 4_000, 0, 9_000))
    [last] = await port.usage(OPENID, "last_month")
    assert (last.quantity, last.cost, last.tou) == (3_000, Money.yuan("2.30"), TouSplit(0, 2_000, 0, 1_000))


async def test_recent_orders_show_the_recharge_as_paid(sessions, port, seeded: Seeded):
    await bind(sessions, OPENID, seeded.account_id)
    [order] = await port.recent_orders(OPENID)
    assert (order.kind, order.amount, order.status, order.channel) == ("recharge", Money.yuan(100), "paid", "cash")


async def test_bills_are_empty_before_any_postpaid_run(sessions, port, seeded: Seeded):
    await bind(sessions, OPENID, seeded.account_id)
    assert await port.bills(OPENID) == []


async def test_the_bot_answers_balance_from_the_database(sessions, port, seeded: Seeded):
    await bind(sessions, OPENID, seeded.account_id)
    reply = await answer(port, OPENID, recognise("还剩多少钱"))
    assert "【阳光公寓 A101】电费余额 ¥91.00，预计可用 148 天" in (reply or "")
    usage = await answer(port, OPENID, recognise("今天用了多少电"))
    assert "5.00度" in (usage or "") and "¥4.30" in (usage or "")


async def test_a_pay_link_carries_an_unforgeable_tag(port: DbTenantPort, seeded: Seeded):
    link = port.pay_link(str(seeded.account_id), Money.yuan(50))
    sig = pay_signature(SECRET, seeded.account_id)
    assert link == f"https://pay.example.test/pay/?account={seeded.account_id}&sig={sig}&amount=50.00"
    assert pay_signature("another secret", seeded.account_id) != sig


async def test_unbind_removes_only_that_room(sessions, port, seeded: Seeded):
    await bind(sessions, OPENID, seeded.account_id, seeded.other_site_account_id)
    assert await port.unbind(OPENID, str(seeded.account_id)) is True
    assert [r.account_id for r in await port.bindings(OPENID)] == [str(seeded.other_site_account_id)]
    assert await port.unbind(OPENID, str(seeded.account_id)) is False
    assert await port.unbind(OPENID, "not-a-number") is False


async def test_a_closed_account_is_no_longer_shown(sessions, port, seeded: Seeded):
    await bind(sessions, OPENID, seeded.account_id)
    from store.models import Account

    async def close(s):
        (await s.get(Account, seeded.account_id)).state = "closed"
    await in_transaction(sessions, close)
    assert await port.bindings(OPENID) == []
