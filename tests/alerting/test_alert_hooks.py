"""The other alert rules as they reach tenants and staff: repeats, outages, load steps, the digest,
and the per-site / per-account configuration read from the database."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from billing.alerts import AlertKind, AlertState, LevelState
from billing.money import Money
from jobs.tasks import alert_repeats, scan_lost_links, staff_digest
from services import alerting
from services.alerting import dump_state, load_state
from services.uow import in_transaction
from store.models import Account, Gateway, Meter, Outbox, Site
from tests.alerting.conftest import local, make_flat

REPEATING = {"alerts": {"levels": [
    {"name": "L1", "threshold_fen": 5000}, {"name": "L2", "threshold_fen": 2000, "repeats": 1,
                                            "repeat_interval_s": 3600},
    {"name": "L3", "threshold_fen": 0, "announces_cutoff": True}]}}
STAFF = {"notify": {"staff": {"email": "office@example.com"}}}


def test_alert_state_survives_its_json_column():
    state = AlertState("7", (LevelState("L1", True, 3, 2, local(2, 11)), LevelState("L2")))
    assert load_state(7, dump_state(state)) == state
    assert load_state(7, None) == AlertState("7")


async def test_a_due_repeat_is_sent_once_after_its_interval(sessions, channels, boxes):
    flat = await make_flat(sessions, channels, site_settings=REPEATING)
    await flat.use(45, local(2, 12))
    await flat.run_jobs(local(2, 12))
    boxes.take()
    ctx = {"sessions": sessions, "channels": channels}
    for at in (local(2, 12, 59), local(2, 13), local(2, 13, 30), local(2, 15)):
        await alert_repeats({**ctx, "clock": lambda at=at: at})
        await flat.run_jobs(at)
        assert boxes.take() == ([("sms", "SMS_2"), ("wechat_template", "tmpl-low_balance_2")]
                                if at == local(2, 13) else [])
    sent = {d.message_key for d in await flat.deliveries() if d.status == "sent"}
    assert sent == {f"low_balance:{flat.account_id}:L2:c1", f"low_balance:{flat.account_id}:L2:c1:r1"}


async def test_an_account_override_moves_its_thresholds(sessions, channels, boxes):
    flat = await make_flat(sessions, channels)

    async def lower(s):
        (await s.get(Account, flat.account_id)).alert_settings = {"thresholds_fen": {"L1": 1200, "L2": 1000}}
    await in_transaction(sessions, lower)
    await flat.use(45, local(2, 12))  # 15 yuan: below the site's L1 and L2, above this account's
    await flat.run_jobs(local(2, 12))
    assert boxes.take() == []
    await flat.use(6, local(2, 13))  # 9 yuan: both trip at once, one message for the worse
    await flat.run_jobs(local(2, 13))
    assert boxes.take() == [("sms", "SMS_2"), ("wechat_template", "tmpl-low_balance_2")]


async def test_a_broken_override_falls_back_to_the_site_policy_without_breaking_ingest(
        sessions, channels, boxes):
    flat = await make_flat(sessions, channels)

    async def break_it(s):
        (await s.get(Account, flat.account_id)).alert_settings = {"thresholds_fen": {"L1": 100}}
    await in_transaction(sessions, break_it)  # L1 below L2: refused by billing.alerts
    await flat.use(15, local(2, 12))
    await flat.run_jobs(local(2, 12))
    assert boxes.take() == [("wechat_template", "tmpl-low_balance_1")]


async def test_a_silent_meter_tells_its_tenant_and_a_silent_gateway_tells_staff_once(
        sessions, channels, boxes):
    flat = await make_flat(sessions, channels, site_settings=STAFF)

    async def silence(s):
        meter = await s.get(Meter, flat.meter_id)
        meter.last_seen_at = local(2, 9)
        (await s.get(Gateway, meter.gateway_id)).last_seen_at = local(2, 9)
    await in_transaction(sessions, silence)
    ctx = {"sessions": sessions, "channels": channels}
    assert await scan_lost_links({**ctx, "clock": lambda: local(2, 9, 30)}) == 0
    assert await scan_lost_links({**ctx, "clock": lambda: local(2, 9, 31)}) == 2
    assert await scan_lost_links({**ctx, "clock": lambda: local(2, 10)}) == 0  # same outage
    await flat.run_jobs(local(2, 10))
    assert boxes.take() == [("email", "网关离线"), ("email", "表计离线")]
    to = {d.kind: d.to for d in await flat.deliveries() if d.status == "sent"}
    assert to == {"gateway_lost": "office@example.com", "meter_lost": "han@example.com"}


async def test_a_heater_switched_on_in_a_dorm_raises_one_abnormal_load_alert(sessions, channels, boxes):
    flat = await make_flat(sessions, channels)
    from billing.alerts import PowerSample
    before, after = PowerSample(local(2, 20), 60), PowerSample(local(2, 20, 2), 1860)

    async def step(s):
        return [await alerting.abnormal_load(s, flat.meter_id, before, after) for _ in range(2)]
    assert await in_transaction(sessions, step) == [True, False]
    await flat.run_jobs(local(2, 20, 2))
    assert boxes.take() == [("sms", "SMS_6")]


async def test_staff_get_one_digest_a_day_at_eight_local(sessions, channels, boxes):
    flat = await make_flat(sessions, channels, site_settings=STAFF)
    await flat.use(70, local(2, 12))  # -10 yuan: in arrears
    ctx = {"sessions": sessions, "channels": channels}
    assert await staff_digest({**ctx, "clock": lambda: local(3, 7, 59)}) == 0
    assert await staff_digest({**ctx, "clock": lambda: local(3, 8)}) == 1
    assert await staff_digest({**ctx, "clock": lambda: local(3, 8, 30)}) == 0
    async with sessions() as s:
        row = await s.scalar(select(Outbox).where(Outbox.key.like("digest:%")))
        site = await s.scalar(select(Site))
    assert row.payload["params"] == {"site": site.name, "date": "2026-03-03", "arrears_count": "1",
                                     "arrears_total": "10.00", "lost_count": "2"}
    # lost: a never-seen gateway, and the meter silent since its noon reading the day before
    await flat.run_jobs(local(3, 8))
    assert ("email", "每日汇总") in boxes.take()


def test_message_kinds_follow_the_configured_levels():
    config = alerting._parse_site(REPEATING["alerts"])
    from billing.alerts import AlertEvent
    kinds = [alerting.message_kind(AlertEvent(k, "1", "x", local(2, 1), level=lv), config)
             for k, lv in ((AlertKind.LOW_BALANCE, "L1"), (AlertKind.LOW_BALANCE, "L2"),
                           (AlertKind.CUTOFF_WARNING, "L3"), (AlertKind.CUT_OFF, None),
                           (AlertKind.RESTORED, None), (AlertKind.PAYMENT_RECEIVED, None),
                           (AlertKind.METER_LOST, None), (AlertKind.GATEWAY_LOST, None),
                           (AlertKind.ABNORMAL_LOAD, None))]
    assert kinds == ["low_balance_1", "low_balance_2", "low_balance_3", "cutoff_done", "restored",
                     "receipt", "meter_lost", "gateway_lost", "abnormal_load"]
    assert config.levels[1].repeats == 1 and Money(2000) == config.levels[1].threshold
    assert timedelta(seconds=config.levels[1].repeat_interval_s) == timedelta(hours=1)
