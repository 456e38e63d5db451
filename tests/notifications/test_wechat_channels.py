"""WeChat template and subscribe channels against the local WeChat API sandbox."""

from __future__ import annotations

import pytest

from notifications.sandbox.server import Fault
from notifications.sandbox.wechat import WechatSandbox
from notifications.wechat_template import (
    AccessToken, WechatApp, WechatSubscribe, WechatTemplate, WechatTemplateSpec,
)

OA, OA_SECRET, MP, MP_SECRET = "wx-official", "oa-secret", "wx-mini", "mp-secret"
OPENID = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"
TEMPLATES = {"low_balance_2": WechatTemplateSpec(
    "tmpl-low2", {"thing1": "account", "amount2": "balance", "amount3": "threshold"}, url="https://m.example/pay")}
SUBSCRIBE = {"low_balance_1": WechatTemplateSpec(
    "sub-low1", {"thing1": "account", "amount2": "balance"}, page="pages/pay/index")}


@pytest.fixture
async def wechat():
    box = WechatSandbox(apps={OA: OA_SECRET, MP: MP_SECRET})
    async with box.running():
        yield box


def template_channel(http, wechat, secret=OA_SECRET, timeout_s=5.0):
    return WechatTemplate(http, WechatApp(OA, secret, base_url=wechat.url, timeout_s=timeout_s), TEMPLATES)


def subscribe_channel(http, wechat):
    return WechatSubscribe(http, WechatApp(MP, MP_SECRET, base_url=wechat.url), SUBSCRIBE)


async def test_a_template_message_is_sent_with_the_documented_body(http, wechat, message):
    result = await template_channel(http, wechat).send(*message(to=OPENID))
    assert result.ok and result.provider_id
    (got,) = wechat.delivered
    assert got.params["touser"] == OPENID and got.params["template_id"] == "tmpl-low2"
    assert got.params["data"] == {"thing1": {"value": "A-101"}, "amount2": {"value": "12.30"},
                                  "amount3": {"value": "20.00"}}
    assert got.params["url"] == "https://m.example/pay"
    assert got.params["client_msg_id"] == "alert:acct42:level2:crossing7"


async def test_the_access_token_is_fetched_once_and_reused(http, wechat, message):
    channel = template_channel(http, wechat)
    for n in range(3):
        assert (await channel.send(*message(to=OPENID, key=f"k{n}"))).ok
    assert wechat.token_requests == 1 and len(wechat.delivered) == 3


async def test_an_expired_token_is_refreshed_and_the_send_succeeds(http, wechat, message):
    channel = template_channel(http, wechat)
    assert (await channel.send(*message(to=OPENID, key="k1"))).ok
    wechat.expire_tokens()
    result = await channel.send(*message(to=OPENID, key="k2"))
    assert result.ok and wechat.token_requests == 2
    assert [r.error for r in wechat.rejected] == ["42001"]


async def test_a_token_past_its_cached_lifetime_is_refetched_before_sending(http, wechat, message):
    now = [0.0]
    app = WechatApp(OA, OA_SECRET, base_url=wechat.url)
    token = AccessToken(http, app, clock=lambda: now[0])
    channel = WechatTemplate(http, app, TEMPLATES, token=token)
    await channel.send(*message(to=OPENID, key="k1"))
    now[0] = 7200 - 299  # inside the refresh margin
    await channel.send(*message(to=OPENID, key="k2"))
    assert wechat.token_requests == 2 and wechat.rejected == []


async def test_a_resend_with_the_same_key_reaches_the_user_once(http, wechat, message):
    channel = template_channel(http, wechat)
    first = await channel.send(*message(to=OPENID))
    again = await channel.send(*message(to=OPENID))
    assert first.ok and again.ok and first.provider_id == again.provider_id
    assert len(wechat.delivered) == 1 and wechat.received[1].duplicate


async def test_a_wrong_app_secret_fails_without_retry(http, wechat, message):
    result = await template_channel(http, wechat, secret="wrong").send(*message(to=OPENID))
    assert not result.ok and result.retryable is False and "40125" in (result.error or "")
    assert wechat.received == []


async def test_a_tenant_who_unfollowed_the_account_cannot_get_template_messages(http, wechat, message):
    wechat.unfollowed.add(OPENID)
    result = await template_channel(http, wechat).send(*message(to=OPENID))
    assert not result.ok and result.retryable is False and "43004" in (result.error or "")


@pytest.mark.parametrize(("fault", "retryable"), [
    (Fault(code="45009"), True),  # API daily quota reached
    (Fault(code="-1"), True),  # system busy
    (Fault(code="40037"), False),  # invalid template_id
    (Fault(status=503), True),
])
async def test_wechat_errors_say_whether_a_retry_may_help(http, wechat, message, fault, retryable):
    wechat.fail(fault)
    result = await template_channel(http, wechat).send(*message(to=OPENID))
    assert not result.ok and result.retryable is retryable and wechat.delivered == []


async def test_a_slow_wechat_is_a_retryable_failure(http, wechat, message):
    channel = template_channel(http, wechat, timeout_s=0.3)
    wechat.fail(Fault(delay_s=5.0))
    result = await channel.send(*message(to=OPENID))
    assert not result.ok and result.retryable


async def test_a_subscribe_message_needs_an_opt_in_and_spends_it(http, wechat, message):
    channel = subscribe_channel(http, wechat)
    params = {"account": "A-101", "balance": "45.00", "threshold": "50.00"}
    refused = await channel.send(*message(kind="low_balance_1", to=OPENID, key="k0", params=params))
    assert not refused.ok and refused.retryable is False and "43101" in (refused.error or "")
    wechat.grant_subscription(OPENID, "sub-low1")
    sent = await channel.send(*message(kind="low_balance_1", to=OPENID, key="k1", params=params))
    again = await channel.send(*message(kind="low_balance_1", to=OPENID, key="k2", params=params))
    assert sent.ok and not again.ok and "43101" in (again.error or "")
    assert len(wechat.delivered) == 1 and wechat.opt_ins_left(OPENID, "sub-low1") == 0


async def test_a_subscribe_message_uses_the_page_language_and_value_limits(http, wechat, message):
    wechat.grant_subscription(OPENID, "sub-low1")
    long_name = "Building 7 East Wing Room 1203"
    params = {"account": long_name, "balance": "45.00", "threshold": "50.00"}
    result = await subscribe_channel(http, wechat).send(
        *message(kind="low_balance_1", to=OPENID, locale="en", params=params))
    assert result.ok
    body = wechat.delivered[0].params
    assert body["page"] == "pages/pay/index" and body["lang"] == "en_US"
    assert body["miniprogram_state"] == "formal"
    thing = body["data"]["thing1"]["value"]
    assert len(thing) == 20 and thing.startswith("Building 7") and thing.endswith("…")
