"""Notification tables: the delivery log, tenant channel preferences, mini-program opt-ins."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base
from store.types import BigId, UTCDateTime, utcnow


class Delivery(Base):
    """One message on one channel: the unique (message_key, channel) makes a second send impossible.

    status: queued -> sending (claimed, lease until `next_attempt_at`) -> sent | failed | skipped;
    a failed attempt that may be retried goes back to queued with a later `next_attempt_at`.
    """

    __tablename__ = "notify_deliveries"
    __table_args__ = (
        UniqueConstraint("message_key", "channel"),
        Index("ix_notify_deliveries_due", "status", "next_attempt_at"),
        Index("ix_notify_deliveries_day", "recipient", "channel", "local_day"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_key: Mapped[str] = mapped_column(String(160))
    channel: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(30))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    recipient: Mapped[str] = mapped_column(String(40))  # "tenant:<id>" or "staff:<site id>"
    account_id: Mapped[int | None] = mapped_column(default=None, index=True)
    to: Mapped[str] = mapped_column(String(200))
    locale: Mapped[str] = mapped_column(String(10), default="zh-CN")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # level, crossing...
    status: Mapped[str] = mapped_column(String(10), default="queued")
    reason: Mapped[str] = mapped_column(String(20), default="now")  # now | quiet_hours | fallback | why skipped
    local_day: Mapped[str] = mapped_column(String(10))  # site-local YYYY-MM-DD it counts against
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    provider: Mapped[str | None] = mapped_column(String(20), default=None)
    provider_id: Mapped[str | None] = mapped_column(String(120), default=None)
    error: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class NotifyPreference(Base):
    """A tenant's channel choices and extra addresses; absent means the site's defaults."""

    __tablename__ = "notify_preferences"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), unique=True)
    channels: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # kind -> [channel]
    disabled: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    quiet_start: Mapped[str | None] = mapped_column(String(5), default=None)  # "22:00", site local
    quiet_end: Mapped[str | None] = mapped_column(String(5), default=None)
    daily_limits: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    miniprogram_openid: Mapped[str | None] = mapped_column(String(64), default=None)
    push_target: Mapped[str | None] = mapped_column(String(200), default=None)


class SubscribeOptIn(Base):
    """Mini-program one-time subscriptions left: each 'allow' tap buys one message of a kind."""

    __tablename__ = "notify_opt_ins"
    __table_args__ = (UniqueConstraint("tenant_id", "kind"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    kind: Mapped[str] = mapped_column(String(30))
    count: Mapped[int] = mapped_column(default=0)
