"""The WeChat Pay sandbox's order book: orders, refunds, and the v3 JSON that describes them."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from payments.sandbox.keys import WechatPayKeys

SHANGHAI = ZoneInfo("Asia/Shanghai")


def now() -> datetime:
    """Beijing time to the second, as WeChat Pay writes it (RFC 3339 with +08:00)."""
    return datetime.now(SHANGHAI).replace(microsecond=0)


class WechatFault(Exception):
    """A documented v3 error answer: HTTP status plus {"code", "message"}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code)
        self.status, self.code, self.message = status, code, message


@dataclass
class WechatRefund:
    """One refund request, keyed by out_refund_no."""

    out_refund_no: str
    refund_id: str
    amount: int
    status: str
    notify_url: str | None
    created_at: datetime
    success_time: datetime | None = None


@dataclass
class WechatOrder:
    """One transaction as the sandbox holds it (amounts in fen, as on the wire)."""

    out_trade_no: str
    total: int
    description: str
    notify_url: str
    trade_type: str  # JSAPI | NATIVE
    prepay_id: str
    openid: str | None
    created_at: datetime
    trade_state: str = "NOTPAY"
    transaction_id: str | None = None
    success_time: datetime | None = None
    refunds: dict[str, WechatRefund] = field(default_factory=dict)

    @property
    def refunded(self) -> int:
        """Fen refunded or being refunded (closed refunds do not count)."""
        return sum(r.amount for r in self.refunds.values() if r.status != "CLOSED")


class WechatOrderBook:
    """Orders by out_trade_no, with the checks the v3 API applies to create and refund."""

    def __init__(self, keys: WechatPayKeys) -> None:
        self._keys = keys
        self.orders: dict[str, WechatOrder] = {}
        self.refund_status_on_create = "PROCESSING"  # WeChat usually settles refunds later

    def open(self, req: Mapping[str, Any], trade_type: str) -> WechatOrder:
        """Create (or, for an identical retry, return) the order a JSAPI/Native call names."""
        if req.get("appid") != self._keys.appid or req.get("mchid") != self._keys.mchid:
            raise WechatFault(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        amount, out_trade_no = req.get("amount") or {}, str(req.get("out_trade_no") or "")
        total = amount.get("total")
        if not 6 <= len(out_trade_no) <= 32 or not isinstance(total, int) or total <= 0 \
                or amount.get("currency", "CNY") != "CNY" or not req.get("notify_url"):
            raise WechatFault(400, "PARAM_ERROR", "参数错误")
        openid = (req.get("payer") or {}).get("openid")
        if trade_type == "JSAPI" and not openid:
            raise WechatFault(400, "PARAM_ERROR", "JSAPI 下单需要 payer.openid")
        order = self.orders.get(out_trade_no)
        if order is None:
            return self.new_order(out_trade_no, total, str(req.get("description", "")),
                                   str(req["notify_url"]), trade_type, openid)
        if order.total != total or order.trade_type != trade_type:
            raise WechatFault(400, "INVALID_REQUEST", "201 商户订单号重复")
        if order.trade_state == "SUCCESS":
            raise WechatFault(400, "ORDER_PAID", "订单已支付")
        if order.trade_state == "CLOSED":
            raise WechatFault(400, "ORDER_CLOSED", "订单已关闭")
        return order

    def new_order(self, out_trade_no: str, total: int, description: str, notify_url: str,
                   trade_type: str, openid: str | None) -> WechatOrder:
        """Store a new NOTPAY order with a fresh prepay_id."""
        order = WechatOrder(out_trade_no, total, description, notify_url, trade_type,
                            "wx" + secrets.token_hex(15), openid, now())
        self.orders[out_trade_no] = order
        return order

    def mark_paid(self, order: WechatOrder) -> None:
        """The buyer paid: SUCCESS, a transaction id and the time."""
        order.trade_state, order.success_time = "SUCCESS", now()
        order.transaction_id = f"4200{now():%Y%m%d}{secrets.randbelow(10**16):016d}"

    def new_refund(self, order: WechatOrder, req: Mapping[str, Any],
                    out_refund_no: str) -> WechatRefund:
        """Accept a refund request after the checks WeChat applies (paid, total, remainder)."""
        amount = req.get("amount") or {}
        refund, total = amount.get("refund"), amount.get("total")
        if not out_refund_no or not isinstance(refund, int) or refund <= 0:
            raise WechatFault(400, "PARAM_ERROR", "参数错误")
        if order.trade_state not in ("SUCCESS", "REFUND"):
            raise WechatFault(400, "INVALID_REQUEST", "订单未支付")
        if total != order.total:
            raise WechatFault(400, "INVALID_REQUEST", "订单金额与实际不符")
        if order.refunded + refund > order.total:
            raise WechatFault(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        created = WechatRefund(out_refund_no, "5030" + secrets.token_hex(12), refund,
                               self.refund_status_on_create, req.get("notify_url"), now())
        if created.status == "SUCCESS":
            created.success_time = created.created_at
        order.refunds[out_refund_no] = created
        order.trade_state = "REFUND"
        return created

    def refund_by_no(self, out_refund_no: str) -> tuple[WechatOrder, WechatRefund]:
        """The order and refund for an out_refund_no (404 RESOURCE_NOT_EXISTS otherwise)."""
        for order in self.orders.values():
            if out_refund_no in order.refunds:
                return order, order.refunds[out_refund_no]
        raise WechatFault(404, "RESOURCE_NOT_EXISTS", "退款单不存在")

    def refund_answer(self, order: WechatOrder, refund: WechatRefund) -> dict[str, Any]:
        """The refund object as the refunds API returns it."""
        answer = {
            "refund_id": refund.refund_id, "out_refund_no": refund.out_refund_no,
            "transaction_id": order.transaction_id, "out_trade_no": order.out_trade_no,
            "channel": "ORIGINAL", "user_received_account": "支付用户零钱",
            "create_time": refund.created_at.isoformat(), "status": refund.status,
            "amount": {"total": order.total, "refund": refund.amount, "payer_total": order.total,
                       "payer_refund": refund.amount, "currency": "CNY"},
        }
        if refund.success_time:
            answer["success_time"] = refund.success_time.isoformat()
        return answer

    def transaction(self, order: WechatOrder) -> dict[str, Any]:
        """The transaction object (query answer and notify plaintext)."""
        plain: dict[str, Any] = {
            "appid": self._keys.appid, "mchid": self._keys.mchid,
            "out_trade_no": order.out_trade_no, "trade_type": order.trade_type,
            "trade_state": order.trade_state, "trade_state_desc": order.trade_state,
            "attach": "", "amount": {"total": order.total, "currency": "CNY"},
        }
        if order.openid:
            plain["payer"] = {"openid": order.openid}
        if order.transaction_id and order.success_time:
            plain.update(transaction_id=order.transaction_id, bank_type="OTHERS",
                         success_time=order.success_time.isoformat())
            plain["amount"].update(payer_total=order.total, payer_currency="CNY")
        return plain
