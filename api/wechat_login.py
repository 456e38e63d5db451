"""WeChat's code2session (mini-program login) and OAuth code exchange, over aiohttp."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import aiohttp


class LoginRefused(Exception):
    """WeChat said the code is invalid, used or expired."""


class WeChatDown(Exception):
    """WeChat could not be reached or answered nonsense."""


@dataclass(frozen=True)
class WeChatApp:
    """App credentials and the API base (settings WECHAT_API_BASE, so tests reach a local fake)."""

    appid: str
    secret: str = field(repr=False)
    api_base: str = "https://api.weixin.qq.com"
    timeout_s: float = 5.0


async def _get(http: aiohttp.ClientSession, app: WeChatApp, path: str, params: dict[str, str]) -> dict:
    try:
        async with http.get(app.api_base.rstrip("/") + path, params=params,
                            timeout=aiohttp.ClientTimeout(total=app.timeout_s)) as resp:
            text = await resp.text()  # WeChat answers JSON labelled text/plain
            if resp.status >= 500:
                raise WeChatDown(f"WeChat answered HTTP {resp.status}")
    except (aiohttp.ClientError, asyncio.TimeoutError) as ex:
        raise WeChatDown(f"WeChat unreachable: {type(ex).__name__}") from ex
    try:
        body = json.loads(text)
    except ValueError as ex:
        raise WeChatDown("WeChat answered something that is not JSON") from ex
    if not isinstance(body, dict):
        raise WeChatDown("WeChat answered an unexpected JSON value")
    if body.get("errcode"):
        if body["errcode"] in (-1, 45011):  # system busy, rate limited
            raise WeChatDown(f"WeChat busy: {body.get('errmsg', '')}")
        raise LoginRefused(f"{body['errcode']}: {body.get('errmsg', '')}")
    if not body.get("openid"):
        raise WeChatDown("WeChat answered without an openid")
    return body


async def code2session(http: aiohttp.ClientSession, app: WeChatApp, code: str) -> str:
    """The openid behind a mini-program `wx.login` code."""
    body = await _get(http, app, "/sns/jscode2session", {
        "appid": app.appid, "secret": app.secret, "js_code": code, "grant_type": "authorization_code"})
    return str(body["openid"])


async def oauth_openid(http: aiohttp.ClientSession, app: WeChatApp, code: str) -> str:
    """The openid behind an official-account web OAuth (snsapi_base) code."""
    body = await _get(http, app, "/sns/oauth2/access_token", {
        "appid": app.appid, "secret": app.secret, "code": code, "grant_type": "authorization_code"})
    return str(body["openid"])
