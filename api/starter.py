"""The port through which the tenant API and the pay page start a payment; payments/ implements it."""

from __future__ import annotations

from typing import Any, Protocol

from billing.money import Money

# jsapi: WeChat Pay inside WeChat (needs the payer's openid); wap: Alipay in a phone browser.
CHANNELS = ("wechatpay_jsapi", "alipay_wap")
MIN_AMOUNT = Money(1)
MAX_AMOUNT = Money.yuan(5000)


class PaymentStarter(Protocol):
    """Create a recharge order for an account (or, with `bill_id`, an order paying that bill of the
    account: `amount` None pays all that is outstanding) and open it at the provider.

    Returns a JSON-able dict with at least `out_trade_no`, and `jsapi_params` (the object
    for WeixinJSBridge `getBrandWCPayRequest`) for `wechatpay_jsapi` or `pay_url` (where to send
    the phone browser) for `alipay_wap`. `return_url` is where Alipay should send the browser
    back after paying. Raises services.errors.ServiceError (unknown / closed account ...) for
    refusals; payments.provider.ProviderError / ProviderRefused when the provider fails.
    """

    async def start(self, account_id: int, amount: Money | None, channel: str, openid: str | None, *,
                    return_url: str | None = None, bill_id: int | None = None) -> dict[str, Any]: ...
