"""Mounting the tenant API (/api/) and the pay page (/pay/) on the application."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime

import aiohttp
from aiohttp import web

from api import views
from api.context import TENANT, TENANT_PORT, TenantContext
from api.errors import json_errors
from api.starter import PaymentStarter
from api.wechat_login import WeChatApp
from meterpay.settings import Settings
from meterpay.web import SESSIONS, SETTINGS
from pay import views as pay
from services.tenant import DbTenantPort, SendSms
from store.types import utcnow


def _wechat_app(settings: Settings, appid_names: tuple[str, ...], secret_names: tuple[str, ...]) -> WeChatApp | None:
    appid = next((v for n in appid_names if (v := settings.get(n))), None)
    secret = next((v for n in secret_names if (v := settings.get(n))), None)
    if not appid or not secret:
        return None
    return WeChatApp(appid, secret, settings.get("WECHAT_API_BASE") or "https://api.weixin.qq.com")


def setup_tenant_routes(app: web.Application, *, send_sms: SendSms, payment_starter: PaymentStarter,
                        clock: Callable[[], datetime] = utcnow) -> None:
    """Mount /api/ and /pay/; the DB port is `app[TENANT_PORT]` (the /wechat bot uses it too).

    Needs `app[SETTINGS]` now and `app[SESSIONS]` once started (meterpay.web's database context).
    """
    settings = app[SETTINGS]
    public_url = settings.public_url.rstrip("/")
    port = DbTenantPort(lambda: app[SESSIONS], secret_key=settings.secret_key,
                        pay_base_url=f"{public_url}/pay/", send_sms=send_sms, clock=clock)
    app[TENANT_PORT] = port
    app[TENANT] = TenantContext(
        port=port, starter=payment_starter, secret_key=settings.secret_key, public_url=public_url,
        miniapp=_wechat_app(settings, ("WECHAT_MINIAPP_APPID",), ("WECHAT_MINIAPP_SECRET",)),
        official=_wechat_app(settings, ("WECHAT_APPID",), ("WECHAT_SECRET", "WECHAT_APPSECRET")))
    app.middlewares.append(json_errors)
    app.cleanup_ctx.append(_http_client)
    r = app.router
    r.add_get("/api/openapi.json", views.openapi)
    r.add_post("/api/login", views.login)
    r.add_get("/api/rooms", views.rooms)
    r.add_post("/api/rooms/bind/phone", views.bind_phone)
    r.add_post("/api/rooms/bind/code", views.bind_code)
    r.add_post("/api/rooms/bind/room", views.bind_room)
    r.add_delete("/api/rooms/{account_id}", views.unbind)
    r.add_get("/api/balance", views.balance)
    r.add_get("/api/usage", views.usage)
    r.add_get("/api/usage/series", views.usage_series)
    r.add_get("/api/orders", views.orders)
    r.add_get("/api/orders/{order_no}", views.order)
    r.add_get("/api/bills", views.bills)
    r.add_post("/api/payments", views.create_payment)
    r.add_get("/pay/", pay.pay_form)
    r.add_post("/pay/", pay.start)
    r.add_get("/pay/result", pay.result)
    r.add_get("/pay/status", pay.status)
    r.add_get("/pay/oauth", pay.oauth)


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as http:
        app[TENANT].http = http
        yield
        app[TENANT].http = None
