"""Secrets come only from configuration and never reach a log line, whatever a request cycle goes through.

The log records are captured raw (no redacting filter in the way), at DEBUG, across signed and
unsigned webhooks, failed and good sign-ins, the tenant API and the pay page; none may carry a
secret value from Settings or a line of a configured private key.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from pathlib import Path

from api import tokens
from meterpay.web import init_app
from tests.admin.conftest import PASSWORD, csrf_of, sign_in
from tests.security.conftest import SECRETS


def _key_lines(settings) -> list[str]:  # type: ignore[no-untyped-def]
    """The base64 body lines of every configured private key (a leaked fragment is a leak too)."""
    out = []
    for name in ("ALIPAY_PRIVATE_KEY", "WECHATPAY_PRIVATE_KEY"):
        text = Path(settings.get(name)).read_text()
        out += [ln for ln in text.splitlines() if ln and not ln.startswith("-----")]
    return out


def _wechat_query(token: str) -> dict[str, str]:
    ts, nonce = str(int(time.time())), secrets.token_hex(4)
    return {"timestamp": ts, "nonce": nonce, "openid": "o-sweep",
            "signature": hashlib.sha1("".join(sorted([token, ts, nonce])).encode()).hexdigest()}


async def test_no_secret_from_settings_appears_in_the_logs_of_a_request_cycle(aiohttp_client, full_settings, world,
                                                                                caplog):
    caplog.set_level(logging.DEBUG)
    client = await aiohttp_client(init_app(full_settings))
    good = _wechat_query(SECRETS["WECHAT_TOKEN"])
    xml = "<xml><ToUserName>gh</ToUserName><FromUserName>o-sweep</FromUserName><CreateTime>1</CreateTime>" \
          "<MsgType>text</MsgType><Content>余额</Content><MsgId>42</MsgId></xml>"
    calls = [("GET", "/healthz", {}, None), ("GET", "/wechat", {**good, "echostr": "e"}, None),
             ("POST", "/wechat", good, xml), ("POST", "/wechat", {**good, "signature": "0" * 40}, xml),
             ("POST", "/payments/alipay/notify", {}, "sign=abc&out_trade_no=X1&trade_status=TRADE_SUCCESS"),
             ("POST", "/payments/wechatpay/notify", {}, '{"id": "x", "resource": {}}'),
             ("GET", "/pay/", {"account": str(world.a.account), "sig": "bad"}, None),
             ("POST", "/api/login", {}, '{"code": "c-1"}')]
    for method, path, params, body in calls:
        async with client.request(method, path, params=params, data=body) as resp:
            text = await resp.text()
            assert resp.status != 500 or '"FAIL"' in text, (path, resp.status, text)  # WeChat Pay v3 fails with 5xx
    token = await csrf_of(client)
    await client.post("/admin/login", data={"username": "owner", "password": "wrong", "_csrf": token})
    await sign_in(client, "owner", PASSWORD)
    for page in ("/admin/", f"/admin/rooms/{world.a.room}", "/admin/users", "/admin/audit"):
        assert (await client.get(page)).status == 200
    bearer = {"Authorization": f"Bearer {tokens.issue(full_settings.secret_key, 'o-sweep', 600)}"}
    async with client.post("/api/rooms/bind/phone", json={"phone": "13900000001"}, headers=bearer) as resp:
        await resp.read()  # through the SMS channel (and its error path, with a traceback in the log)
    assert caplog.records, "the cycle should have logged something"
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    leaks = [name for name, value in SECRETS.items() if value in logged]
    leaks += [f"private key line {i}" for i, line in enumerate(_key_lines(full_settings)) if line in logged]
    assert leaks == []
    assert not any(value in repr(full_settings) + str(full_settings) for value in SECRETS.values())
