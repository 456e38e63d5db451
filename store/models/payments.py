"""Payment bookkeeping beside orders: every provider payment, conflicts for staff, reconciliation rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base
from store.types import BigId, UTCDateTime, utcnow


class ProviderPayment(Base):
    """One payment a provider reported for an order; (provider, trade_no) is seen once.

    role: `primary` (the payment that credited the order) or `extra` (the order was already paid:
    a second channel, or one QR code paid twice). status: credited | refund_due | refunding |
    refunded | refund_failed. An extra payment never touches the ledger; it is refunded in full.
    """

    __tablename__ = "provider_payments"
    __table_args__ = (UniqueConstraint("provider", "trade_no"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[int] = mapped_column(BigInteger, index=True)
    provider: Mapped[str] = mapped_column(String(20))
    trade_no: Mapped[str] = mapped_column(String(64))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    role: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(14))
    refund_no: Mapped[str | None] = mapped_column(String(64), default=None)
    last_error: Mapped[str | None] = mapped_column(String(300), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class PaymentConflict(Base):
    """An authentic notice we did not credit (amount, app id, merchant, currency, unknown refund)."""

    __tablename__ = "payment_conflicts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)  # a repeated notice adds no row
    provider: Mapped[str] = mapped_column(String(20))
    out_trade_no: Mapped[str] = mapped_column(String(64), index=True)
    trade_no: Mapped[str] = mapped_column(String(64), default="")
    order_id: Mapped[int | None] = mapped_column(BigInteger, default=None, index=True)
    field: Mapped[str] = mapped_column(String(30))
    expected: Mapped[str] = mapped_column(String(100), default="")
    actual: Mapped[str] = mapped_column(String(100), default="")
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    resolved_by: Mapped[str | None] = mapped_column(String(100), default=None)


class ReconciliationItem(Base):
    """One difference between a provider's record and ours, found by the daily reconciliation."""

    __tablename__ = "reconciliation_items"
    __table_args__ = (UniqueConstraint("day", "provider", "out_trade_no", "kind"),
                      Index("ix_reconciliation_items_day", "day"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    day: Mapped[str] = mapped_column(String(10))  # site-local YYYY-MM-DD
    provider: Mapped[str] = mapped_column(String(20))
    out_trade_no: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    kind: Mapped[str] = mapped_column(String(30))
    ours_fen: Mapped[int | None] = mapped_column(BigInteger, default=None)
    theirs_fen: Mapped[int | None] = mapped_column(BigInteger, default=None)
    detail: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
