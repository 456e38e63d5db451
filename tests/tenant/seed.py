"""A seeded site for the tenant tests: one TOU-priced flat with readings across two months."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.money import Money
from services.accounts import OpenAccount, open_account
from services.ingest import ReadingIn, ingest
from services.tenant import DbTenantPort
from services.uow import in_transaction
from services.wallets import recharge
from tests.factories import add_meter, add_tariff, make_site

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=TZ)
SECRET = "tenant-test-secret"
PHONE = "13800138000"
OTHER_PHONE = "13900139000"
TOU = {"kind": "tou", "prices": {"peak": "1.00", "valley": "0.30"},
       "windows": [{"start": "08:00", "end": "22:00", "rate": "peak"},
                   {"start": "22:00", "end": "08:00", "rate": "valley"}]}


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ)


# (local time, total, cumulative (sharp, peak, flat, valley))
READINGS = [
    (local(2026, 2, 28, 20), 1_000_000, (0, 500_000, 0, 500_000)),  # the baseline
    (local(2026, 2, 28, 23), 1_003_000, (0, 502_000, 0, 501_000)),  # last month: 2 kWh peak, 1 valley = 2.30
    (local(2026, 3, 1, 7), 1_011_000, (0, 502_000, 0, 509_000)),    # this month: 8 kWh valley = 2.40
    (local(2026, 3, 15, 9), 1_016_000, (0, 506_000, 0, 510_000)),   # today: 4 peak + 1 valley = 4.30
]


class Clock:
    """A settable clock for the port (codes expire, windows move)."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now.astimezone(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class Seeded:
    account_id: int
    meter_id: int
    room_account_id: int  # a second flat, at a site that allows binding by room
    other_site_account_id: int  # same phone, another site: one WeChat user, several rooms
    sms: list[tuple[str, str]] = field(default_factory=list)


async def seed(sessions: async_sessionmaker[AsyncSession]) -> Seeded:
    async def build(s: AsyncSession) -> Seeded:
        kit = await make_site(s, "S1")
        kit.site.name = "阳光公寓"
        tariff = await add_tariff(s, kit, "tou", TOU)
        meter = await add_meter(s, kit, "101", tariff)
        acc = await open_account(s, OpenAccount(kit.site.id, "韩梅梅", PHONE, (meter.id,)), actor="test")
        acc.opened_at = local(2026, 2, 1)
        await recharge(s, acc.id, Money.yuan(100), "opening-credit")
        await ingest(s, [ReadingIn(meter.id, at, total, rates) for at, total, rates in READINGS])

        kit2 = await make_site(s, "S2")
        kit2.site.name = "学生公寓"
        kit2.site.settings = {"bind_by_room": True}
        m2 = await add_meter(s, kit2, "202", await add_tariff(s, kit2, "flat", {"kind": "flat", "price": "1.00"}))
        acc2 = await open_account(s, OpenAccount(kit2.site.id, "李雷", OTHER_PHONE, (m2.id,)), actor="test")
        m3 = await add_meter(s, kit2, "303", None)
        acc3 = await open_account(s, OpenAccount(kit2.site.id, "韩梅梅", PHONE, (m3.id,)), actor="test")
        await recharge(s, acc3.id, Money.yuan(20), "opening-credit-3")
        return Seeded(acc.id, meter.id, acc2.id, acc3.id)

    return await in_transaction(sessions, build)


def make_port(sessions: async_sessionmaker[AsyncSession], seeded: Seeded, clock: Clock,
              code: str = "246810") -> DbTenantPort:
    async def send_sms(phone: str, text: str) -> None:
        seeded.sms.append((phone, text))

    return DbTenantPort(sessions, secret_key=SECRET, pay_base_url="https://pay.example.test/pay/",
                        send_sms=send_sms, clock=clock, code_factory=lambda: code)
