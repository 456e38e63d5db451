"""Fee items, common-area apportionment groups and runs, and postpaid bills with their payments.

The unique keys are what make month-end re-runnable: one fee item code per site, one group
code per site, one apportionment run per (group, period), one bill per (account, period)
(`key` = ``bill:<account>:<period label>``), one line per (bill, source key), one payment per key.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Date, ForeignKey, Index, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.models.base import Base
from store.types import BigId, UTCDateTime, utcnow


class FeeItem(Base):
    """A configured fee (rent, property fee...): price basis, recurrence, window, collection, scope."""

    __tablename__ = "fee_items"
    __table_args__ = (UniqueConstraint("site_id", "code"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(100))
    basis: Mapped[str] = mapped_column(String(10))  # fixed | per_m2
    amount_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    rate_per_m2: Mapped[Decimal] = mapped_column(Numeric(12, 4), default=Decimal(0))  # yuan per m² per period
    recurrence: Mapped[str] = mapped_column(String(12))  # one_time | monthly | quarterly | yearly
    day_of_period: Mapped[int] = mapped_column(default=1)
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date, default=None)
    collection: Mapped[str] = mapped_column(String(10), default="deduct")  # deduct | bill
    prorate: Mapped[bool] = mapped_column(default=True)
    scope: Mapped[str] = mapped_column(String(10), default="site")  # site | building | rooms
    building_id: Mapped[int | None] = mapped_column(ForeignKey("buildings.id"), default=None)
    room_ids: Mapped[list[int] | None] = mapped_column(JSON, default=None)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApportionGroup(Base):
    """A common-area master meter whose monthly cost is split among its members."""

    __tablename__ = "apportion_groups"
    __table_args__ = (UniqueConstraint("site_id", "code"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(100))
    master_meter_id: Mapped[int] = mapped_column(ForeignKey("meters.id"), index=True)
    method: Mapped[str] = mapped_column(String(10))  # ratio | area | usage
    collection: Mapped[str] = mapped_column(String(10), default="deduct")  # deduct | bill
    active: Mapped[bool] = mapped_column(default=True)


class ApportionMember(Base):
    """A room or a sub-meter sharing a group's cost; `ratio` is used by the ratio method."""

    __tablename__ = "apportion_members"
    __table_args__ = (UniqueConstraint("group_id", "room_id", "meter_id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("apportion_groups.id"), index=True)
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id"), default=None)
    meter_id: Mapped[int | None] = mapped_column(ForeignKey("meters.id"), default=None)
    ratio: Mapped[Decimal] = mapped_column(Numeric(12, 6), default=Decimal(0))


class ApportionRun(Base):
    """The master's usage and cost for one period, as split the first time (re-runs reuse it)."""

    __tablename__ = "apportion_runs"
    __table_args__ = (UniqueConstraint("group_id", "period_start"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("apportion_groups.id"))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    quantity: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApportionShare(Base):
    """One member's part of a run; `account_id` None = vacant, borne by the property company."""

    __tablename__ = "apportion_shares"
    __table_args__ = (UniqueConstraint("run_id", "member_key"),
                      Index("ix_apportion_shares_account", "account_id", "run_id"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("apportion_runs.id"))
    member_key: Mapped[str] = mapped_column(String(40))  # room:<id> | meter:<id>
    account_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    wallet: Mapped[str | None] = mapped_column(String(80), default=None)
    weight: Mapped[str] = mapped_column(String(40))  # Decimal as text: exact on both databases
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    collection: Mapped[str] = mapped_column(String(10))
    source_key: Mapped[str] = mapped_column(String(160), unique=True)  # apportion:<group>:<period>:<member>


class Bill(Base):
    """A postpaid (or dunning) bill of one account for one period."""

    __tablename__ = "bills"
    __table_args__ = (Index("ix_bills_site_status", "site_id", "status"),
                      Index("ix_bills_site_period", "site_id", "period_start"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    number: Mapped[str] = mapped_column(String(60))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    due_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(12), default="draft")
    total_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    revision: Mapped[int] = mapped_column(default=0)
    issued_on: Mapped[date | None] = mapped_column(Date, default=None)
    void_reason: Mapped[str] = mapped_column(String(300), default="")
    issue_txn_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(100), default=None)


class BillLine(Base):
    """One billed thing; `source_key` names it, `revenue` is the ledger account it is earned in."""

    __tablename__ = "bill_lines"
    __table_args__ = (UniqueConstraint("bill_id", "source_key"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bill_id: Mapped[int] = mapped_column(ForeignKey("bills.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # energy | water | fee | apportionment | adjustment
    description: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(BigInteger, default=0)
    unit: Mapped[str] = mapped_column(String(10))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    source_key: Mapped[str] = mapped_column(String(160))
    revenue: Mapped[str] = mapped_column(String(80))


class BillPayment(Base):
    """A payment received against a bill, once per provider key; change went to the wallet."""

    __tablename__ = "bill_payments"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bill_id: Mapped[int] = mapped_column(ForeignKey("bills.id"), index=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    provider: Mapped[str] = mapped_column(String(20))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    applied_fen: Mapped[int] = mapped_column(BigInteger)
    change_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    txn_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
