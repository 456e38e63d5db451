"""Small adapters that connect entrypoints to the outside: SMS codes, WeChat custom messages, payments.

They are built from settings when the app starts and keep no state another process needs.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from aiohttp import web

from billing.money import Money
from meterpay.settings import Settings
from notifications.channel import Message
from notifications.templates import render
from services.tenant import CODE_TTL

log = logging.getLogger(__name__)
HTTP = web.AppKey("wiring_http", aiohttp.ClientSession)


async def http_ctx(app: web.Application):  # type: ignore[no-untyped-def]
    """One outbound HTTP session for providers, created at startup, closed at cleanup."""
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    app[HTTP] = session
    yield
    await session.close()


class SmsCodeSender:
    """Sends binding codes through the configured SMS channel; without one, says so in the log."""

    def __init__(self, app: web.Application, settings: Settings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, phone: str, code: str) -> None:
        from jobs.channels import build_channels

        channel = build_channels(self.settings, self.app[HTTP]).get("sms")
        msg = Message(key=f"verify:{phone}:{code}", kind="verify_code", locale="zh-CN", to=phone,
                      params={"code": code, "minutes": str(int(CODE_TTL.total_seconds() // 60))})
        if channel is None:
            dev = self.settings.get("METERPAY_ENV", "dev") != "production"
            log.warning("no SMS channel configured; verification code for %s not sent%s", phone[-4:],
                        f" (dev: {code})" if dev else "")
            return
        result = await channel.send(msg, render("verify_code", "zh-CN", msg.params))
        if not result.ok:
            log.warning("verification SMS failed: %s", result.error)


class WechatCustomSender:
    """Late bot answers go out as WeChat customer-service messages (needs WECHAT_APPID/WECHAT_SECRET)."""

    def __init__(self, app: web.Application, settings: Settings) -> None:
        self.app, self.settings = app, settings
        self._token: Any = None

    async def __call__(self, openid: str, text: str) -> None:
        from notifications.wechat_template import AccessToken, WechatApp

        secret = self.settings.get("WECHAT_SECRET") or self.settings.get("WECHAT_APPSECRET")
        appid = self.settings.get("WECHAT_APPID")
        if not (appid and secret):
            log.warning("late bot answer dropped: WECHAT_APPID/WECHAT_SECRET not configured")
            return
        base = self.settings.get("WECHAT_API_BASE", "https://api.weixin.qq.com") or ""
        if self._token is None:
            self._token = AccessToken(self.app[HTTP], WechatApp(appid, secret, base_url=base))
        token = await self._token.get()
        body = {"touser": openid, "msgtype": "text", "text": {"content": text}}
        async with self.app[HTTP].post(f"{base}/cgi-bin/message/custom/send", params={"access_token": token},
                                       json=body) as resp:
            data = await resp.json(content_type=None)
            if data.get("errcode", 0) != 0:
                log.warning("customer-service message failed: %s", data.get("errmsg"))


class LazyPaymentStarter:
    """The tenant API's PaymentStarter, resolved at first use (the database opens at startup)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    async def start(self, account_id: int, amount: Money | None, channel: str, openid: str | None,
                    *, return_url: str | None = None, bill_id: int | None = None) -> dict[str, Any]:
        from meterpay.web import SESSIONS, SETTINGS
        from payments.registry import ProviderPaymentStarter
        from payments.views import PAYMENTS

        starter = ProviderPaymentStarter(self.app[SESSIONS], self.app[PAYMENTS].providers,
                                         self.app[SETTINGS].public_url)
        return await starter.start(account_id, amount, channel, openid, return_url=return_url, bill_id=bill_id)
