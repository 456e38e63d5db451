"""Ledger (accounts, transactions, postings), orders and the transactional outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, ForeignKeyConstraint, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store import ledger_guard
from store.models.base import Base
from store.types import BigId, UTCDateTime, utcnow


class LedgerAccount(Base):
    """A ledger account; `balance_fen` is a cache of the sum of its postings, checked by services.ledger.verify."""

    __tablename__ = "ledger_accounts"
    # balance_fen changes on every payment and ingest batch (which moves every wallet of a page):
    # half of each page kept free keeps those updates HOT
    __table_args__ = (UniqueConstraint("site_id", "code"), {"postgresql_with": {"fillfactor": 50}})
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    code: Mapped[str] = mapped_column(String(80))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True, default=None)
    meter_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    balance_fen: Mapped[int] = mapped_column(BigInteger, default=0)


class LedgerTransaction(Base):
    __tablename__ = "ledger_transactions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    key: Mapped[str] = mapped_column(String(160), unique=True)
    kind: Mapped[str] = mapped_column(String(20), index=True)
    memo: Mapped[str] = mapped_column(String(300), default="")
    actor: Mapped[str | None] = mapped_column(String(100), default=None)
    order_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class Posting(Base):
    """One leg of a transaction. Its references are foreign keys on SQLite and one check per
    statement on PostgreSQL, where the ledger is append-only (store/ledger_guard.py)."""

    __tablename__ = "ledger_postings"
    __table_args__ = (Index("ix_ledger_postings_account", "ledger_account_id", "txn_id"),
                      ForeignKeyConstraint(["txn_id"], ["ledger_transactions.id"]).ddl_if(dialect="sqlite"),
                      ForeignKeyConstraint(["ledger_account_id"], ["ledger_accounts.id"]).ddl_if(dialect="sqlite"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    txn_id: Mapped[int] = mapped_column(BigId, index=True)
    ledger_account_id: Mapped[int] = mapped_column(BigId)
    amount_fen: Mapped[int] = mapped_column(BigInteger)


ledger_guard.install_on_create(Posting.__table__)  # type: ignore[arg-type]


class Order(Base):
    """A recharge or refund, provider-agnostic. created -> paid -> credited (-> refunded) | closed | failed | conflict."""

    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_account_created", "account_id", "created_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    meter_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    kind: Mapped[str] = mapped_column(String(12))  # recharge | refund
    provider: Mapped[str] = mapped_column(String(20))  # cash | alipay | wechatpay
    channel: Mapped[str | None] = mapped_column(String(20), default=None)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(12), default="created", index=True)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    out_trade_no: Mapped[str] = mapped_column(String(64), unique=True)
    provider_trade_no: Mapped[str | None] = mapped_column(String(64), default=None)
    refund_of: Mapped[int | None] = mapped_column(BigInteger, default=None)
    txn_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    actor: Mapped[str | None] = mapped_column(String(100), default=None)
    note: Mapped[str | None] = mapped_column(String(300), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class Outbox(Base):
    """Side effects written in the same transaction as the change that caused them."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "done_at", "available_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(160), unique=True)
    topic: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    available_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
