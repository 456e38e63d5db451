"""Fixtures for the payment adapters: one key set per run, sandboxes and a merchant endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from payments.alipay import AlipayProvider
from payments.sandbox import (
    AlipaySandbox,
    SandboxKeys,
    WechatPaySandbox,
    generate_keyset,
    start_alipay_sandbox,
    start_wechatpay_sandbox,
)
from payments.wechatpay import WechatPayProvider
from tests.payments.support_payments import (
    Merchant,
    alipay_config,
    merchant_endpoint,
    wechat_config,
)


@pytest.fixture(scope="session")
def keys() -> SandboxKeys:
    return generate_keyset()


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running behind it."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks() - before if not t.done()
              and t is not asyncio.current_task()]
    assert not leaked, f"tasks leaked: {leaked}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def alipay_sandbox(keys: SandboxKeys) -> AsyncIterator[AlipaySandbox]:
    async with await start_alipay_sandbox(keys.alipay) as sandbox:
        yield sandbox


@pytest.fixture
async def wechat_sandbox(keys: SandboxKeys) -> AsyncIterator[WechatPaySandbox]:
    async with await start_wechatpay_sandbox(keys.wechatpay) as sandbox:
        yield sandbox


@pytest.fixture
def alipay(keys: SandboxKeys, alipay_sandbox: AlipaySandbox,
           http: aiohttp.ClientSession) -> AlipayProvider:
    return AlipayProvider(alipay_config(keys, alipay_sandbox.url), http)


@pytest.fixture
def wechat(keys: SandboxKeys, wechat_sandbox: WechatPaySandbox,
           http: aiohttp.ClientSession) -> WechatPayProvider:
    return WechatPayProvider(wechat_config(keys, wechat_sandbox.url), http)


@pytest.fixture
async def alipay_merchant(alipay: AlipayProvider) -> AsyncIterator[Merchant]:
    async for merchant in merchant_endpoint(alipay):
        yield merchant


@pytest.fixture
async def wechat_merchant(wechat: WechatPayProvider) -> AsyncIterator[Merchant]:
    async for merchant in merchant_endpoint(wechat):
        yield merchant
