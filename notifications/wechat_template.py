"""WeChat official-account template messages and mini-program subscribe messages.

Both need an access token from /cgi-bin/token, cached here until shortly before it expires.
WeChat invalidates the previous token when a new one is fetched, so with several processes
the token should be shared (pass a common AccessToken, or swap in /cgi-bin/stable_token).
A mini-program subscribe message needs a one-time opt-in per message (errcode 43101 without).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from notifications.channel import Message, Rendered, SendResult
from notifications.transport import TransportError, exchange

TOKEN_ERRORS = frozenset({40001, 40014, 42001})  # invalid / malformed / expired access token
RETRYABLE_ERRORS = frozenset({-1, 45009, 45011, 45047}) | TOKEN_ERRORS  # busy, quotas
# Subscribe-message value limits by field type (characters); longer values are refused (47003).
VALUE_LIMITS = {"thing": 20, "character_string": 32, "phrase": 5, "name": 10, "letter": 32}
LANGS = {"zh-CN": "zh_CN", "en": "en_US"}


class WechatError(Exception):
    """A WeChat API call failed; `retryable` says whether a later attempt may succeed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class WechatApp:
    """An official account or mini-program: appid, secret and the API base URL."""

    appid: str
    secret: str = field(repr=False)
    base_url: str = "https://api.weixin.qq.com"
    timeout_s: float = 10.0
    refresh_margin_s: float = 300.0  # refresh this long before WeChat's expiry


@dataclass(frozen=True)
class WechatTemplateSpec:
    """One kind's template: its id and WeChat data key -> our template param name."""

    template_id: str
    data: Mapping[str, str]
    url: str | None = None  # template message: page opened on tap
    page: str | None = None  # subscribe message / mini-program page path


class AccessToken:
    """The app's access token, fetched once and reused until just before it expires."""

    def __init__(
        self, session: aiohttp.ClientSession, app: WechatApp,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session, self._app, self._clock = session, app, clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    async def get(self) -> str:
        """A valid token, fetching a new one when none is cached or it is about to expire."""
        async with self._lock:
            if self._token is None or self._clock() >= self._expires_at:
                self._token, lifetime = await self._fetch()
                margin = min(self._app.refresh_margin_s, lifetime / 2)
                self._expires_at = self._clock() + lifetime - margin
            return self._token

    def invalidate(self, token: str) -> None:
        """Forget `token` (WeChat called it invalid or expired) so the next get() refetches."""
        if self._token == token:
            self._token = None

    async def _fetch(self) -> tuple[str, float]:
        app = self._app
        params = {"grant_type": "client_credential", "appid": app.appid, "secret": app.secret}
        try:
            reply = await exchange(
                self._session, "GET", f"{self._app.base_url}/cgi-bin/token",
                timeout_s=self._app.timeout_s, params=params,
            )
        except TransportError as ex:
            raise WechatError(f"token: {ex}", retryable=True) from ex
        token = reply.body.get("access_token")
        if reply.status >= 300 or not token:
            code = reply.body.get("errcode")
            raise WechatError(
                f"token: HTTP {reply.status} errcode {code}: {reply.body.get('errmsg', '')}",
                retryable=reply.status >= 500 or code in RETRYABLE_ERRORS,
            )
        return str(token), float(reply.body.get("expires_in", 7200))


def _limited(key: str, value: str) -> str:
    kind = key.rstrip("0123456789")
    limit = VALUE_LIMITS.get(kind)
    return value if limit is None or len(value) <= limit else value[: limit - 1] + "…"


def client_msg_id(key: str) -> str:
    """WeChat's anti-reentry id for template sends: the message key, hashed when too long."""
    return key if len(key) <= 64 else hashlib.sha256(key.encode()).hexdigest()


class _WechatSender:
    """What both WeChat channels share: the token, the spec table and the POST with one refresh."""

    path = ""

    def __init__(
        self, session: aiohttp.ClientSession, app: WechatApp,
        templates: Mapping[str, WechatTemplateSpec], token: AccessToken | None = None,
    ) -> None:
        self._session, self._app, self._templates = session, app, templates
        self.token = token or AccessToken(session, app)
        self.kinds = frozenset(templates)

    def body(self, msg: Message, rendered: Rendered, spec: WechatTemplateSpec) -> dict[str, Any]:
        """The JSON body of this API for one message."""
        raise NotImplementedError

    async def send(self, msg: Message, rendered: Rendered) -> SendResult:
        """Send once; an invalid or expired token is refreshed and the send tried once more."""
        spec = self._templates.get(msg.kind)
        if spec is None:
            return SendResult.failed(f"no WeChat template for {msg.kind}", retryable=False)
        try:
            body = self.body(msg, rendered, spec)
            token = await self.token.get()
            result, code = await self._post(token, body)
            if code in TOKEN_ERRORS:
                self.token.invalidate(token)
                result, _ = await self._post(await self.token.get(), body)
        except KeyError as ex:
            detail = f"WeChat template for {msg.kind} needs param {ex}"
            return SendResult.failed(detail, retryable=False)
        except WechatError as ex:
            return SendResult.failed(str(ex), retryable=ex.retryable)
        return result

    async def _post(self, token: str, body: dict[str, Any]) -> tuple[SendResult, int | None]:
        url = f"{self._app.base_url}{self.path}"
        try:
            reply = await exchange(
                self._session, "POST", url, timeout_s=self._app.timeout_s,
                params={"access_token": token}, json=body,
            )
        except TransportError as ex:
            return SendResult.failed(f"{self.path}: {ex}", retryable=ex.retryable), None
        code = reply.body.get("errcode")
        if reply.status < 300 and code == 0:
            msgid = reply.body.get("msgid")
            return SendResult.sent(None if msgid is None else str(msgid)), 0
        detail = f"{self.path}: HTTP {reply.status} errcode {code}: {reply.body.get('errmsg', '')}"
        retryable = reply.status >= 500 or code in RETRYABLE_ERRORS
        return SendResult.failed(detail, retryable=retryable), code


class WechatTemplate(_WechatSender):
    """Official-account template message to a follower's openid; may be sent repeatedly."""

    name = "wechat_template"
    path = "/cgi-bin/message/template/send"

    def body(self, msg: Message, rendered: Rendered, spec: WechatTemplateSpec) -> dict[str, Any]:
        """The documented JSON body; client_msg_id makes WeChat drop a resend of the same key."""
        values = rendered.field_map
        body: dict[str, Any] = {
            "touser": msg.to,
            "template_id": spec.template_id,
            "client_msg_id": client_msg_id(msg.key),
            "data": {k: {"value": values[p]} for k, p in spec.data.items()},
        }
        if spec.url:
            body["url"] = spec.url
        return body


class WechatSubscribe(_WechatSender):
    """Mini-program subscribe message: each send spends one opt-in by the user (43101 without)."""

    name = "wechat_subscribe"
    path = "/cgi-bin/message/subscribe/send"

    def __init__(self, *args: Any, state: str = "formal", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._state = state  # 'developer', 'trial' or 'formal'

    def body(self, msg: Message, rendered: Rendered, spec: WechatTemplateSpec) -> dict[str, Any]:
        """The documented JSON body, with values cut to WeChat's per-type length limits."""
        values = rendered.field_map
        body: dict[str, Any] = {
            "touser": msg.to,
            "template_id": spec.template_id,
            "miniprogram_state": self._state,
            "lang": LANGS.get(rendered.locale, "zh_CN"),
            "data": {k: {"value": _limited(k, values[p])} for k, p in spec.data.items()},
        }
        if spec.page:
            body["page"] = spec.page
        return body
