"""A tenant with a meter, and every channel wired from Settings to a local provider sandbox."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.money import Money
from jobs.channels import build_channels
from jobs.tasks import deliver_notifications, dispatch_notify
from meterpay.settings import Settings
from notifications.channel import Channel
from notifications.sandbox.aliyun import AliyunSandbox
from notifications.sandbox.smtp import SmtpSandbox
from notifications.sandbox.webhook import WebhookSandbox
from notifications.sandbox.wechat import WechatSandbox
from services import alerting, outbox, relay
from services.accounts import OpenAccount, open_account
from services.ingest import ReadingIn, ingest
from services.uow import in_transaction
from services.wallets import account_balance, get_account, recharge
from store.models import Delivery, MeterCommand, NotifyPreference, Outbox, Tenant
from tests.factories import FLAT_1, add_meter, add_tariff, make_site

TZ = ZoneInfo("Asia/Shanghai")
KEY_ID, KEY_SECRET = "LTAI5tJourney", "aliyun-secret"
OA, OA_SECRET, PUSH_SECRET = "wx-official", "oa-secret", "push-secret"
PHONE, EMAIL, OPENID = "13900000001", "han@example.com", "o6_openid_han"
SMS_CODES = "low_balance_2=SMS_2,low_balance_3=SMS_3,cutoff_done=SMS_4,receipt=SMS_5,abnormal_load=SMS_6"
WECHAT = {kind: {"id": f"tmpl-{kind}", "data": {"keyword1": "account"}}
          for kind in ("low_balance_1", "low_balance_2", "low_balance_3", "cutoff_done", "restored",
                       "receipt")}


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment in March 2026, Shanghai time."""
    return datetime(2026, 3, day, hour, minute, tzinfo=TZ)


@dataclass
class Sandboxes:
    sms: AliyunSandbox  # SMS and voice share Aliyun's RPC endpoint
    smtp: SmtpSandbox
    wechat: WechatSandbox
    push: WebhookSandbox
    taken: Counter[tuple[str, str]] = field(default_factory=Counter)

    def take(self) -> list[tuple[str, str]]:
        """What the providers accepted since the last take, sorted."""
        everything = Counter(self.sent())
        new, self.taken = everything - self.taken, everything
        return sorted(new.elements())

    def sent(self) -> list[tuple[str, str]]:
        """(channel, template) for everything the providers accepted, grouped by provider."""
        out: list[tuple[str, str]] = []
        for r in self.sms.delivered:
            code = r.params.get("TemplateCode") or r.params.get("TtsCode")
            out.append(("sms" if r.params["Action"] == "SendSms" else "voice", code))
        out += [("wechat_template", r.params["template_id"]) for r in self.wechat.delivered]
        out += [("email", d.message["Subject"]) for d in self.smtp.delivered]
        out += [("push", json.loads(r.body)["kind"]) for r in self.push.delivered]
        return out


@pytest.fixture
async def boxes() -> AsyncIterator[Sandboxes]:
    sms, smtp = AliyunSandbox(keys={KEY_ID: KEY_SECRET}), SmtpSandbox()
    wechat, push = WechatSandbox(apps={OA: OA_SECRET}), WebhookSandbox(secret=PUSH_SECRET)
    async with sms.running(), smtp.running(), wechat.running(), push.running():
        yield Sandboxes(sms, smtp, wechat, push)


def provider_settings(b: Sandboxes) -> Settings:
    """The environment an operator would set, pointing at the sandboxes."""
    return Settings(extra={
        "SMS_PROVIDER": "aliyun", "SMS_ACCESS_KEY_ID": KEY_ID, "SMS_ACCESS_KEY_SECRET": KEY_SECRET,
        "SMS_ENDPOINT": b.sms.url + "/", "SMS_SIGN_NAME": "表计通", "SMS_TEMPLATES": SMS_CODES,
        "VOICE_ENDPOINT": b.sms.url + "/", "VOICE_TEMPLATES": "low_balance_3=TTS_3",
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(b.smtp.port), "SMTP_FROM": "meterpay <no@x.test>",
        "WECHAT_APPID": OA, "WECHAT_SECRET": OA_SECRET, "WECHAT_API_BASE": b.wechat.url,
        "WECHAT_TEMPLATES": json.dumps(WECHAT),
        "PUSH_WEBHOOK_URL": b.push.url + "/push", "WEBHOOK_SECRET": PUSH_SECRET,
    })


@pytest.fixture
async def channels(boxes: Sandboxes) -> AsyncIterator[dict[str, Channel]]:
    async with aiohttp.ClientSession() as http:
        yield build_channels(provider_settings(boxes), http)


@dataclass
class Flat:
    """One tenant, one platform-billed meter at 1.00 yuan/kWh, driven through time by the test."""

    sessions: async_sessionmaker[AsyncSession]
    channels: dict[str, Channel]
    account_id: int
    meter_id: int
    tenant_id: int
    total_wh: int = 1_000_000

    async def use(self, kwh: int, at: datetime) -> None:
        """A reading `kwh` on from the last; ingest calls the alert hook itself."""
        self.total_wh += kwh * 1000
        reading = ReadingIn(self.meter_id, at, self.total_wh)
        await in_transaction(self.sessions, lambda s: ingest(s, [reading], now=at))

    async def top_up(self, yuan: int, at: datetime, key: str) -> None:
        """A cash-desk recharge; wallets call the balance and receipt hooks themselves."""
        await in_transaction(self.sessions, lambda s: recharge(s, self.account_id, Money.yuan(yuan), key, now=at))

    async def confirm_relay(self, at: datetime) -> None:
        """The device executor read the relay back: confirm the newest command and call the hook."""
        async def step(s: AsyncSession) -> None:
            cmd = (await s.scalars(select(MeterCommand).order_by(MeterCommand.id.desc()))).first()
            assert cmd is not None
            cmd.state, cmd.confirmed_at = "confirmed", at
            await relay.mark_relay(s, cmd.meter_id, closed=cmd.kind == "relay_close")
            acc = await get_account(s, self.account_id)
            await alerting.relay_confirmed(s, cmd.id, await account_balance(s, acc), at)
        await in_transaction(self.sessions, step)

    async def run_jobs(self, at: datetime) -> None:
        """What the worker does at `at`: run each pending outbox job, then send due deliveries."""
        ctx = {"sessions": self.sessions, "channels": self.channels, "clock": lambda: at, "job_try": 1}
        async with self.sessions() as s:
            rows = [(r.topic, r.key) for r in await outbox.pending(s, at)]
        for topic, key in rows:
            assert topic == "notify", f"{key}: no job here for topic {topic!r}"
            await dispatch_notify(ctx, key)
        await deliver_notifications(ctx)

    async def deliveries(self) -> list[Delivery]:
        async with self.sessions() as s:
            return list(await s.scalars(select(Delivery).order_by(Delivery.id)))


async def make_flat(sessions: async_sessionmaker[AsyncSession], channels: dict[str, Channel],
                    opening_yuan: int = 60, site_settings: dict | None = None,
                    prefs: dict | None = None) -> Flat:
    async def build(s: AsyncSession) -> tuple[int, int, int]:
        kit = await make_site(s)
        kit.site.settings = site_settings or {}
        t = await add_tariff(s, kit, "flat", FLAT_1)
        m = await add_meter(s, kit, "101", t)
        acc = await open_account(s, OpenAccount(kit.site.id, "Han Meimei", PHONE, (m.id,), code="A-101"))
        acc.opened_at = local(1, 0)
        tenant = await s.get(Tenant, acc.tenant_id)
        assert tenant is not None
        tenant.email, tenant.wechat_openid, tenant.locale = EMAIL, OPENID, "zh-CN"
        s.add(NotifyPreference(tenant_id=tenant.id, push_target="app:han", **(prefs or {})))
        await recharge(s, acc.id, Money.yuan(opening_yuan), "opening", now=local(1, 0))
        await ingest(s, [ReadingIn(m.id, local(2, 9), 1_000_000)], now=local(2, 9))
        await s.execute(delete(Outbox))  # the opening top-up's receipt is not part of these scenarios
        return acc.id, m.id, tenant.id
    acc_id, meter_id, tenant_id = await in_transaction(sessions, build)
    return Flat(sessions, channels, acc_id, meter_id, tenant_id)
