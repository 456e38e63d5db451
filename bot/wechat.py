"""The `/wechat` official-account callback: verify, answer once, and stay inside WeChat's 5 s.

A view checks the signature first, reads a bounded body, claims the delivery in the SeenStore
and answers within `reply_budget_s`. When the port is slower, WeChat gets "success" at once and
the real answer follows as a customer-service message through the injected `send_custom`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from bot.conversation import answer
from bot.aes import MessageCipher
from bot.envelope import SUCCESS, Delivery, Forged, Malformed, check_query, open_delivery, seal
from bot.intents import Intent, Kind, from_event, recognise
from bot.port import TenantPort
from bot.replies import text as reply_text
from bot.seen import SeenStore

log = logging.getLogger(__name__)

SendCustom = Callable[[str, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class WeChatSettings:
    """Official-account callback settings; secrets stay out of repr."""

    token: str = field(repr=False)
    appid: str
    aes_key: str | None = field(default=None, repr=False)
    reply_budget_s: float = 4.0  # WeChat waits 5 s; keep a second for the network
    max_body_bytes: int = 64 * 1024
    max_skew_s: float = 300.0  # replay window for the signed timestamp
    shutdown_grace_s: float = 5.0


def intent_of(delivery: Delivery) -> Intent:
    """Text (or recognised speech) by its words, events by their type and key."""
    if delivery.event is not None:
        return from_event(delivery.event, delivery.event_key)
    if delivery.content is not None:
        return recognise(delivery.content)
    return Intent(Kind.UNKNOWN)


class WeChatEndpoint:
    """The GET (URL verification) and POST (messages) views, with their follow-up tasks."""

    def __init__(
        self,
        port: TenantPort,
        settings: WeChatSettings,
        send_custom: SendCustom,
        seen: SeenStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.port = port
        self.settings = settings
        self.send_custom = send_custom
        self.seen = seen
        self.clock = clock
        self.crypto = (  # built once: the key is decoded and the AES cipher set up here, not per message
            MessageCipher(settings.token, settings.aes_key, settings.appid)
            if settings.aes_key
            else None
        )
        self._follow_ups: set[asyncio.Task[None]] = set()

    # -- views ----------------------------------------------------------------------------
    async def verify(self, request: web.Request) -> web.Response:
        """URL verification: echo `echostr` when the signature is WeChat's."""
        self._check_signature(request)
        echostr = request.query.get("echostr")
        if echostr is None:
            raise web.HTTPBadRequest(text="missing echostr")
        return web.Response(text=echostr)

    async def receive(self, request: web.Request) -> web.Response:
        """One message or event: answered once, within the reply budget."""
        deadline = asyncio.get_running_loop().time() + self.settings.reply_budget_s
        self._check_signature(request)
        body = await self._read_body(request)
        try:
            delivery = open_delivery(body, request.query, self.crypto)
        except Forged as ex:
            raise web.HTTPForbidden(text=str(ex)) from ex
        except Malformed as ex:
            raise web.HTTPBadRequest(text=str(ex)) from ex
        if await self.seen.claim(delivery.dedup_key):
            reply = await self._answer_once(delivery, deadline)
        else:
            reply = await self.seen.reply(delivery.dedup_key, self._left(deadline)) or SUCCESS
        payload, content_type = seal(reply, delivery, self.crypto, self.clock())
        return web.Response(text=payload, content_type=content_type)

    # -- steps ----------------------------------------------------------------------------
    def _check_signature(self, request: web.Request) -> None:
        try:
            check_query(self.settings.token, request.query, self.clock(), self.settings.max_skew_s)
        except Forged as ex:
            raise web.HTTPForbidden(text=str(ex)) from ex

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise web.HTTPRequestEntityTooLarge(limit, request.content_length)
        chunks, size = [], 0
        async for chunk in request.content.iter_chunked(16 * 1024):
            size += len(chunk)
            if size > limit:
                raise web.HTTPRequestEntityTooLarge(limit, size)
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _left(deadline: float) -> float:
        return max(deadline - asyncio.get_running_loop().time(), 0.0)

    async def _answer_once(self, delivery: Delivery, deadline: float) -> str:
        """The reply for a first delivery; settled in the SeenStore whatever happens."""
        reply = SUCCESS
        try:
            reply = await self._answer_in_time(delivery, deadline)
        finally:
            await self.seen.settle(delivery.dedup_key, reply)
        return reply

    async def _answer_in_time(self, delivery: Delivery, deadline: float) -> str:
        intent = intent_of(delivery)
        task = asyncio.create_task(answer(self.port, delivery.openid, intent))
        try:
            done, _ = await asyncio.wait({task}, timeout=self._left(deadline))
        finally:
            if not task.done():
                self._follow_up(task, delivery.openid)
        if task not in done:
            return SUCCESS
        try:
            return task.result() or SUCCESS
        except Exception:
            log.exception("bot failed to answer %s", intent.kind)
            return reply_text("busy", intent.lang)

    def _follow_up(self, task: asyncio.Task[str | None], openid: str) -> None:
        follow_up = asyncio.create_task(self._send_later(task, openid))
        self._follow_ups.add(follow_up)
        follow_up.add_done_callback(self._follow_ups.discard)

    async def _send_later(self, task: asyncio.Task[str | None], openid: str) -> None:
        """Deliver a late answer as a customer-service message."""
        try:
            text = await task
            if text:
                await self.send_custom(openid, text)
        except asyncio.CancelledError:
            task.cancel()
            raise
        except Exception:
            log.exception("late bot answer could not be sent")

    async def close(self) -> None:
        """Let late answers finish for a grace period, then cancel what is left."""
        if not self._follow_ups:
            return
        _, pending = await asyncio.wait(set(self._follow_ups),
                                        timeout=self.settings.shutdown_grace_s)
        for task in pending:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pending, return_exceptions=True)


WECHAT_ENDPOINT: web.AppKey[WeChatEndpoint] = web.AppKey("wechat_endpoint", WeChatEndpoint)


def setup_wechat_routes(app: web.Application, endpoint: WeChatEndpoint,
                        path: str = "/wechat") -> None:
    """Mount the callback views on `app` and close the endpoint with it."""
    app[WECHAT_ENDPOINT] = endpoint
    app.router.add_get(path, endpoint.verify)
    app.router.add_post(path, endpoint.receive)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        yield
        await app[WECHAT_ENDPOINT].close()

    app.cleanup_ctx.append(lifecycle)


def make_wechat_app(
    port: TenantPort,
    token: str,
    appid: str,
    aes_key: str | None,
    send_custom: SendCustom,
    seen: SeenStore,
    *,
    reply_budget_s: float = 4.0,
    max_body_bytes: int = 64 * 1024,
    max_skew_s: float = 300.0,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """A standalone application serving `/wechat` (tests, the benchmark, or a sub-service)."""
    settings = WeChatSettings(token=token, appid=appid, aes_key=aes_key,
                              reply_budget_s=reply_budget_s, max_body_bytes=max_body_bytes,
                              max_skew_s=max_skew_s)
    app = web.Application()
    setup_wechat_routes(app, WeChatEndpoint(port, settings, send_custom, seen, clock))
    return app
