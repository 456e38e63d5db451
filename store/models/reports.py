"""Report roll-ups (usage per meter by local day and month, with their watermark) and batch tasks."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Date, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base
from store.types import BigId, UTCDateTime, utcnow


class _UsageFigures:
    """The columns a daily and a monthly roll-up row share."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    meter_id: Mapped[int] = mapped_column(ForeignKey("meters.id"))
    site_id: Mapped[int] = mapped_column(BigInteger)
    utility: Mapped[str] = mapped_column(String(20))
    quantity: Mapped[int] = mapped_column(BigInteger, default=0)
    sharp: Mapped[int] = mapped_column(BigInteger, default=0)
    peak: Mapped[int] = mapped_column(BigInteger, default=0)
    flat: Mapped[int] = mapped_column(BigInteger, default=0)
    valley: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    readings: Mapped[int] = mapped_column(default=0)


class UsageDaily(_UsageFigures, Base):
    """What one meter used on one site-local day: quantity, TOU split, cost, readings folded in."""

    __tablename__ = "usage_daily"
    __table_args__ = (UniqueConstraint("meter_id", "day"), Index("ix_usage_daily_site_day", "site_id", "day"))
    day: Mapped[date] = mapped_column(Date)


class UsageMonthly(_UsageFigures, Base):
    """The same per site-local month (`month` is its first day); always the sum of its days."""

    __tablename__ = "usage_monthly"
    __table_args__ = (UniqueConstraint("meter_id", "month"), Index("ix_usage_monthly_site_month", "site_id", "month"))
    month: Mapped[date] = mapped_column(Date)


class RollupMark(Base):
    """How far the roll-ups have read the readings table: the last id, and id ranges not seen yet.

    `gaps` holds [lo, hi, first_seen_epoch_s] ranges below `last_id` that were missing when the
    mark passed them (a PostgreSQL transaction still open then); they are looked at again until
    they show up or age out.
    """

    __tablename__ = "rollup_marks"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger, default=0)
    gaps: Mapped[list[list[int]]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BatchTask(Base):
    """One operation over many meters. state: scheduled -> running -> done | cancelled."""

    __tablename__ = "batch_tasks"
    __table_args__ = (Index("ix_batch_tasks_due", "state", "run_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    action: Mapped[str] = mapped_column(String(30))  # set_tariff | relay_off | relay_on | alert_amounts | time_sync | recharge
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    selector: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(12), default="scheduled")
    run_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deadline_s: Mapped[int] = mapped_column(default=3600)  # how long a meter command may keep trying
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    total: Mapped[int] = mapped_column(default=0)


class BatchItem(Base):
    """One meter of a batch task. state: pending -> sent -> done | failed (| cancelled | skipped)."""

    __tablename__ = "batch_items"
    __table_args__ = (UniqueConstraint("task_id", "meter_id"), Index("ix_batch_items_task_state", "task_id", "state"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("batch_tasks.id"))
    meter_id: Mapped[int] = mapped_column(ForeignKey("meters.id"))
    account_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    state: Mapped[str] = mapped_column(String(12), default="pending")
    attempt: Mapped[int] = mapped_column(default=0)
    command_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    result: Mapped[str | None] = mapped_column(String(300), default=None)
    error: Mapped[str | None] = mapped_column(String(500), default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
