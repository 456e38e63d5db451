"""Payment-flow fixtures: both sandboxes, our notify routes on a real socket, an account to pay into."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing.money import Money
from meterpay.web import SESSIONS
from payments.alipay import AlipayConfig, AlipayProvider
from payments.provider import PaymentProvider
from payments.sandbox import (AlipaySandbox, SandboxKeys, WechatPaySandbox, generate_keyset,
                              start_alipay_sandbox, start_wechatpay_sandbox)
from payments.sandbox.delivery import serve
from payments.views import setup_payment_routes
from payments.wechatpay import WechatPayConfig, WechatPayProvider
from services import ledger
from services.accounts import OpenAccount, open_account
from services.payments import create_payment
from services.uow import in_transaction
from services.wallets import balance
from store.models import LedgerTransaction, Order, PaymentConflict
from tests.factories import FLAT_1, add_meter, add_tariff, make_site


@pytest.fixture(scope="session")
def keys() -> SandboxKeys:
    return generate_keyset()


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running behind it."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()]
    assert not leaked, f"tasks leaked: {leaked}"


@dataclass
class Shop:
    """Our side: providers pointed at the sandboxes, notify routes served on loopback."""

    sessions: async_sessionmaker[AsyncSession]
    providers: dict[str, PaymentProvider]
    alipay: AlipaySandbox
    wechat: WechatPaySandbox
    url: str = ""

    def notify_url(self, provider: str) -> str:
        return f"{self.url}/payments/{provider}/notify"

    async def open(self, account_id: int, amount: Money, provider: str = "alipay", channel: str = "qr",
                   key: str | None = None, openid: str | None = None, meter_id: int | None = None) -> Order:
        async with self.sessions() as session:
            return await create_payment(session, account_id, amount, self.providers[provider], channel,
                                        key or uuid.uuid4().hex, openid, meter_id,
                                        notify_url=self.notify_url(provider))

    async def balance(self, account_id: int) -> Money:
        return (await in_transaction(self.sessions, lambda s: balance(s, account_id))).total

    async def order(self, out_trade_no: str) -> Order:
        async with self.sessions() as session:
            row = await session.scalar(select(Order).where(Order.out_trade_no == out_trade_no))
            assert row is not None
            return row

    async def credits(self, out_trade_no: str) -> int:
        async with self.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(LedgerTransaction).where(
                LedgerTransaction.key == f"recharge:{out_trade_no}")) or 0)

    async def conflicts(self) -> list[PaymentConflict]:
        async with self.sessions() as session:
            return list(await session.scalars(select(PaymentConflict).order_by(PaymentConflict.id)))

    async def books_balance(self) -> bool:
        async with self.sessions() as session:
            return (await ledger.verify(session)).ok


@pytest.fixture
async def shop(sessions, keys: SandboxKeys) -> AsyncIterator[Shop]:
    async with aiohttp.ClientSession() as http, \
            await start_alipay_sandbox(keys.alipay) as ali, await start_wechatpay_sandbox(keys.wechatpay) as wx:
        k, w = keys.alipay, keys.wechatpay
        providers: dict[str, PaymentProvider] = {
            "alipay": AlipayProvider(AlipayConfig(k.app_id, k.app_private_pem, k.alipay_public_pem, ali.url,
                                                  seller_id=k.seller_id), http),
            "wechatpay": WechatPayProvider(WechatPayConfig(w.mchid, w.appid, w.merchant_serial,
                                                           w.merchant_private_pem, w.apiv3_key,
                                                           {w.platform_serial: w.platform_public_pem}, wx.url), http),
        }
        app = web.Application()
        app[SESSIONS] = sessions
        setup_payment_routes(app, providers)
        runner, base = await serve(app, "127.0.0.1", 0)
        try:
            yield Shop(sessions, providers, ali, wx, base)
        finally:
            await runner.cleanup()


async def open_test_account(sessions, billing_side: str = "platform") -> tuple[int, int]:
    """A site, one meter and an open prepaid account; (account id, meter id)."""
    async def build(s):
        kit = await make_site(s, code=f"S{uuid.uuid4().hex[:6]}")
        t = await add_tariff(s, kit, "flat", FLAT_1)
        m = await add_meter(s, kit, "101", t, billing_side=billing_side)
        acc = await open_account(s, OpenAccount(kit.site.id, "Li Lei", "13800138000", (m.id,)))
        return acc.id, m.id
    return await in_transaction(sessions, build)


@pytest.fixture
async def account(sessions) -> int:
    return (await open_test_account(sessions))[0]
