"""Gateways, meters, tariffs, readings and meter commands."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base
from store.types import BigId, UTCDateTime, utcnow


class Gateway(Base):
    """An RS485-to-TCP gateway or a 4G MQTT DTU; `lease_*` shards polling across pollers."""

    __tablename__ = "gateways"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    protocol: Mapped[str] = mapped_column(String(20))  # modbus_rtu_tcp | modbus_tcp | dlt645_tcp | mqtt
    host: Mapped[str | None] = mapped_column(String(200), default=None)
    port: Mapped[int | None] = mapped_column(default=None)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(100), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Tariff(Base):
    __tablename__ = "tariffs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    utility: Mapped[str] = mapped_column(String(20))  # electricity | water
    kind: Mapped[str] = mapped_column(String(20))  # flat | tou | tiered


class TariffVersion(Base):
    """An immutable price spec in force from `effective_from`; readings keep the id they were priced with."""

    __tablename__ = "tariff_versions"
    __table_args__ = (UniqueConstraint("tariff_id", "effective_from"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tariff_id: Mapped[int] = mapped_column(ForeignKey("tariffs.id"), index=True)
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Meter(Base):
    """A metering point. `epoch` counts physical replacements; the base_* columns are the billing baseline."""

    __tablename__ = "meters"
    # the baseline moves on every reading, and one batch updates every meter of a page: half of each
    # page kept free takes a new version of each row, so those updates stay HOT (no index writes)
    __table_args__ = (UniqueConstraint("gateway_id", "port", "address"), {"postgresql_with": {"fillfactor": 50}})
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id"), index=True, default=None)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True, default=None)
    gateway_id: Mapped[int | None] = mapped_column(ForeignKey("gateways.id"), index=True, default=None)
    port: Mapped[int] = mapped_column(default=1)
    address: Mapped[str] = mapped_column(String(32))
    utility: Mapped[str] = mapped_column(String(20))  # electricity | water
    model: Mapped[str] = mapped_column(String(40))  # profile key in devices/profiles.py
    protocol: Mapped[str] = mapped_column(String(20))
    billing_side: Mapped[str] = mapped_column(String(20), default="platform")  # platform | meter
    tariff_id: Mapped[int | None] = mapped_column(ForeignKey("tariffs.id"), default=None)
    is_master: Mapped[bool] = mapped_column(default=False)  # common-area master meter
    relay_closed: Mapped[bool] = mapped_column(default=True)  # True = power / water on
    relay_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)  # last confirmed switch
    online: Mapped[bool] = mapped_column(default=False)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_reading_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_total: Mapped[int | None] = mapped_column(BigInteger, default=None)
    live: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # U, I, P, PF, F
    epoch: Mapped[int] = mapped_column(default=1)
    base_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    base_total: Mapped[int | None] = mapped_column(BigInteger, default=None)
    base_rates: Mapped[list[int] | None] = mapped_column(JSON, default=None)
    month_key: Mapped[str | None] = mapped_column(String(7), default=None)  # YYYY-MM of month_used
    month_used: Mapped[int] = mapped_column(BigInteger, default=0)
    register_modulus: Mapped[int] = mapped_column(BigInteger, default=1_000_000_000)
    max_rate_per_h: Mapped[int] = mapped_column(BigInteger, default=66_000)
    purchase_count: Mapped[int] = mapped_column(default=0)  # meter-side billing
    meter_balance_fen: Mapped[int | None] = mapped_column(BigInteger, default=None)
    flags: Mapped[int] = mapped_column(default=0)  # count of flagged readings awaiting staff


class Reading(Base):
    """Every reading ever received, with what billing made of it (its verdict and priced lines)."""

    __tablename__ = "readings"
    __table_args__ = (
        UniqueConstraint("meter_id", "epoch", "taken_at"),
        # covering on PostgreSQL: days-left and usage sums read a week of an account's readings
        # from the index alone instead of one heap page per reading
        Index("ix_readings_account_taken", "account_id", "taken_at", postgresql_include=["meter_id", "amount_fen"]),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    meter_id: Mapped[int] = mapped_column(ForeignKey("meters.id"))
    account_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    epoch: Mapped[int] = mapped_column(default=1)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    total: Mapped[int] = mapped_column(BigInteger)
    rates: Mapped[list[int] | None] = mapped_column(JSON, default=None)
    verdict: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[int] = mapped_column(BigInteger, default=0)  # billed delta, base units
    rate_split: Mapped[list[int] | None] = mapped_column(JSON, default=None)
    amount_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    from_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    lines: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)  # with tariff version ids
    txn_id: Mapped[int | None] = mapped_column(BigInteger, default=None)


class MeterCommand(Base):
    """A command to a meter, persisted so it survives restarts; confirmed only by a read-back."""

    __tablename__ = "meter_commands"
    __table_args__ = (Index("ix_meter_commands_due", "state", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    meter_id: Mapped[int] = mapped_column(ForeignKey("meters.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # relay_open | relay_close | valve_* | set_price | push_credit | time_sync
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(12), default="queued")
    attempts: Mapped[int] = mapped_column(default=0)
    reason: Mapped[str | None] = mapped_column(String(200), default=None)
    created_by: Mapped[str | None] = mapped_column(String(100), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
