"""Where meters live and who pays for them: companies, sites, buildings, floors, rooms, tenants, accounts."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base
from store.types import BigId, UTCDateTime, utcnow


class Company(Base):
    """A property company: the owner of sites, and the boundary no other company sees across."""

    __tablename__ = "companies"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"), index=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # alert levels, quiet hours...


class Building(Base):
    __tablename__ = "buildings"
    __table_args__ = (UniqueConstraint("site_id", "name"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))


class Floor(Base):
    __tablename__ = "floors"
    __table_args__ = (UniqueConstraint("building_id", "level"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    building_id: Mapped[int] = mapped_column(ForeignKey("buildings.id"), index=True)
    level: Mapped[int] = mapped_column()
    name: Mapped[str] = mapped_column(String(50))


class Room(Base):
    __tablename__ = "rooms"
    __table_args__ = (UniqueConstraint("site_id", "building_id", "number"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    building_id: Mapped[int] = mapped_column(ForeignKey("buildings.id"), index=True)
    floor_id: Mapped[int] = mapped_column(ForeignKey("floors.id"), index=True)
    number: Mapped[str] = mapped_column(String(40))
    area_m2: Mapped[Decimal] = mapped_column(Numeric(10, 2), default=Decimal("0"))
    state: Mapped[str] = mapped_column(String(20), default="vacant")  # vacant | occupied | disabled


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str] = mapped_column(String(20), index=True)
    email: Mapped[str | None] = mapped_column(String(200), default=None)
    wechat_openid: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    locale: Mapped[str] = mapped_column(String(10), default="zh-CN")


class Account(Base):
    """A tenant's account at a site: the payer for one or more meters.

    balance_model: `merged` (one wallet for all meters), `per_meter` (a wallet per meter) or
    `package` (a flat monthly fee covering `package_units`, usage beyond it priced normally).
    """

    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    state: Mapped[str] = mapped_column(String(20), default="open")  # open | closed
    payment_mode: Mapped[str] = mapped_column(String(20), default="prepaid")  # prepaid | postpaid
    balance_model: Mapped[str] = mapped_column(String(20), default="merged")
    overdraft_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    package_fee_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    package_units: Mapped[int] = mapped_column(BigInteger, default=0)
    alert_settings: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    alert_state: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    version: Mapped[int] = mapped_column(default=1)
