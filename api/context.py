"""What the tenant API and pay views share: the port, the payment starter, secrets, the HTTP client."""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from api.starter import PaymentStarter
from api.wechat_login import WeChatApp
from services.tenant import DbTenantPort

SESSION_TTL_S = 7 * 86_400


@dataclass
class TenantContext:
    port: DbTenantPort
    starter: PaymentStarter
    secret_key: str = field(repr=False)
    public_url: str
    miniapp: WeChatApp | None  # code2session
    official: WeChatApp | None  # web OAuth for the pay page inside WeChat
    http: aiohttp.ClientSession | None = None
    session_ttl_s: int = SESSION_TTL_S


TENANT: web.AppKey[TenantContext] = web.AppKey("tenant_context", TenantContext)
TENANT_PORT: web.AppKey[DbTenantPort] = web.AppKey("tenant_port", DbTenantPort)


def ctx(request: web.Request) -> TenantContext:
    return request.app[TENANT]
