"""Build the configured payment providers from Settings, and the PaymentStarter the tenant API calls.

A provider is configured when its id is set (ALIPAY_APPID, WECHATPAY_MCHID); its other
variables (payments/README.md) must then be present, or startup fails naming the missing one.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.money import Money
from meterpay.settings import Settings
from meterpay.web import SETTINGS
from payments.alipay import AlipayConfig, AlipayProvider
from payments.provider import PaymentProvider
from payments.wechatpay import WechatPayConfig, WechatPayProvider
from services.bill_payments import create_bill_payment, payable_bill
from services.errors import NotFound, ServiceError
from services.payments import create_payment

# channel as the pay page names it -> (provider, provider channel); bare names pick a default
CHANNELS = {"alipay_qr": ("alipay", "qr"), "alipay_wap": ("alipay", "wap"), "wap": ("alipay", "wap"),
            "wechatpay_jsapi": ("wechatpay", "jsapi"), "jsapi": ("wechatpay", "jsapi"),
            "wechatpay_qr": ("wechatpay", "qr")}


class PaymentConfigError(RuntimeError):
    """A provider is half configured (a variable or key file is missing)."""


def notify_url(public_url: str, provider: str) -> str:
    """Where the provider posts its notify for this deployment."""
    return f"{public_url.rstrip('/')}/payments/{provider}/notify"


def build_providers(settings: Settings, http: aiohttp.ClientSession) -> dict[str, PaymentProvider]:
    """Every provider whose id is set in the settings, sharing one HTTP client session."""
    env = settings.extra
    out: dict[str, PaymentProvider] = {}
    try:
        if env.get("ALIPAY_APPID"):
            out["alipay"] = AlipayProvider(AlipayConfig.from_env(env), http)
        if env.get("WECHATPAY_MCHID"):
            out["wechatpay"] = WechatPayProvider(WechatPayConfig.from_env(env), http)
    except KeyError as ex:
        raise PaymentConfigError(f"payment setting {ex.args[0]} is missing") from ex
    except OSError as ex:
        raise PaymentConfigError(f"payment key file unreadable: {ex.filename}") from ex
    except ValueError as ex:
        raise PaymentConfigError(f"payment configuration invalid: {ex}") from ex
    return out


async def providers_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: one aiohttp client for the providers, closed at shutdown."""
    from payments.views import PAYMENTS

    async with aiohttp.ClientSession() as http:
        app[PAYMENTS].providers.update(build_providers(app[SETTINGS], http))
        yield


class ProviderPaymentStarter:
    """The tenant API's PaymentStarter: open a recharge (or bill) order at the provider the channel names."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], providers: Mapping[str, PaymentProvider],
                 public_url: str) -> None:
        self.sessions, self.providers, self.public_url = sessions, providers, public_url

    def resolve(self, channel: str) -> tuple[PaymentProvider, str]:
        """('alipay_wap' | 'wap' | 'jsapi' | 'alipay_qr' | 'wechatpay_qr' | 'qr') -> (provider, its channel)."""
        name, sub = CHANNELS.get(channel, (None, channel))
        if channel == "qr":
            name = next((n for n in ("alipay", "wechatpay") if n in self.providers), None)
        provider = self.providers.get(name or "")
        if provider is None:
            raise ServiceError(f"payment channel {channel!r} is not available")
        return provider, sub

    async def start(self, account_id: int, amount: Money | None, channel: str, openid: str | None, *,
                    return_url: str | None = None, idempotency_key: str | None = None,
                    meter_id: int | None = None, bill_id: int | None = None) -> dict[str, Any]:
        """Create the order and return what the page needs to let the tenant pay.

        With `bill_id` the order pays that bill of `account_id` (amount None: all that is outstanding).
        """
        provider, sub = self.resolve(channel)
        key, url = idempotency_key or f"pay:{uuid.uuid4().hex}", notify_url(self.public_url, provider.name)
        async with self.sessions() as session:
            if bill_id is not None:
                if await payable_bill(session, bill_id, account_id) is None:
                    raise NotFound(f"bill {bill_id} is not a bill of account {account_id}")
                await session.commit()
                order = await create_bill_payment(session, bill_id, amount, provider, sub, key, openid,
                                                  notify_url=url, return_url=return_url)
            elif amount is None:
                raise ServiceError("a recharge needs an amount")
            else:
                order = await create_payment(session, account_id, amount, provider, sub, key, openid, meter_id,
                                             notify_url=url, return_url=return_url)
        start = (order.raw or {}).get("starts", {}).get(f"{provider.name}:{sub}", {})
        return {"order_id": order.id, "out_trade_no": order.out_trade_no, "provider": provider.name,
                "kind": order.kind, "bill_id": bill_id,
                "channel": sub, "amount_fen": order.amount_fen, "state": order.state,
                "qr_code": start.get("qr_code"), "pay_url": start.get("pay_url"),
                "jsapi_params": start.get("jsapi_params")}
