"""Mounting each entrypoint's routes (admin, bot, payments, tenant API, pay page) on the application."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """The one place that lists what the web process serves."""
    from admin import setup_admin
    from api import TENANT_PORT, setup_tenant_routes
    from bot.seen_redis import seen_store_for
    from bot.wechat import WeChatEndpoint, WeChatSettings, setup_wechat_routes
    from meterpay.web import SETTINGS
    from meterpay.wiring import LazyPaymentStarter, SmsCodeSender, WechatCustomSender, http_ctx
    from payments.views import setup_payment_routes

    settings = app[SETTINGS]
    app.cleanup_ctx.append(http_ctx)
    setup_payment_routes(app)
    setup_tenant_routes(app, send_sms=SmsCodeSender(app, settings), payment_starter=LazyPaymentStarter(app))
    wechat = WeChatSettings(token=settings.get("WECHAT_TOKEN") or "", appid=settings.get("WECHAT_APPID") or "",
                            aes_key=settings.get("WECHAT_AES_KEY"))
    setup_wechat_routes(app, WeChatEndpoint(app[TENANT_PORT], wechat, WechatCustomSender(app, settings),
                                            seen_store_for(app, settings)))
    from admin.reports_views import setup_reports_routes

    setup_admin(app, extra=(setup_reports_routes,))
