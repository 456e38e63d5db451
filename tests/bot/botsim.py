"""Test helpers for the bot: a seeded fake port and a stand-in for WeChat's servers (wechatpy)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import xmltodict
from aiohttp.test_utils import TestClient
from wechatpy.crypto import WeChatCrypto
from wechatpy.replies import deserialize_reply
from wechatpy.utils import WeChatSigner

from billing.money import Money
from bot.fake_port import FakeAccount, FakeTenantPort
from bot.port import BillView, OrderView, RoomView, TouSplit, UsageView

TOKEN = "meterpay-test-token"
APPID = "wx1234567890abcdef"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"  # 43 chars, as the console shows it
ACCOUNT = "gh_meterpay"
TENANT = "o-tenant-1"
STRANGER = "o-stranger"
SMS_CODE = "246810"

Mode = Literal["plain", "compatible", "safe"]

ROOM_101 = RoomView("acc-101", "A", "A栋", "101")
ROOM_202 = RoomView("acc-202", "B", "B栋", "202")


def seeded_port() -> FakeTenantPort:
    """Two rooms: A栋 101 (bound to TENANT, electricity + water) and B栋 202 (unbound)."""
    port = FakeTenantPort(code_factory=lambda: SMS_CODE, room_binding_sites=frozenset({"A"}))
    port.add_account(FakeAccount(
        room=ROOM_101, phone="13800138000",
        balances={"electricity": Money.yuan("12.34"), "water": Money.yuan("30.00")},
        daily_cost={"electricity": Money.yuan("2.00")},
        usage={
            ("electricity", "month"): UsageView(
                ROOM_101, "electricity", "month", 123_456, Money.yuan("67.89"),
                TouSplit(sharp_wh=10_000, peak_wh=40_000, flat_wh=50_000, valley_wh=23_456)),
            ("electricity", "today"): UsageView(
                ROOM_101, "electricity", "today", 4_500, Money.yuan("2.48")),
            ("water", "last_month"): UsageView(
                ROOM_101, "water", "last_month", 3_250, Money.yuan("16.25")),
        },
        orders=[OrderView("R20261005001", ROOM_101, "recharge", Money.yuan(100), "paid",
                          "wechatpay", dt.datetime(2026, 10, 5, 12, 30))],
        bills=[BillView("B202610-101", ROOM_101, dt.date(2026, 10, 1), dt.date(2026, 10, 31),
                        Money.yuan("88.00"), "unpaid")],
    ))
    port.add_account(FakeAccount(room=ROOM_202, phone="13900139000",
                                 balances={"electricity": Money.yuan("-5.00")}))
    port.bind(TENANT, "acc-101")
    return port


def wechat_signature(*parts: str) -> str:
    """The signature as wechatpy computes it (not the bot's own code)."""
    signer = WeChatSigner()
    signer.add_data(*parts)
    return str(signer.signature)


class CustomMessages:
    """Records customer-service messages; tests wait for them to arrive."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.arrived = asyncio.Event()

    async def __call__(self, openid: str, text: str) -> None:
        self.sent.append((openid, text))
        self.arrived.set()


class WeChat:
    """Plays WeChat's servers: signs, encrypts and posts callbacks; reads the replies."""

    def __init__(self, client: TestClient, mode: Mode, token: str = TOKEN,
                 appid: str = APPID) -> None:
        self.client = client
        self.mode = mode
        self.token = token
        self.crypto = WeChatCrypto(token, AES_KEY, appid)
        self._msg_ids = itertools.count(6_900_000_000_000_000_001)

    def signed_query(self, timestamp: int | None = None) -> dict[str, str]:
        ts, nonce = str(timestamp or int(time.time())), secrets.token_hex(5)
        return {"signature": wechat_signature(self.token, ts, nonce), "timestamp": ts,
                "nonce": nonce, "openid": TENANT}

    def text_xml(self, openid: str, content: str, msg_id: int | None = None,
                 create_time: int | None = None) -> str:
        return xmltodict.unparse({"xml": {
            "ToUserName": ACCOUNT, "FromUserName": openid,
            "CreateTime": str(create_time or int(time.time())), "MsgType": "text",
            "Content": content, "MsgId": str(msg_id or next(self._msg_ids))}}, full_document=False)

    def event_xml(self, openid: str, event: str, key: str | None = None,
                  create_time: int | None = None) -> str:
        fields = {"ToUserName": ACCOUNT, "FromUserName": openid,
                  "CreateTime": str(create_time or int(time.time())), "MsgType": "event",
                  "Event": event} | ({"EventKey": key} if key is not None else {})
        return xmltodict.unparse({"xml": fields}, full_document=False)

    def wrap(self, xml: str) -> tuple[dict[str, str], str]:
        """Query and body for `xml` as WeChat sends it in the current mode."""
        query = self.signed_query()
        if self.mode == "plain":
            return query, xml
        sealed = xmltodict.parse(self.crypto.encrypt_message(xml, query["nonce"],
                                                            query["timestamp"]))["xml"]
        inner = xmltodict.parse(xml)["xml"] if self.mode == "compatible" else {
            "ToUserName": ACCOUNT}
        body = xmltodict.unparse({"xml": inner | {"Encrypt": sealed["Encrypt"]}},
                                 full_document=False)
        return query | {"encrypt_type": "aes", "msg_signature": sealed["MsgSignature"]}, body

    async def post_xml(self, xml: str) -> tuple[int, str]:
        query, body = self.wrap(xml)
        response = await self.client.post("/wechat", params=query, data=body.encode())
        return response.status, await response.text()

    def read_reply(self, body: str) -> str:
        """The text content of a passive reply ("success" stays as is)."""
        if body == "success":
            return body
        if self.mode != "plain":
            outer = xmltodict.parse(body)["xml"]
            body = self.crypto.decrypt_message(body, outer["MsgSignature"], outer["TimeStamp"],
                                               outer["Nonce"])
        reply = deserialize_reply(body)
        assert reply.target is not None and reply.source == ACCOUNT
        return str(reply.content)

    async def say(self, text: str, openid: str = TENANT) -> str:
        status, body = await self.post_xml(self.text_xml(openid, text))
        assert status == 200, body
        return self.read_reply(body)

    async def click(self, key: str, openid: str = TENANT) -> str:
        status, body = await self.post_xml(self.event_xml(openid, "CLICK", key))
        assert status == 200, body
        return self.read_reply(body)




MakeWeChat = Callable[..., Awaitable[WeChat]]
