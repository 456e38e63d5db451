"""Stand-ins for what sits outside the tenant API: WeChat's login servers and a payment starter."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.money import Money
from services.uow import in_transaction
from services.wallets import credit_order, get_account, new_trade_no
from store.models import Order
from store.types import utcnow

APPID, APP_SECRET = "wxminiapp0000001", "mini-secret"


def fake_wechat_app(codes: dict[str, str]) -> web.Application:
    """jscode2session and OAuth access_token as WeChat answers them (JSON labelled text/plain)."""

    async def exchange(request: web.Request) -> web.Response:
        q = request.query
        if q.get("appid") != APPID or q.get("secret") != APP_SECRET:
            return web.json_response({"errcode": 40125, "errmsg": "invalid appsecret"},
                                     content_type="text/plain")
        openid = codes.get(q.get("js_code") or q.get("code") or "")
        if openid is None:
            return web.json_response({"errcode": 40029, "errmsg": "invalid code"}, content_type="text/plain")
        return web.json_response({"openid": openid, "session_key": "c2Vzc2lvbg=="}, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/sns/jscode2session", exchange)
    app.router.add_get("/sns/oauth2/access_token", exchange)
    return app


class FakeStarter:
    """Creates a real Order row; the "provider" then reports it paid after `pay_after_s`,
    which credits it through services.wallets.credit_order, as the notify handler will."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], pay_after_s: float = 0.0) -> None:
        self.sessions = sessions
        self.pay_after_s = pay_after_s
        self.started: list[tuple[int, Money, str, str | None]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, account_id: int, amount: Money, channel: str, openid: str | None, *,
                    return_url: str | None = None) -> dict[str, Any]:
        provider = channel.split("_")[0]

        async def create(s: AsyncSession) -> str:
            acc = await get_account(s, account_id)
            no = new_trade_no("R")
            s.add(Order(site_id=acc.site_id, account_id=acc.id, kind="recharge", provider=provider,
                        channel=channel.split("_")[1], amount_fen=amount.fen, state="created",
                        idempotency_key=f"fake:{no}", out_trade_no=no))
            return no

        no = await in_transaction(self.sessions, create)
        self.started.append((account_id, amount, channel, openid))
        task = asyncio.create_task(self._pay_later(no))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if channel == "alipay_wap":
            return {"out_trade_no": no, "pay_url": f"{return_url}&out_trade_no={no}"}
        return {"out_trade_no": no, "jsapi_params": {"appId": APPID, "timeStamp": "1700000000", "nonceStr": "n",
                                                     "package": f"prepay_id=wx{no}", "signType": "RSA",
                                                     "paySign": "sig"}}

    async def _pay_later(self, out_trade_no: str) -> None:
        await asyncio.sleep(self.pay_after_s)

        async def paid(s: AsyncSession) -> None:
            from sqlalchemy import select

            order = await s.scalar(select(Order).where(Order.out_trade_no == out_trade_no))
            assert order is not None
            order.state, order.paid_at = "paid", utcnow()
            await credit_order(s, order, actor="fake-provider")

        await in_transaction(self.sessions, paid)

    async def settle(self) -> None:
        """Wait for every simulated payment to be credited."""
        if self._tasks:
            await asyncio.gather(*self._tasks)
