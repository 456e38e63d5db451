"""Local Alipay and WeChat Pay servers with real signatures, for tests and benchmarks."""

from payments.sandbox.alipay_server import AlipayOrder, AlipaySandbox, start_alipay_sandbox
from payments.sandbox.delivery import Delivery
from payments.sandbox.keys import AlipayKeys, SandboxKeys, WechatPayKeys, generate_keyset
from payments.sandbox.wechatpay_server import (
    WechatOrder,
    WechatPaySandbox,
    WechatRefund,
    start_wechatpay_sandbox,
)

__all__ = [
    "AlipayKeys", "AlipayOrder", "AlipaySandbox", "Delivery", "SandboxKeys", "WechatOrder",
    "WechatPayKeys", "WechatPaySandbox", "WechatRefund", "generate_keyset",
    "start_alipay_sandbox", "start_wechatpay_sandbox",
]
