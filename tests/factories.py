"""Builders for test sites: the least data a service test needs, made through the real tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Building, Company, Floor, Gateway, Meter, Room, Site, Tariff, TariffVersion

EPOCH = datetime(2020, 1, 1, tzinfo=timezone.utc)
FLAT_1 = {"kind": "flat", "price": "1.00"}


@dataclass
class SiteKit:
    site: Site
    building: Building
    floor: Floor
    gateway: Gateway
    tariffs: dict[str, Tariff]


async def make_site(session: AsyncSession, code: str = "S1", tz: str = "Asia/Shanghai") -> SiteKit:
    company = Company(name=f"Company {code}")
    session.add(company)
    await session.flush()
    site = Site(company_id=company.id, code=code, name=f"Site {code}", timezone=tz, settings={})
    session.add(site)
    await session.flush()
    b = Building(site_id=site.id, name="A")
    session.add(b)
    await session.flush()
    f = Floor(building_id=b.id, level=1, name="1F")
    gw = Gateway(site_id=site.id, code=f"{code}-gw1", protocol="modbus_rtu_tcp", host="127.0.0.1", port=0)
    session.add_all([f, gw])
    await session.flush()
    return SiteKit(site, b, f, gw, {})


async def add_tariff(session: AsyncSession, kit: SiteKit, name: str, spec: dict[str, Any],
                     utility: str = "electricity", effective_from: datetime = EPOCH) -> Tariff:
    t = Tariff(site_id=kit.site.id, name=name, utility=utility, kind=spec["kind"])
    session.add(t)
    await session.flush()
    session.add(TariffVersion(tariff_id=t.id, effective_from=effective_from, spec=spec))
    await session.flush()
    kit.tariffs[name] = t
    return t


async def add_meter(session: AsyncSession, kit: SiteKit, number: str, tariff: Tariff | None,
                    utility: str = "electricity", **kw: Any) -> Meter:
    room = Room(site_id=kit.site.id, building_id=kit.building.id, floor_id=kit.floor.id, number=number,
                area_m2=Decimal("30.00"))
    session.add(room)
    await session.flush()
    m = Meter(site_id=kit.site.id, room_id=room.id, gateway_id=kit.gateway.id, port=1, address=number,
              utility=utility, model="acrel-ddsy1352", protocol="modbus_rtu_tcp",
              tariff_id=tariff.id if tariff else None, **kw)
    session.add(m)
    await session.flush()
    return m
