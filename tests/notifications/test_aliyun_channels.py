"""Aliyun SMS and voice channels against the local Aliyun RPC sandbox."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from notifications.aliyun_rpc import AliyunKeys, percent_encode, signed_params
from notifications.sandbox.aliyun import AliyunSandbox
from notifications.sandbox.server import Fault
from notifications.sms_aliyun import AliyunSms, AliyunSmsConfig
from notifications.voice_aliyun import AliyunVoice, AliyunVoiceConfig

KEY_ID, SECRET = "LTAI5tTestKey", "aliyun-secret"


@pytest.fixture
async def sandbox():
    box = AliyunSandbox(keys={KEY_ID: SECRET})
    async with box.running():
        yield box


def sms(http, sandbox, secret=SECRET, key_id=KEY_ID, timeout_s=5.0, clock=None):
    keys = AliyunKeys(sandbox.url + "/", key_id, secret, timeout_s=timeout_s)
    config = AliyunSmsConfig(keys, sign_name="表计通", template_codes={"low_balance_2": "SMS_200002"})
    return AliyunSms(http, config, clock=clock)


def voice(http, sandbox, secret=SECRET):
    keys = AliyunKeys(sandbox.url + "/", KEY_ID, secret)
    config = AliyunVoiceConfig(keys, tts_codes={"low_balance_3": "TTS_300003"}, called_show_number="057100000000")
    return AliyunVoice(http, config)


async def test_sms_is_accepted_by_a_server_that_recomputes_the_signature(http, sandbox, message):
    result = await sms(http, sandbox).send(*message())
    assert result.ok and result.provider_id
    (got,) = sandbox.delivered
    assert got.params["Action"] == "SendSms" and got.params["Version"] == "2017-05-25"
    assert got.params["PhoneNumbers"] == "13800138000"
    assert got.params["SignName"] == "表计通" and got.params["TemplateCode"] == "SMS_200002"
    assert json.loads(got.params["TemplateParam"]) == {"account": "A-101", "balance": "12.30", "threshold": "20.00"}
    assert got.params["OutId"] == "alert:acct42:level2:crossing7"


async def test_sms_signed_with_a_wrong_secret_is_rejected_and_not_retried(http, sandbox, message):
    result = await sms(http, sandbox, secret="not-the-secret").send(*message())
    assert not result.ok and result.retryable is False
    assert "SignatureDoesNotMatch" in (result.error or "")
    assert sandbox.delivered == [] and sandbox.rejected[0].error == "SignatureDoesNotMatch"


async def test_sms_with_an_unknown_access_key_is_rejected(http, sandbox, message):
    result = await sms(http, sandbox, key_id="LTAIunknown").send(*message())
    assert not result.ok and "InvalidAccessKeyId.NotFound" in (result.error or "")


async def test_sms_stamped_twenty_minutes_ago_is_refused_as_expired(http, sandbox, message):
    stale = lambda: datetime.now(timezone.utc) - timedelta(minutes=20)  # noqa: E731
    result = await sms(http, sandbox, clock=stale).send(*message())
    assert not result.ok and "InvalidTimeStamp.Expired" in (result.error or "")


async def test_a_replayed_signature_nonce_is_refused(http, sandbox):
    keys = AliyunKeys(sandbox.url + "/", KEY_ID, SECRET)
    params = signed_params(keys, "SendSms", "2017-05-25", {
        "PhoneNumbers": "13800138000", "SignName": "表计通", "TemplateCode": "SMS_1"}, nonce="n-1")
    body = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in params.items())
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with http.post(sandbox.url + "/", data=body, headers=headers) as first:
        assert (await first.json())["Code"] == "OK"
    async with http.post(sandbox.url + "/", data=body, headers=headers) as second:
        assert second.status == 400 and (await second.json())["Code"] == "SignatureNonceUsed"
    assert len(sandbox.delivered) == 1


async def test_a_tampered_parameter_breaks_the_signature(http, sandbox):
    keys = AliyunKeys(sandbox.url + "/", KEY_ID, SECRET)
    params = signed_params(keys, "SendSms", "2017-05-25", {
        "PhoneNumbers": "13800138000", "SignName": "表计通", "TemplateCode": "SMS_1"})
    params["PhoneNumbers"] = "13900139000"
    async with http.post(sandbox.url + "/", data=params) as reply:
        assert (await reply.json())["Code"] == "SignatureDoesNotMatch"


@pytest.mark.parametrize(("code", "retryable"), [
    ("isv.BUSINESS_LIMIT_CONTROL", True),
    ("isp.SYSTEM_ERROR", True),
    ("isv.MOBILE_NUMBER_ILLEGAL", False),
    ("isv.TEMPLATE_MISSING_PARAMETERS", False),
])
async def test_provider_error_codes_say_whether_a_retry_may_help(http, sandbox, message, code, retryable):
    sandbox.fail(Fault(code=code))
    result = await sms(http, sandbox).send(*message())
    assert not result.ok and result.retryable is retryable and code in (result.error or "")
    assert sandbox.delivered == []


async def test_http_500_is_retryable_and_the_next_attempt_succeeds(http, sandbox, message):
    sandbox.fail(Fault(status=500))
    channel = sms(http, sandbox)
    first = await channel.send(*message())
    second = await channel.send(*message())
    assert not first.ok and first.retryable
    assert second.ok and len(sandbox.delivered) == 1


async def test_a_reply_slower_than_the_timeout_is_a_retryable_failure(http, sandbox, message):
    sandbox.fail(Fault(delay_s=5.0))
    result = await sms(http, sandbox, timeout_s=0.2).send(*message())
    assert not result.ok and result.retryable and "timeout" in (result.error or "")


async def test_a_kind_without_an_sms_template_is_not_sent(http, sandbox, message):
    channel = sms(http, sandbox)
    assert channel.kinds == frozenset({"low_balance_2"})
    result = await channel.send(*message(kind="cutoff_done", params={"account": "A", "balance": "0.00"}))
    assert not result.ok and result.retryable is False and sandbox.received == []


async def test_voice_call_is_placed_with_the_tts_template_and_params(http, sandbox, message):
    msg, rendered = message(kind="low_balance_3", key="alert:acct42:level3:crossing7")
    result = await voice(http, sandbox).send(msg, rendered)
    assert result.ok and result.provider_id and "^" in result.provider_id  # Aliyun CallId shape
    (got,) = sandbox.delivered
    assert got.params["Action"] == "SingleCallByTts"
    assert got.params["CalledNumber"] == "13800138000" and got.params["TtsCode"] == "TTS_300003"
    assert got.params["CalledShowNumber"] == "057100000000"
    assert json.loads(got.params["TtsParam"])["balance"] == "12.30"
    assert got.params["OutId"] == "alert:acct42:level3:crossing7"


async def test_voice_call_with_a_wrong_secret_is_rejected(http, sandbox, message):
    msg, rendered = message(kind="low_balance_3")
    result = await voice(http, sandbox, secret="wrong").send(msg, rendered)
    assert not result.ok and result.retryable is False and sandbox.delivered == []
