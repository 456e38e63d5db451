"""A local api.weixin.qq.com: access tokens, template messages and subscribe messages.

Tokens are checked per app and expire; template sends are deduplicated by (touser,
client_msg_id) as WeChat documents; a subscribe send spends one opt-in or fails with 43101.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from notifications.sandbox.server import Sandbox

ERRMSG = {
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40013: "invalid appid",
    40037: "invalid template_id",
    40125: "invalid appsecret",
    41001: "access_token missing",
    42001: "access_token expired",
    43004: "require subscribe",
    43101: "user refuse to accept the msg",
    47001: "data format error",
}


@dataclass
class WechatSandbox(Sandbox):
    """Serves /cgi-bin/token, /cgi-bin/message/template/send and /cgi-bin/message/subscribe/send."""

    apps: Mapping[str, str] = field(default_factory=dict)  # appid -> secret
    token_ttl_s: int = 7200
    clock: Callable[[], float] = time.monotonic
    unfollowed: set[str] = field(default_factory=set)  # openids not following the account
    token_requests: int = field(default=0, init=False)
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict, init=False)
    _opt_ins: Counter[tuple[str, str]] = field(default_factory=Counter, init=False)
    _client_ids: dict[tuple[str, str], int] = field(default_factory=dict, init=False)

    def routes(self) -> list[web.RouteDef]:
        """The three WeChat endpoints the channels use."""
        return [
            web.get("/cgi-bin/token", self._token),
            web.post("/cgi-bin/message/template/send", self._template),
            web.post("/cgi-bin/message/subscribe/send", self._subscribe),
        ]

    def grant_subscription(self, openid: str, template_id: str, times: int = 1) -> None:
        """The user tapped 'allow' in the mini-program: one more message may be sent."""
        self._opt_ins[(openid, template_id)] += times

    def opt_ins_left(self, openid: str, template_id: str) -> int:
        """Opt-ins not yet spent."""
        return self._opt_ins[(openid, template_id)]

    def expire_tokens(self) -> None:
        """Let every issued token run out, as if its two hours had passed."""
        self._tokens = {t: (app, self.clock() - 1) for t, (app, _) in self._tokens.items()}

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        q = request.query
        if q.get("grant_type") != "client_credential":
            return _error(40002)
        if q.get("appid") not in self.apps:
            return _error(40013)
        if self.apps[q["appid"]] != q.get("secret"):
            return _error(40125)
        token = secrets.token_urlsafe(48)
        self._tokens[token] = (q["appid"], self.clock() + self.token_ttl_s)
        return web.json_response({"access_token": token, "expires_in": self.token_ttl_s})

    async def _template(self, request: web.Request) -> web.StreamResponse:
        return await self._message(request, template=True)

    async def _subscribe(self, request: web.Request) -> web.StreamResponse:
        return await self._message(request, template=False)

    async def _message(self, request: web.Request, *, template: bool) -> web.StreamResponse:
        body = await request.read()
        params: dict[str, Any] = {}
        code = self._check_token(request.query.get("access_token"))
        if code == 0:
            try:
                params = json.loads(body)
            except ValueError:
                code = 47001
        if code == 0:
            code = _check_body(params)
        if code != 0:
            return self._refuse(request, body, params, code)
        fault = self.take_fault()
        if fault is not None:
            await self.hold(fault)
            if fault.status is not None:
                self.record(request, body, params, False, f"HTTP {fault.status}")
                return web.Response(status=fault.status, text="injected")
            if fault.code is not None:
                return self._refuse(request, body, params, int(fault.code))
        return self._deliver_template(request, body, params) if template else \
            self._deliver_subscribe(request, body, params)

    def _deliver_template(
        self, request: web.Request, body: bytes, params: dict[str, Any]
    ) -> web.Response:
        if params["touser"] in self.unfollowed:
            return self._refuse(request, body, params, 43004)
        dedup = (params["touser"], str(params.get("client_msg_id", "")))
        if dedup[1] and dedup in self._client_ids:
            self.record(request, body, params, True, duplicate=True)
            return _ok(self._client_ids[dedup])
        msgid = 2_000_000 + len(self.received)
        if dedup[1]:
            self._client_ids[dedup] = msgid
        self.record(request, body, params, True)
        return _ok(msgid)

    def _deliver_subscribe(
        self, request: web.Request, body: bytes, params: dict[str, Any]
    ) -> web.Response:
        grant = (params["touser"], params["template_id"])
        if self._opt_ins[grant] < 1:
            return self._refuse(request, body, params, 43101)
        self._opt_ins[grant] -= 1
        self.record(request, body, params, True)
        return _ok(3_000_000 + len(self.received))

    def _check_token(self, token: str | None) -> int:
        if not token:
            return 41001
        issued = self._tokens.get(token)
        if issued is None:
            return 40001
        return 42001 if self.clock() >= issued[1] else 0

    def _refuse(
        self, request: web.Request, body: bytes, params: dict[str, Any], code: int
    ) -> web.Response:
        self.record(request, body, params, False, str(code))
        return _error(code)



def _check_body(params: dict[str, Any]) -> int:
    if not params.get("touser"):
        return 40003
    if not params.get("template_id"):
        return 40037
    data = params.get("data")
    if not isinstance(data, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("value"), str) for v in data.values()
    ):
        return 47001
    return 0


def _ok(msgid: int) -> web.Response:
    return web.json_response({"errcode": 0, "errmsg": "ok", "msgid": msgid})


def _error(code: int) -> web.Response:
    return web.json_response({"errcode": code, "errmsg": ERRMSG.get(code, "system error")})
