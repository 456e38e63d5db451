"""Live pollers: each one's heartbeat, so gateway leases can be shared fairly among those alive."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base
from store.types import UTCDateTime, utcnow


class PollerSeen(Base):
    """A poller process (by lease owner name) and when it last renewed its leases."""

    __tablename__ = "pollers"
    owner: Mapped[str] = mapped_column(String(100), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    gateways: Mapped[int] = mapped_column(default=0)
