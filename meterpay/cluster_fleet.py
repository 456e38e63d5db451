"""A trial fleet for scale-out runs: one site, wired gateways of mixed protocols, 4G (MQTT) gateways, tenants.

Wired gateways cycle through Modbus RTU-over-TCP, DL/T 645 and Modbus TCP, one RS485 downlink
each. Every `meter_side_every`-th wired meter keeps its own balance (meter-side billing, credit
pushed with a purchase counter); the rest are platform-billed, and every `low_every`-th platform
account starts with almost nothing, so consumption cuts it off and payments restore it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.money import Money
from services.accounts import OpenAccount, open_account
from services.uow import in_transaction
from services.wallets import recharge
from store.models import Building, Company, Floor, Gateway, Meter, Room, Site, Tariff, TariffVersion
from store.types import utcnow

PROTOCOLS = ("modbus_rtu_tcp", "dlt645_tcp", "modbus_tcp")
MODEL = {"modbus_rtu_tcp": "acrel-ddsy1352", "modbus_tcp": "acrel-ddsy1352", "dlt645_tcp": "dlt645-single-phase"}


@dataclass(frozen=True)
class FleetSpec:
    gateways: int = 6
    meters_per_gateway: int = 8
    mqtt_gateways: int = 2
    mqtt_meters: int = 4
    meter_side_every: int = 4
    low_every: int = 5
    balance: Money = Money(50_00)
    low_balance: Money = Money(1)
    meter_balance_fen: int = 50_00
    price: str = "1.00"
    site_code: str = "SCALE"
    chunk: int = 500  # meters per transaction while seeding


@dataclass
class TrialAccount:
    account_id: int
    meter_id: int
    gateway: str
    address: str
    billing_side: str
    protocol: str
    low: bool = False


@dataclass
class TrialFleet:
    site_id: int
    accounts: list[TrialAccount] = field(default_factory=list)

    @property
    def meter_side(self) -> list[TrialAccount]:
        return [a for a in self.accounts if a.billing_side == "meter"]


def address_for(protocol: str, gateway_no: int, n: int) -> str:
    return f"{gateway_no:06d}{n:06d}" if protocol == "dlt645_tcp" else str(n)


async def _site(session: AsyncSession, spec: FleetSpec) -> tuple[int, int, int, int, int]:
    company = Company(name=f"Trial {spec.site_code}")
    session.add(company)
    await session.flush()
    site = Site(company_id=company.id, code=spec.site_code, name=f"Trial {spec.site_code}", timezone="Asia/Shanghai",
                settings={})
    session.add(site)
    await session.flush()
    building = Building(site_id=site.id, name="A")
    session.add(building)
    await session.flush()
    floor = Floor(building_id=building.id, level=1, name="1F")
    tariff = Tariff(site_id=site.id, name="flat", utility="electricity", kind="flat")
    session.add_all([floor, tariff])
    await session.flush()
    session.add(TariffVersion(tariff_id=tariff.id, effective_from=utcnow().replace(year=2020),
                              spec={"kind": "flat", "price": spec.price}))
    await session.flush()
    return site.id, building.id, floor.id, tariff.id, company.id


def _plan(spec: FleetSpec) -> list[tuple[str, str, int, str]]:
    """(gateway code, protocol, gateway number, address) for every meter of the fleet."""
    plan = []
    for g in range(1, spec.gateways + 1):
        protocol = PROTOCOLS[(g - 1) % len(PROTOCOLS)]
        plan += [(f"gw{g:04d}", protocol, g, address_for(protocol, g, n)) for n in range(1, spec.meters_per_gateway + 1)]
    for g in range(1, spec.mqtt_gateways + 1):
        plan += [(f"4g{g:03d}", "mqtt", g, str(n)) for n in range(1, spec.mqtt_meters + 1)]
    return plan


async def seed_fleet(sessions: async_sessionmaker[AsyncSession], spec: FleetSpec) -> TrialFleet:
    """Create the site, gateways (host/port filled in by the simulator), meters and funded accounts."""
    site_id, building_id, floor_id, tariff_id, _ = await in_transaction(sessions, lambda s: _site(s, spec))
    plan = _plan(spec)
    codes = sorted({(code, protocol) for code, protocol, _, _ in plan})

    async def gateways(s: AsyncSession) -> dict[str, int]:
        rows = [Gateway(site_id=site_id, code=code, protocol=protocol, host="127.0.0.1", port=0) for code, protocol in codes]
        s.add_all(rows)
        await s.flush()
        return {g.code: g.id for g in rows}

    gateway_ids = await in_transaction(sessions, gateways)
    fleet = TrialFleet(site_id)
    for start in range(0, len(plan), spec.chunk):
        part = list(enumerate(plan))[start:start + spec.chunk]
        fleet.accounts += await in_transaction(sessions, lambda s, part=part: _meters(
            s, spec, part, site_id, building_id, floor_id, tariff_id, gateway_ids))  # type: ignore[misc]
    return fleet


async def _meters(session: AsyncSession, spec: FleetSpec, part: list[tuple[int, tuple[str, str, int, str]]],
                  site_id: int, building_id: int, floor_id: int, tariff_id: int,
                  gateway_ids: dict[str, int]) -> list[TrialAccount]:
    out = []
    for i, (code, protocol, _, address) in part:
        meter_side = protocol != "mqtt" and i % spec.meter_side_every == spec.meter_side_every - 1
        room = Room(site_id=site_id, building_id=building_id, floor_id=floor_id, number=f"R{i + 1:06d}",
                    area_m2=Decimal("30.00"))
        session.add(room)
        await session.flush()
        meter = Meter(site_id=site_id, room_id=room.id, gateway_id=gateway_ids[code], port=1, address=address,
                      utility="electricity", model=MODEL.get(protocol, "acrel-ddsy1352"),
                      protocol=protocol, tariff_id=tariff_id,
                      billing_side="meter" if meter_side else "platform",
                      meter_balance_fen=spec.meter_balance_fen if meter_side else None)
        session.add(meter)
        await session.flush()
        acc = await open_account(session, OpenAccount(site_id, f"Tenant {i + 1}", f"139{i + 1:08d}", (meter.id,),
                                                      code=f"{spec.site_code}-{i + 1:06d}"))
        low = protocol != "mqtt" and not meter_side and i % spec.low_every == spec.low_every - 1
        if not meter_side:
            await recharge(session, acc.id, spec.low_balance if low else spec.balance, f"seed-{spec.site_code}-{i}")
        out.append(TrialAccount(acc.id, meter.id, code, address, meter.billing_side, protocol, low))
    return out
