"""Tencent Cloud SMS channel against the local TC3-checking sandbox."""

from __future__ import annotations

import json
import time

import pytest

from notifications.sandbox.server import Fault
from notifications.sandbox.tencent import TencentSandbox
from notifications.sms_tencent import TencentSms, TencentSmsConfig

SECRET_ID, SECRET_KEY, APP = "AKIDtestSecretId", "tencent-secret-key", "1400006666"


@pytest.fixture
async def sandbox():
    box = TencentSandbox(keys={SECRET_ID: SECRET_KEY}, sdk_app_ids=frozenset({APP}))
    async with box.running():
        yield box


def channel(http, sandbox, secret_key=SECRET_KEY, clock=time.time, timeout_s=5.0):
    config = TencentSmsConfig(
        SECRET_ID, secret_key, sdk_app_id=APP, sign_name="表计通",
        template_ids={"low_balance_2": "449739", "receipt": "449740"},
        endpoint=sandbox.url + "/", timeout_s=timeout_s,
    )
    return TencentSms(http, config, clock=clock)


async def test_sms_is_accepted_by_a_server_that_recomputes_tc3(http, sandbox, message):
    result = await channel(http, sandbox).send(*message())
    assert result.ok and result.provider_id
    (got,) = sandbox.delivered
    assert got.headers["X-TC-Action"] == "SendSms" and got.headers["X-TC-Version"] == "2021-01-11"
    assert got.headers["Authorization"].startswith(f"TC3-HMAC-SHA256 Credential={SECRET_ID}/")
    assert "SignedHeaders=content-type;host;x-tc-action" in got.headers["Authorization"]
    assert got.params["PhoneNumberSet"] == ["+8613800138000"]
    assert got.params["TemplateId"] == "449739" and got.params["SignName"] == "表计通"
    assert got.params["TemplateParamSet"] == ["A-101", "12.30", "20.00"]  # declared order
    assert got.params["SessionContext"] == "alert:acct42:level2:crossing7"


async def test_template_params_follow_the_declared_order_for_every_kind(http, sandbox, message):
    params = {"paid_at": "2026-11-26 10:00", "balance": "80.00", "amount": "50.00", "account": "A-7"}
    result = await channel(http, sandbox).send(*message(kind="receipt", params=params))
    assert result.ok
    assert sandbox.delivered[0].params["TemplateParamSet"] == ["A-7", "50.00", "80.00", "2026-11-26 10:00"]


async def test_sms_signed_with_a_wrong_secret_fails_the_signature_check(http, sandbox, message):
    result = await channel(http, sandbox, secret_key="wrong").send(*message())
    assert not result.ok and result.retryable is False
    assert "AuthFailure.SignatureFailure" in (result.error or "")
    assert sandbox.delivered == []


async def test_a_request_signed_ten_minutes_ago_has_expired(http, sandbox, message):
    result = await channel(http, sandbox, clock=lambda: time.time() - 600).send(*message())
    assert not result.ok and "AuthFailure.SignatureExpire" in (result.error or "")


async def test_a_body_changed_after_signing_is_rejected(http, sandbox, message):
    sender = channel(http, sandbox)
    msg, rendered = message()
    headers, body = sender.request(msg, rendered, "449739")
    forged = body.replace(b"+8613800138000", b"+8613900139000")
    async with http.post(sandbox.url + "/", data=forged, headers=headers) as reply:
        answer = await reply.json()
    assert answer["Response"]["Error"]["Code"] == "AuthFailure.SignatureFailure"


async def test_an_unknown_sms_app_is_refused_after_authentication(http, sandbox, message):
    config = TencentSmsConfig(SECRET_ID, SECRET_KEY, sdk_app_id="1400000000", sign_name="x",
                              template_ids={"low_balance_2": "1"}, endpoint=sandbox.url + "/")
    result = await TencentSms(http, config).send(*message())
    assert not result.ok and "InvalidParameterValue.SdkAppIdNotExist" in (result.error or "")


@pytest.mark.parametrize(("fault", "retryable"), [
    (Fault(code="InternalError.Timeout"), True),
    (Fault(code="RequestLimitExceeded"), True),
    (Fault(code="LimitExceeded.PhoneNumberThirtySecondLimit", per_item=True), True),
    (Fault(code="LimitExceeded.PhoneNumberDailyLimit", per_item=True), False),
    (Fault(code="InvalidParameterValue.IncorrectPhoneNumber", per_item=True), False),
    (Fault(status=502), True),
])
async def test_provider_errors_say_whether_a_retry_may_help(http, sandbox, message, fault, retryable):
    sandbox.fail(fault)
    result = await channel(http, sandbox).send(*message())
    assert not result.ok and result.retryable is retryable
    assert sandbox.delivered == []


async def test_a_reply_slower_than_the_timeout_is_a_retryable_failure(http, sandbox, message):
    sandbox.fail(Fault(delay_s=5.0))
    result = await channel(http, sandbox, timeout_s=0.2).send(*message())
    assert not result.ok and result.retryable and "timeout" in (result.error or "")


async def test_the_reply_echoes_the_message_key_as_session_context(http, sandbox, message):
    sender = channel(http, sandbox)
    msg, rendered = message()
    headers, body = sender.request(msg, rendered, "449739")
    async with http.post(sandbox.url + "/", data=body, headers=headers) as reply:
        status = (await reply.json())["Response"]["SendStatusSet"][0]
    assert status["Code"] == "Ok" and status["SessionContext"] == msg.key
    assert json.loads(body)["SessionContext"] == msg.key
