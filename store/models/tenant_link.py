"""Which WeChat users may see which accounts, and the SMS challenges that prove it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base
from store.types import BigId, UTCDateTime, utcnow


class TenantLink(Base):
    """One WeChat identity bound to one account; one openid may hold several rooms, across sites."""

    __tablename__ = "tenant_links"
    __table_args__ = (UniqueConstraint("openid", "account_id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    openid: Mapped[str] = mapped_column(String(64), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    via: Mapped[str] = mapped_column(String(12))  # phone | room | staff
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BindChallenge(Base):
    """An SMS code sent to a registered phone, kept only as an HMAC with an expiry and a try budget;
    also each failed room-number guess, so guessing the last 4 digits is throttled."""

    __tablename__ = "bind_challenges"
    __table_args__ = (Index("ix_bind_challenges_phone_created", "phone", "created_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(12), default="sms")  # sms | room_miss (a failed room guess)
    openid: Mapped[str] = mapped_column(String(64), index=True)
    phone: Mapped[str] = mapped_column(String(20))
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
