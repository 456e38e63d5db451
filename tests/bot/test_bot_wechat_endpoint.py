"""The /wechat callback over real HTTP, fed by wechatpy exactly as WeChat would send it."""

from __future__ import annotations

import asyncio
import time

import pytest
import xmltodict
from botsim import (
    ACCOUNT,
    SMS_CODE,
    STRANGER,
    TENANT,
    CustomMessages,
    MakeWeChat,
    wechat_signature,
)
from wechatpy.crypto import WeChatCrypto

from bot.fake_port import FakeTenantPort

MODES = ["plain", "compatible", "safe"]


# -- URL verification ----------------------------------------------------------------------
async def test_url_verification_echoes_echostr_for_a_valid_signature(make_wechat: MakeWeChat):
    wechat = await make_wechat()
    query = wechat.signed_query() | {"echostr": "8027460925437284137"}
    response = await wechat.client.get("/wechat", params=query)
    assert response.status == 200
    assert await response.text() == "8027460925437284137"


async def test_url_verification_with_a_forged_signature_is_forbidden(make_wechat: MakeWeChat):
    wechat = await make_wechat()
    query = wechat.signed_query() | {"signature": "0" * 40, "echostr": "123"}
    response = await wechat.client.get("/wechat", params=query)
    assert response.status == 403
    assert "123" not in await response.text()


async def test_url_verification_without_echostr_is_a_bad_request(make_wechat: MakeWeChat):
    wechat = await make_wechat()
    response = await wechat.client.get("/wechat", params=wechat.signed_query())
    assert response.status == 400


# -- answering in every mode ----------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
async def test_balance_is_answered_in_every_encryption_mode(make_wechat: MakeWeChat, mode: str):
    wechat = await make_wechat(mode)
    reply = await wechat.say("余额")
    assert "【A栋 101】电费余额 ¥12.34，预计可用 6 天" in reply
    assert "水费余额 ¥30.00" in reply


@pytest.mark.parametrize("mode", ["compatible", "safe"])
async def test_encrypted_messages_get_encrypted_signed_replies(make_wechat: MakeWeChat, mode: str):
    wechat = await make_wechat(mode)
    status, body = await wechat.post_xml(wechat.text_xml(TENANT, "帮助"))
    outer = xmltodict.parse(body)["xml"]
    assert status == 200 and set(outer) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
    assert "帮助" not in body and "余额" not in body
    assert "余额" in wechat.read_reply(body)


async def test_menu_click_is_answered_like_the_words(make_wechat: MakeWeChat):
    wechat = await make_wechat("safe")
    assert await wechat.click("BALANCE") == await wechat.say("查电费")


async def test_voice_message_is_answered_by_its_recognised_words(make_wechat: MakeWeChat):
    wechat = await make_wechat()
    xml = xmltodict.unparse({"xml": {
        "ToUserName": ACCOUNT, "FromUserName": TENANT, "CreateTime": str(int(time.time())),
        "MsgType": "voice", "MediaId": "m1", "Format": "amr", "Recognition": "还剩多少钱",
        "MsgId": "1234567890123456"}}, full_document=False)
    status, body = await wechat.post_xml(xml)
    assert status == 200 and "¥12.34" in wechat.read_reply(body)


async def test_unsubscribe_event_is_acknowledged_with_success(make_wechat: MakeWeChat,
                                                              port: FakeTenantPort):
    wechat = await make_wechat()
    status, body = await wechat.post_xml(wechat.event_xml(TENANT, "unsubscribe"))
    assert (status, body) == (200, "success")
    assert sum(port.calls.values()) == 0


# -- refusing what is not WeChat's ------------------------------------------------------
async def test_a_forged_signature_is_refused_before_the_port_is_asked(make_wechat: MakeWeChat,
                                                                       port: FakeTenantPort):
    wechat = await make_wechat()
    query, body = wechat.wrap(wechat.text_xml(TENANT, "余额"))
    response = await wechat.client.post("/wechat", params=query | {"signature": "f" * 40},
                                        data=body.encode())
    assert response.status == 403
    assert sum(port.calls.values()) == 0


async def test_a_stale_timestamp_is_refused(make_wechat: MakeWeChat):
    wechat = await make_wechat()
    query = wechat.signed_query(timestamp=int(time.time()) - 3600)
    response = await wechat.client.post("/wechat", params=query,
                                        data=wechat.text_xml(TENANT, "余额").encode())
    assert response.status == 403


async def test_a_forged_msg_signature_in_safe_mode_is_refused(make_wechat: MakeWeChat,
                                                               port: FakeTenantPort):
    wechat = await make_wechat("safe")
    query, body = wechat.wrap(wechat.text_xml(TENANT, "余额"))
    response = await wechat.client.post("/wechat", params=query | {"msg_signature": "a" * 40},
                                        data=body.encode())
    assert response.status == 403
    assert sum(port.calls.values()) == 0


async def test_a_message_encrypted_for_another_app_is_refused(make_wechat: MakeWeChat):
    wechat = await make_wechat("safe")
    wechat.crypto = WeChatCrypto(wechat.token, "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
                                 "wx_some_other_app")
    status, _ = await wechat.post_xml(wechat.text_xml(TENANT, "余额"))
    assert status == 403


MALFORMED = {
    "empty": b"",
    "blank": b"  \n ",
    "not xml": b"balance please",
    "truncated": b"<xml><ToUserName><![CDATA[gh_x]]></ToUserName><MsgType>te",
    "wrong root": b"<foo><MsgType>text</MsgType></foo>",
    "text root": b"<xml>hello</xml>",
    "no MsgType": b"<xml><FromUserName>o1</FromUserName><CreateTime>1</CreateTime></xml>",
    "no sender": b"<xml><MsgType>text</MsgType><Content>hi</Content><MsgId>9</MsgId></xml>",
    "entity": b'<!DOCTYPE xml [<!ENTITY a "aaaa">]><xml><MsgType>&a;</MsgType></xml>',
    "bad CreateTime": b"<xml><FromUserName>o1</FromUserName><CreateTime>x</CreateTime>"
                      b"<MsgType>text</MsgType><Content>hi</Content></xml>",
    "not utf-8": b"<xml><Content>\xff\xfe</Content></xml>",
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_bodies_are_a_bad_request(make_wechat: MakeWeChat, body: bytes):
    wechat = await make_wechat()
    response = await wechat.client.post("/wechat", params=wechat.signed_query(), data=body)
    assert response.status == 400


async def test_safe_mode_without_an_encrypt_element_is_a_bad_request(make_wechat: MakeWeChat):
    wechat = await make_wechat()
    query = wechat.signed_query() | {"encrypt_type": "aes", "msg_signature": "0" * 40}
    response = await wechat.client.post("/wechat", params=query,
                                        data=wechat.text_xml(TENANT, "余额").encode())
    assert response.status == 400


async def test_undecryptable_ciphertext_with_a_valid_signature_is_a_bad_request(
        make_wechat: MakeWeChat):
    wechat = await make_wechat("safe")
    query = wechat.signed_query()
    garbage = "bm90IGEgcmVhbCBjaXBoZXJ0ZXh0"
    query |= {"encrypt_type": "aes",
              "msg_signature": wechat_signature(wechat.token, query["timestamp"], query["nonce"],
                                                garbage)}
    body = f"<xml><ToUserName>{ACCOUNT}</ToUserName><Encrypt>{garbage}</Encrypt></xml>"
    response = await wechat.client.post("/wechat", params=query, data=body.encode())
    assert response.status == 400


async def test_an_oversized_body_is_refused_with_413(make_wechat: MakeWeChat):
    wechat = await make_wechat()
    body = wechat.text_xml(TENANT, "余" * 30_000).encode()
    response = await wechat.client.post("/wechat", params=wechat.signed_query(), data=body)
    assert response.status == 413


async def test_an_oversized_chunked_body_without_length_is_refused_with_413(
        make_wechat: MakeWeChat):
    wechat = await make_wechat()

    async def chunks():
        for _ in range(100):
            yield b"<xml>" + b"x" * 1024

    response = await wechat.client.post("/wechat", params=wechat.signed_query(), data=chunks())
    assert response.status == 413


async def test_the_endpoint_still_answers_after_bad_requests(make_wechat: MakeWeChat):
    wechat = await make_wechat()
    for body in MALFORMED.values():
        await wechat.client.post("/wechat", params=wechat.signed_query(), data=body)
    assert "¥12.34" in await wechat.say("balance")


# -- duplicates ------------------------------------------------------------------------------
async def test_a_duplicate_msg_id_is_answered_once_with_the_same_reply(
        make_wechat: MakeWeChat, port: FakeTenantPort):
    wechat = await make_wechat("safe")
    xml = wechat.text_xml(TENANT, "余额", msg_id=7_000_000_000_000_000_042)
    first = [await wechat.post_xml(xml) for _ in range(3)]
    assert {status for status, _ in first} == {200}
    assert len({wechat.read_reply(body) for _, body in first}) == 1
    assert port.calls["balance"] == 1


async def test_a_duplicate_event_from_the_same_user_and_time_is_answered_once(
        make_wechat: MakeWeChat, port: FakeTenantPort):
    wechat = await make_wechat()
    xml = wechat.event_xml(TENANT, "CLICK", "BALANCE", create_time=1_790_000_000)
    replies = [wechat.read_reply((await wechat.post_xml(xml))[1]) for _ in range(2)]
    assert replies[0] == replies[1] and "¥12.34" in replies[0]
    assert port.calls["balance"] == 1


async def test_the_same_time_from_two_users_is_not_a_duplicate(make_wechat: MakeWeChat,
                                                               port: FakeTenantPort):
    wechat = await make_wechat()
    for openid in (TENANT, STRANGER):
        await wechat.post_xml(wechat.event_xml(openid, "CLICK", "BALANCE", create_time=1_790_000_000))
    assert port.calls["balance"] == 2


async def test_a_duplicate_arriving_while_the_first_is_pending_gets_the_same_reply(
        make_wechat: MakeWeChat, port: FakeTenantPort):
    wechat = await make_wechat()
    port.delay_s = 0.2
    xml = wechat.text_xml(TENANT, "余额")
    results = await asyncio.gather(wechat.post_xml(xml), wechat.post_xml(xml))
    texts = [wechat.read_reply(body) for _, body in results]
    assert texts[0] == texts[1] and "¥12.34" in texts[0]
    assert port.calls["balance"] == 1


# -- the 5-second limit ----------------------------------------------------------------------
async def test_a_slow_port_gets_success_at_once_and_the_answer_as_a_custom_message(
        make_wechat: MakeWeChat, port: FakeTenantPort, custom: CustomMessages):
    wechat = await make_wechat("safe", reply_budget_s=0.1)
    port.delay_s = 0.6
    xml = wechat.text_xml(TENANT, "余额")
    started = time.monotonic()
    status, body = await wechat.post_xml(xml)
    assert (status, body) == (200, "success")
    assert time.monotonic() - started < 0.5
    assert custom.sent == []
    await asyncio.wait_for(custom.arrived.wait(), 5)
    assert custom.sent[0][0] == TENANT and "¥12.34" in custom.sent[0][1]
    assert await wechat.post_xml(xml) == (200, "success")
    assert port.calls["balance"] == 1 and len(custom.sent) == 1


async def test_a_port_outage_gets_a_busy_reply(make_wechat: MakeWeChat, port: FakeTenantPort):
    wechat = await make_wechat()
    port.down = True
    assert "系统繁忙" in await wechat.say("余额")


# -- conversations over HTTP ---------------------------------------------------------------
async def test_binding_by_phone_with_the_sms_code_then_asking_the_balance(
        make_wechat: MakeWeChat, port: FakeTenantPort):
    wechat = await make_wechat("compatible")
    assert "还没有绑定" in await wechat.say("余额", openid=STRANGER)
    assert "138****8000" in await wechat.say("绑定 13800138000", openid=STRANGER)
    assert port.sms_sent == [("13800138000", SMS_CODE)]
    assert "验证码不正确" in await wechat.say("000000", openid=STRANGER)
    assert "绑定成功" in await wechat.say(SMS_CODE, openid=STRANGER)
    assert "¥12.34" in await wechat.say("还剩多少钱", openid=STRANGER)


async def test_subscribe_greets_and_guides_an_unbound_user_to_bind(make_wechat: MakeWeChat):
    wechat = await make_wechat()
    status, body = await wechat.post_xml(wechat.event_xml(STRANGER, "subscribe"))
    reply = wechat.read_reply(body)
    assert status == 200 and "欢迎关注" in reply and "绑定 13800138000" in reply


async def test_recharge_click_returns_the_pay_link_for_the_room(make_wechat: MakeWeChat):
    wechat = await make_wechat("safe")
    reply = await wechat.click("RECHARGE")
    assert "https://pay.example.test/pay/?account=acc-101" in reply


async def test_usage_this_month_shows_cost_and_tou_split(make_wechat: MakeWeChat):
    wechat = await make_wechat()
    reply = await wechat.say("本月用了多少电")
    assert "本月用电 123.46度，费用 ¥67.89" in reply
    assert "尖 10.00 / 峰 40.00 / 平 50.00 / 谷 23.46 度" in reply


async def test_english_questions_get_english_replies(make_wechat: MakeWeChat):
    wechat = await make_wechat("safe")
    reply = await wechat.say("What's my balance?")
    assert "[A栋 101] electricity balance ¥12.34, about 6 days left" in reply
    assert "Reply \"top up\"" in reply


async def test_shutdown_waits_for_late_answers_to_be_sent(make_wechat: MakeWeChat,
                                                         port: FakeTenantPort,
                                                         custom: CustomMessages):
    wechat = await make_wechat(reply_budget_s=0.05)
    port.delay_s = 0.3
    assert await wechat.post_xml(wechat.text_xml(TENANT, "余额")) == (200, "success")
    await wechat.client.close()
    assert [openid for openid, _ in custom.sent] == [TENANT]
