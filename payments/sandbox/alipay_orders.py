"""The Alipay sandbox's order book: trades, refunds and the checks the gateway applies."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from billing.money import Money, MoneyError

SHANGHAI = ZoneInfo("Asia/Shanghai")


def now() -> datetime:
    """Beijing time: what Alipay stamps and expects."""
    return datetime.now(SHANGHAI)


class AlipayFault(Exception):
    """A documented Alipay error answer."""

    def __init__(self, code: str, msg: str, sub_code: str, sub_msg: str, signed: bool = True):
        super().__init__(sub_code)
        self.answer = {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}
        self.signed = signed


def business(sub_code: str, sub_msg: str) -> AlipayFault:
    return AlipayFault("40004", "Business Failed", sub_code, sub_msg)


@dataclass
class AlipayOrder:
    """One trade as the sandbox holds it."""

    out_trade_no: str
    total: Money
    subject: str
    notify_url: str | None
    trade_no: str
    created_at: datetime
    status: str = "WAIT_BUYER_PAY"
    seen_by_buyer: bool = False  # a precreated QR is unknown to trade.query until scanned
    paid_at: datetime | None = None
    refunded: Money = Money(0)
    refunds: dict[str, Money] = field(default_factory=dict)  # out_request_no -> amount


def parse_amount(value: object) -> Money:
    """A yuan string from biz_content, or the gateway's invalid-parameter error."""
    try:
        return Money.yuan(str(value))
    except MoneyError as ex:
        raise AlipayFault("40002", "Invalid Arguments", "isv.invalid-parameter",
                          f"金额无效: {value!r}") from ex


class AlipayOrderBook:
    """Trades by out_trade_no."""

    def __init__(self) -> None:
        self.orders: dict[str, AlipayOrder] = {}

    def apply_refund(self, order: AlipayOrder, request_no: str, amount: Money) -> None:
        """Record a new refund request; a full refund closes the trade, as Alipay does."""
        if order.status != "TRADE_SUCCESS":
            raise business("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        if not amount.is_positive or order.refunded + amount > order.total:
            raise business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
        order.refunds[request_no] = amount
        order.refunded = order.refunded + amount
        if order.refunded == order.total:
            order.status = "TRADE_CLOSED"

    def open(self, biz: dict[str, Any], notify_url: str | None) -> AlipayOrder:
        """Create (or, for an identical retry, return) the trade a precreate / wap pay names."""
        out_trade_no = str(biz.get("out_trade_no") or "")
        total = parse_amount(biz.get("total_amount"))
        if not out_trade_no or len(out_trade_no) > 64:
            raise AlipayFault("40002", "Invalid Arguments", "isv.invalid-parameter",
                              "out_trade_no 无效")
        order = self.orders.get(out_trade_no)
        if order is None:
            return self.new_order(out_trade_no, total, str(biz.get("subject", "")), notify_url)
        if order.total != total:
            raise business("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
        if order.status != "WAIT_BUYER_PAY":
            raise business("ACQ.TRADE_HAS_SUCCESS" if order.paid_at else "ACQ.TRADE_HAS_CLOSE",
                           "交易已支付或已关闭")
        return order

    def new_order(self, out_trade_no: str, total: Money, subject: str,
                  notify_url: str | None) -> AlipayOrder:
        """Store a new WAIT_BUYER_PAY trade with a fresh trade_no."""
        trade_no = now().strftime("%Y%m%d") + "22001" + f"{secrets.randbelow(10**15):015d}"
        order = AlipayOrder(out_trade_no, total, subject, notify_url, trade_no, now())
        self.orders[out_trade_no] = order
        return order
