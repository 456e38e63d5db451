"""A tenant runs down through all three levels, is cut off, tops up and is restored: exactly which
messages went out, on which channel, when (Shanghai time, default quiet hours 22:00-08:00)."""

from __future__ import annotations

from datetime import timedelta

from tests.alerting.conftest import EMAIL, OPENID, PHONE, local, make_flat


async def test_three_levels_down_a_cut_off_a_top_up_and_back_up(sessions, channels, boxes):
    flat = await make_flat(sessions, channels)  # 60 yuan at 09:00 on the 2nd
    await flat.use(15, local(2, 11))  # 45 yuan: L1
    await flat.run_jobs(local(2, 11))
    assert boxes.take() == [("wechat_template", "tmpl-low_balance_1")]

    await flat.use(30, local(2, 12))  # 15 yuan: L2
    await flat.run_jobs(local(2, 12))
    assert boxes.take() == [("sms", "SMS_2"), ("wechat_template", "tmpl-low_balance_2")]

    await flat.use(20, local(2, 23, 30))  # -5 yuan at night: L3 (cut-off notice) + cut-off queued
    await flat.run_jobs(local(2, 23, 30))
    assert boxes.take() == [("sms", "SMS_3"), ("wechat_template", "tmpl-low_balance_3")]
    await flat.confirm_relay(local(2, 23, 31))  # the meter reports its relay open
    await flat.run_jobs(local(2, 23, 31))
    assert boxes.take() == [("sms", "SMS_4"), ("wechat_template", "tmpl-cutoff_done")]

    await flat.run_jobs(local(3, 7, 59))
    assert boxes.take() == []  # the voice call waits for the end of quiet hours
    await flat.run_jobs(local(3, 8, 0))
    assert boxes.take() == [("voice", "TTS_3")]

    await flat.top_up(100, local(3, 9), "cash-1")  # 95 yuan: every level re-arms, a receipt goes out
    await flat.run_jobs(local(3, 9))
    assert boxes.take() == [("email", "充值成功"), ("wechat_template", "tmpl-receipt")]
    await flat.confirm_relay(local(3, 9, 1))  # the restore command read back
    await flat.run_jobs(local(3, 9, 1))
    assert boxes.take() == [("push", "restored"), ("wechat_template", "tmpl-restored")]

    await flat.use(50, local(3, 10))  # 45 yuan again: L1 fires for its second crossing
    await flat.run_jobs(local(3, 10))
    assert boxes.take() == [("wechat_template", "tmpl-low_balance_1")]

    rows = await flat.deliveries()
    when = {(d.message_key, d.channel): d.sent_at for d in rows if d.status == "sent"}
    assert when[(f"cutoff_warning:{flat.account_id}:L3:c1", "voice")] == local(3, 8)
    assert when[(f"cutoff_warning:{flat.account_id}:L3:c1", "sms")] == local(2, 23, 30)
    assert (f"low_balance:{flat.account_id}:L1:c2", "wechat_template") in when
    assert {d.to for d in rows if d.status == "sent"} == {PHONE, OPENID, EMAIL, "app:han"}
    skipped = {(d.kind, d.channel, d.reason) for d in rows if d.status == "skipped"}
    assert skipped == {("low_balance_1", "wechat_subscribe", "not_configured"),
                       ("receipt", "wechat_subscribe", "not_configured")}
    assert len(rows) == 16 and all(d.attempts <= 1 for d in rows)


async def test_a_level_fires_once_per_crossing_not_on_every_reading(sessions, channels, boxes):
    flat = await make_flat(sessions, channels)
    for hour in range(10, 16):  # 47, 46 ... every reading below L1 after the first
        await flat.use(13 if hour == 10 else 1, local(2, hour))
        await flat.run_jobs(local(2, hour))
    assert boxes.take() == [("wechat_template", "tmpl-low_balance_1")]


async def test_the_same_jobs_run_twice_send_nothing_twice(sessions, channels, boxes):
    flat = await make_flat(sessions, channels)
    await flat.use(45, local(2, 12))  # 15 yuan: L1 and L2 at once -> one message (L2)
    await flat.run_jobs(local(2, 12))
    await flat.run_jobs(local(2, 12))
    await flat.run_jobs(local(2, 12) + timedelta(hours=1))
    assert boxes.take() == [("sms", "SMS_2"), ("wechat_template", "tmpl-low_balance_2")]
