"""Conversations against the fake port, without HTTP: what the tenant reads back."""

from __future__ import annotations

import pytest
from botsim import SMS_CODE, STRANGER, TENANT

from bot.conversation import answer
from bot.fake_port import FakeTenantPort
from bot.intents import Intent, Kind, recognise


async def say(port: FakeTenantPort, text: str, openid: str = TENANT) -> str:
    reply = await answer(port, openid, recognise(text))
    assert reply is not None
    return reply


async def test_balance_lists_every_meter_with_days_left(port: FakeTenantPort):
    reply = await say(port, "余额")
    assert reply.splitlines() == [
        "【A栋 101】电费余额 ¥12.34，预计可用 6 天",
        "【A栋 101】水费余额 ¥30.00",
        "回复“充值”获取缴费链接。",
    ]


async def test_a_debt_is_shown_with_a_minus_and_no_days_left(port: FakeTenantPort):
    port.bind(TENANT, "acc-202")
    assert "【B栋 202】电费余额 -¥5.00" in (await say(port, "余额")).splitlines()


@pytest.mark.parametrize("text", ["余额", "今天用了多少电", "充值", "账单", "订单", "解绑"])
async def test_an_unbound_user_is_guided_to_bind(port: FakeTenantPort, text: str):
    reply = await say(port, text, openid=STRANGER)
    assert "还没有绑定" in reply and "绑定 13800138000" in reply


async def test_an_unbound_english_user_is_guided_in_english(port: FakeTenantPort):
    assert "bind 13800138000" in await say(port, "balance", openid=STRANGER)


async def test_usage_today_without_tou_has_quantity_and_cost(port: FakeTenantPort):
    assert await say(port, "今天用了多少电") == "【A栋 101】今天用电 4.50度，费用 ¥2.48"


async def test_water_usage_last_month_is_in_cubic_metres(port: FakeTenantPort):
    assert await say(port, "上个月") == "【A栋 101】上月用水 3.250吨，费用 ¥16.25"
    assert await say(port, "usage last month") == "[A栋 101] water last month: 3.250 m³, cost ¥16.25"


async def test_usage_with_no_records_says_so(port: FakeTenantPort):
    port.accounts["acc-101"].usage.clear()
    assert await say(port, "本月用电") == "本月暂无用量记录。"


async def test_recharge_links_every_room_with_preset_amounts(port: FakeTenantPort):
    port.bind(TENANT, "acc-202")
    reply = await say(port, "充值")
    assert "【A栋 101】点此充值：https://pay.example.test/pay/?account=acc-101" in reply
    assert "【B栋 202】点此充值：https://pay.example.test/pay/?account=acc-202" in reply
    assert "¥50.00 / ¥100.00 / ¥200.00" in reply


async def test_recharge_with_an_amount_presets_it_in_the_link(port: FakeTenantPort):
    reply = await say(port, "充值100元")
    assert "?account=acc-101&amount=100.00" in reply and "已预填金额 ¥100.00" in reply


async def test_bills_and_orders_are_listed(port: FakeTenantPort):
    assert await say(port, "账单") == "【A栋 101】2026-10-01~2026-10-31 ¥88.00 待缴"
    assert await say(port, "缴费记录") == "10-05 12:30 【A栋 101】充值 ¥100.00 已到账"
    assert await say(port, "orders") == "10-05 12:30 [A栋 101] top-up ¥100.00 paid"


async def test_a_bound_user_without_bills_is_told_there_are_none(port: FakeTenantPort):
    port.accounts["acc-101"].bills.clear()
    assert await say(port, "账单") == "暂无账单。"


async def test_binding_by_phone_sends_a_code_and_the_code_binds(port: FakeTenantPort):
    assert "138****8000" in await say(port, "绑定 13800138000", openid=STRANGER)
    assert port.sms_sent == [("13800138000", SMS_CODE)]
    assert await say(port, SMS_CODE, openid=STRANGER) == "绑定成功！已绑定：A栋 101。回复“余额”查询余额。"
    assert port.bound[STRANGER] == ["acc-101"]


async def test_an_unknown_phone_is_told_so_and_no_sms_is_sent(port: FakeTenantPort):
    assert "未找到" in await say(port, "绑定 13700137000", openid=STRANGER)
    assert port.sms_sent == []


async def test_a_code_without_a_bind_request_asks_for_the_phone_first(port: FakeTenantPort):
    assert "请先回复“绑定 手机号”" in await say(port, "123456", openid=STRANGER)


async def test_too_many_wrong_codes_expire_the_challenge(port: FakeTenantPort):
    await say(port, "绑定 13800138000", openid=STRANGER)
    replies = [await say(port, "000000", openid=STRANGER) for _ in range(6)]
    assert "验证码已失效" in replies[-1]
    assert "请先回复" in await say(port, SMS_CODE, openid=STRANGER)
    assert STRANGER not in port.bound


@pytest.mark.parametrize(("text", "expected"), [
    ("绑定 A栋 101 8000", "绑定成功"), ("绑定 A 101 8000", "绑定成功"),
    ("绑定 A栋 101 1111", "不匹配"), ("绑定 C栋 303 8000", "不匹配"),
    ("绑定 B栋 202 9000", "不支持按房号绑定"),
])
async def test_binding_by_room_checks_the_phone_digits_and_the_site(port: FakeTenantPort,
                                                                   text: str, expected: str):
    assert expected in await say(port, text, openid=STRANGER)


async def test_unbinding_the_only_room(port: FakeTenantPort):
    assert await say(port, "解绑") == "已解绑 A栋 101。"
    assert port.bound[TENANT] == []


async def test_unbinding_with_several_rooms_asks_which_then_unbinds_that_one(port: FakeTenantPort):
    port.bind(TENANT, "acc-202")
    assert "请回复“解绑 房号”" in await say(port, "解绑")
    assert await say(port, "解绑 B栋 202") == "已解绑 B栋 202。"
    assert "未找到已绑定的房间“909”" in await say(port, "解绑 909")
    assert port.bound[TENANT] == ["acc-101"]


async def test_help_subscribe_and_unknown_words_show_the_menu(port: FakeTenantPort):
    assert "余额 — 查询余额" in await say(port, "帮助")
    assert (await say(port, "天气")).startswith("抱歉，没有听懂")
    greeting = await answer(port, TENANT, Intent(Kind.SUBSCRIBE))
    assert greeting is not None and greeting.startswith("欢迎关注") and "绑定 13800138000" not in greeting


async def test_ignored_events_get_no_reply(port: FakeTenantPort):
    assert await answer(port, TENANT, Intent(Kind.IGNORE)) is None


async def test_an_outage_is_answered_with_a_busy_message_in_the_users_language(port: FakeTenantPort):
    port.down = True
    assert await say(port, "余额") == "系统繁忙，请稍后再试。"
    assert await say(port, "balance") == "The system is busy, please try again later."
