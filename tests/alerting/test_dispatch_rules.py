"""Quiet hours, daily caps, provider errors and timeouts, concurrent senders: the dispatcher's rules
against the real provider sandboxes (Shanghai time, quiet hours 22:00-08:00)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import aiohttp

from billing.alerts import PowerSample
from notifications.aliyun_rpc import AliyunKeys
from notifications.sandbox.server import Fault
from notifications.sms_aliyun import AliyunSms, AliyunSmsConfig
from services import alerting, notify
from services.uow import in_transaction
from tests.alerting.conftest import KEY_ID, KEY_SECRET, local, make_flat

S = timedelta(seconds=1)


def by_channel(rows, kind):
    return {d.channel: (d.status, d.reason, d.attempts, d.sent_at) for d in rows if d.kind == kind}


async def test_a_warning_at_night_goes_to_wechat_now_and_by_sms_at_eight(sessions, channels, boxes):
    flat = await make_flat(sessions, channels)
    await flat.use(45, local(2, 23))  # 15 yuan at 23:00
    await flat.run_jobs(local(2, 23))
    assert boxes.take() == [("wechat_template", "tmpl-low_balance_2")]
    await flat.run_jobs(local(3, 7, 59))
    assert boxes.take() == []
    await flat.run_jobs(local(3, 8))
    assert boxes.take() == [("sms", "SMS_2")]
    rows = by_channel(await flat.deliveries(), "low_balance_2")
    assert rows["sms"] == ("sent", "quiet_hours", 1, local(3, 8))
    assert rows["wechat_template"] == ("sent", "now", 1, local(2, 23))


async def test_a_deferred_warning_made_moot_by_a_top_up_is_not_sent(sessions, channels, boxes):
    flat = await make_flat(sessions, channels)
    await flat.use(45, local(2, 23))
    await flat.run_jobs(local(2, 23))
    await flat.top_up(50, local(3, 7), "cash-early")
    await flat.run_jobs(local(3, 8))
    assert boxes.take() == [("email", "充值成功"), ("wechat_template", "tmpl-low_balance_2"),
                            ("wechat_template", "tmpl-receipt")]
    assert by_channel(await flat.deliveries(), "low_balance_2")["sms"][:2] == ("skipped", "moot")


async def test_the_daily_sms_cap_holds_back_warnings_but_never_a_cut_off_notice(sessions, channels, boxes):
    flat = await make_flat(sessions, channels, prefs={"daily_limits": {"sms": 1}})
    await flat.use(45, local(2, 12))  # L2: the day's one SMS
    await flat.run_jobs(local(2, 12))
    async def heater(s):
        await alerting.abnormal_load(s, flat.meter_id, PowerSample(local(2, 13), 80),
                                     PowerSample(local(2, 13, 1), 2080))
    await in_transaction(sessions, heater)
    await flat.run_jobs(local(2, 13, 1))
    await flat.use(20, local(2, 14))  # L3, urgent: past the cap
    await flat.run_jobs(local(2, 14))
    assert boxes.take() == [("sms", "SMS_2"), ("sms", "SMS_3"), ("voice", "TTS_3"),
                            ("wechat_template", "tmpl-low_balance_2"), ("wechat_template", "tmpl-low_balance_3")]
    rows = await flat.deliveries()
    # abnormal_load has no WeChat template configured here: wechat is not_configured, SMS capped
    assert {d.channel: (d.status, d.reason) for d in rows if d.kind == "abnormal_load"} == {
        "wechat_template": ("skipped", "not_configured"), "sms": ("skipped", "rate_limited")}
    await flat.use(0, local(3, 9))
    await flat.run_jobs(local(3, 9))  # a new day: nothing pending, nothing resent
    assert boxes.take() == []


async def test_a_provider_error_is_retried_with_backoff_and_sent_once(sessions, channels, boxes):
    boxes.sms.fail(Fault(code="isp.SYSTEM_ERROR"), times=2)
    flat = await make_flat(sessions, channels)
    at = local(2, 12)
    await flat.use(45, at)
    await flat.run_jobs(at)
    assert by_channel(await flat.deliveries(), "low_balance_2")["sms"][:3] == ("queued", "now", 1)
    await flat.run_jobs(at + 29 * S)
    await flat.run_jobs(at + 30 * S)  # second failure: next try 120 s later
    await flat.run_jobs(at + 149 * S)
    assert [r.error for r in boxes.sms.received] == ["isp.SYSTEM_ERROR", "isp.SYSTEM_ERROR"]
    await flat.run_jobs(at + 150 * S)
    await flat.run_jobs(at + 3600 * S)
    assert boxes.take() == [("sms", "SMS_2"), ("wechat_template", "tmpl-low_balance_2")]
    assert by_channel(await flat.deliveries(), "low_balance_2")["sms"] == ("sent", "now", 3, at + 150 * S)


async def test_a_timeout_is_retried_and_the_sms_goes_out_once(sessions, channels, boxes):
    boxes.sms.fail(Fault(status=500, delay_s=1.0))  # held past the client's timeout, then refused
    async with aiohttp.ClientSession() as http:
        keys = AliyunKeys(boxes.sms.url + "/", KEY_ID, KEY_SECRET, timeout_s=0.2)
        quick = {**channels, "sms": AliyunSms(http, AliyunSmsConfig(keys, "表计通", {"low_balance_2": "SMS_2"}))}
        flat = await make_flat(sessions, quick)
        await flat.use(45, local(2, 12))
        await flat.run_jobs(local(2, 12))
        sms = by_channel(await flat.deliveries(), "low_balance_2")["sms"]
        assert sms[:3] == ("queued", "now", 1)
        await flat.run_jobs(local(2, 12) + 30 * S)
    assert boxes.take() == [("sms", "SMS_2"), ("wechat_template", "tmpl-low_balance_2")]
    rows = await flat.deliveries()
    assert [d.error for d in rows if d.channel == "sms"] == [None]
    assert by_channel(rows, "low_balance_2")["sms"][:3] == ("sent", "now", 2)


async def test_retries_that_run_out_are_logged_and_the_message_falls_back(sessions, channels, boxes, caplog):
    boxes.sms.fail(Fault(code="Throttling.User"), times=5)
    flat = await make_flat(sessions, channels, prefs={"channels": {"low_balance_2": ["sms"]}})
    at = local(2, 12)
    await flat.use(45, at)
    with caplog.at_level(logging.INFO, logger="services.notify"):
        for delay_s in (0, 30, 150, 750, 4350):  # 30, 120, 600, 3600 s apart
            await flat.run_jobs(at + delay_s * S)
    rows = by_channel(await flat.deliveries(), "low_balance_2")
    assert rows["sms"][:3] == ("failed", "now", 5)
    assert rows["wechat_template"] == ("sent", "fallback", 1, at + 4350 * S)
    assert boxes.take() == [("wechat_template", "tmpl-low_balance_2")]
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1 and "failed for good after 5 attempts" in failures[0].getMessage()


async def test_a_refused_number_fails_at_once_without_retry(sessions, channels, boxes):
    boxes.sms.fail(Fault(code="isv.MOBILE_NUMBER_ILLEGAL"))
    flat = await make_flat(sessions, channels)
    await flat.use(45, local(2, 12))
    await flat.run_jobs(local(2, 12))
    await flat.run_jobs(local(2, 13))
    rows = await flat.deliveries()
    assert by_channel(rows, "low_balance_2")["sms"][:3] == ("failed", "now", 1)
    assert "isv.MOBILE_NUMBER_ILLEGAL" in next(d.error for d in rows if d.channel == "sms")
    assert boxes.take() == [("wechat_template", "tmpl-low_balance_2")]


async def test_two_senders_racing_over_the_same_rows_send_each_once(sessions, channels, boxes):
    flat = await make_flat(sessions, channels)
    await flat.use(45, local(2, 23))  # SMS deferred to 08:00, then two workers wake at once
    await flat.run_jobs(local(2, 23))
    boxes.take()
    reports = await asyncio.gather(*(notify.send_due(sessions, channels, local(3, 8)) for _ in range(3)))
    assert sum(r.sent for r in reports) == 1
    assert boxes.take() == [("sms", "SMS_2")]
