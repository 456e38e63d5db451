"""A small site for charge tests: rooms with areas, tenants on meters, a common-area master meter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from billing.money import Money
from billing.periods import month
from services import ledger
from services.accounts import OpenAccount, open_account
from services.ingest import ReadingIn, ingest
from services.uow import in_transaction
from services.wallets import recharge
from store.models import LedgerAccount, Room
from tests.factories import add_meter, add_tariff, make_site

MARCH = month(2026, 3)
SHANGHAI = timezone(timedelta(hours=8))
BEFORE_MARCH = datetime(2026, 2, 28, 12, tzinfo=timezone.utc)  # 20:00 on 28 Feb in Shanghai
END_OF_MARCH = datetime(2026, 3, 31, 12, tzinfo=timezone.utc)  # 20:00 on 31 Mar in Shanghai
FLAT_1 = {"kind": "flat", "price": "1.00"}


@dataclass
class World:
    site_id: int
    building_id: int
    rooms: list[int]
    meters: list[int]
    accounts: list[int]
    master: int
    master_room: int


async def build_world(sessions: Any, areas: tuple[str, ...] = ("20.00", "30.00", "50.00"),
                      modes: tuple[str, ...] | None = None, opened: datetime = BEFORE_MARCH - timedelta(days=30),
                      credit: int = 1000_00, code: str = "S1") -> World:
    """One tenant per room (area as given), each on a metered, flat-priced account; a master meter."""
    modes = modes or ("prepaid",) * len(areas)

    async def build(s):  # type: ignore[no-untyped-def]
        kit = await make_site(s, code)
        tariff = await add_tariff(s, kit, "flat", FLAT_1)
        master = await add_meter(s, kit, f"{code}-M", tariff, is_master=True)
        meters, accounts, rooms = [], [], []
        for i, (area, mode) in enumerate(zip(areas, modes)):
            m = await add_meter(s, kit, f"{code}-{101 + i}", tariff)
            room = await s.get(Room, m.room_id)
            room.area_m2 = Decimal(area)
            acc = await open_account(s, OpenAccount(kit.site.id, f"T{i}", f"1390000{i:04d}", (m.id,),
                                                    payment_mode=mode, code=f"{code}-A{i}"))
            acc.opened_at = opened
            meters.append(m.id)
            accounts.append(acc.id)
            rooms.append(room.id)
        await s.flush()
        for acc_id, mode in zip(accounts, modes):
            if credit and mode == "prepaid":
                await recharge(s, acc_id, Money(credit), f"{code}-opening-{acc_id}")
        return World(kit.site.id, kit.building.id, rooms, meters, accounts, master.id, master.room_id)

    return await in_transaction(sessions, build)


async def feed(sessions: Any, readings: list[ReadingIn]) -> None:
    results = await in_transaction(sessions, lambda s: ingest(s, readings))
    assert not [r for r in results if r.error], results


async def meter_month(sessions: Any, meter_id: int, start_total: int, used_wh: int) -> None:
    """A base reading before March and one at the end of March `used_wh` higher."""
    await feed(sessions, [ReadingIn(meter_id, BEFORE_MARCH, start_total)])
    await feed(sessions, [ReadingIn(meter_id, END_OF_MARCH, start_total + used_wh)])


async def balance(sessions: Any, site_id: int, code: str) -> int:
    async with sessions() as s:
        return (await ledger.balance_of(s, site_id, code)).fen


async def balances(sessions: Any, site_id: int) -> dict[str, int]:
    async with sessions() as s:
        return await ledger.balances(s, site_id)


async def books_ok(sessions: Any) -> None:
    async with sessions() as s:
        check = await ledger.verify(s)
    assert check.ok, check
