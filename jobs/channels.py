"""Delivery channels built from configuration; a channel whose settings are absent is left out.

Environment names (all optional; secrets marked *):
  SMS_PROVIDER (aliyun | tencent, default aliyun), SMS_ACCESS_KEY_ID, SMS_ACCESS_KEY_SECRET*,
  SMS_ENDPOINT, SMS_REGION, SMS_SIGN_NAME, SMS_SDK_APP_ID (tencent), SMS_TEMPLATES
  ("low_balance_2=SMS_123,cutoff_done=SMS_456": kind=provider template code).
  VOICE_ACCESS_KEY_ID, VOICE_ACCESS_KEY_SECRET* (default: the SMS keys), VOICE_ENDPOINT,
  VOICE_TEMPLATES (kind=TTS_code,...), VOICE_SHOW_NUMBER.
  SMTP_HOST, SMTP_PORT (25), SMTP_FROM, SMTP_USERNAME, SMTP_PASSWORD*, SMTP_TLS (off | starttls | tls).
  WECHAT_APPID, WECHAT_SECRET*, WECHAT_API_BASE, WECHAT_TEMPLATES (JSON: kind -> {"id", "data":
  {wechat key: param}, "url"}) for official-account template messages;
  MINIPROGRAM_APPID, MINIPROGRAM_SECRET*, MINIPROGRAM_TEMPLATES (same JSON, "page" instead of
  "url"), MINIPROGRAM_STATE for subscribe messages.
  PUSH_WEBHOOK_URL, WEBHOOK_SECRET* for the signed app-push webhook.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from meterpay.settings import Settings
from notifications.aliyun_rpc import AliyunKeys
from notifications.channel import Channel
from notifications.email import SmtpConfig, SmtpEmail
from notifications.sms_aliyun import DEFAULT_ENDPOINT as ALIYUN_SMS, AliyunSms, AliyunSmsConfig
from notifications.sms_tencent import DEFAULT_ENDPOINT as TENCENT_SMS, TencentSms, TencentSmsConfig
from notifications.templates import parse_template_codes
from notifications.voice_aliyun import DEFAULT_ENDPOINT as ALIYUN_VOICE, AliyunVoice, AliyunVoiceConfig
from notifications.webhook import WebhookConfig, WebhookPush
from notifications.wechat_template import WechatApp, WechatSubscribe, WechatTemplate, WechatTemplateSpec


def build_channels(settings: Settings, http: aiohttp.ClientSession) -> dict[str, Channel]:
    """Every channel the configuration supports, keyed by logical channel name."""
    get = settings.get
    built: list[Channel | None] = [_sms(get, http), _voice(get, http), _email(get),
                                   _wechat(get, http), _subscribe(get, http), _push(get, http)]
    return {c.name: c for c in built if c is not None}


def _sms(get: Any, http: aiohttp.ClientSession) -> Channel | None:
    key_id, secret = get("SMS_ACCESS_KEY_ID"), get("SMS_ACCESS_KEY_SECRET")
    if not key_id or not secret:
        return None
    codes = parse_template_codes(get("SMS_TEMPLATES", "") or "")
    if (get("SMS_PROVIDER") or "aliyun") == "tencent":
        return TencentSms(http, TencentSmsConfig(
            key_id, secret, get("SMS_SDK_APP_ID", "") or "", get("SMS_SIGN_NAME", "") or "", codes,
            get("SMS_ENDPOINT") or TENCENT_SMS, get("SMS_REGION") or "ap-guangzhou"))
    keys = AliyunKeys(get("SMS_ENDPOINT") or ALIYUN_SMS, key_id, secret, get("SMS_REGION") or "cn-hangzhou")
    return AliyunSms(http, AliyunSmsConfig(keys, get("SMS_SIGN_NAME", "") or "", codes))


def _voice(get: Any, http: aiohttp.ClientSession) -> Channel | None:
    key_id = get("VOICE_ACCESS_KEY_ID") or get("SMS_ACCESS_KEY_ID")
    secret = get("VOICE_ACCESS_KEY_SECRET") or get("SMS_ACCESS_KEY_SECRET")
    codes = parse_template_codes(get("VOICE_TEMPLATES", "") or "")
    if not key_id or not secret or not codes:
        return None
    keys = AliyunKeys(get("VOICE_ENDPOINT") or ALIYUN_VOICE, key_id, secret)
    return AliyunVoice(http, AliyunVoiceConfig(keys, codes, get("VOICE_SHOW_NUMBER") or None))


def _email(get: Any) -> Channel | None:
    host = get("SMTP_HOST")
    if not host:
        return None
    tls = (get("SMTP_TLS") or "off").lower()
    return SmtpEmail(SmtpConfig(
        host, int(get("SMTP_PORT") or 25), get("SMTP_FROM") or "meterpay <noreply@localhost>",
        get("SMTP_USERNAME") or None, get("SMTP_PASSWORD") or None, use_tls=tls == "tls",
        start_tls=True if tls == "starttls" else (False if tls == "off" else None)))


def _specs(raw: str | None) -> dict[str, WechatTemplateSpec]:
    table: dict[str, dict[str, Any]] = json.loads(raw) if raw else {}
    return {kind: WechatTemplateSpec(spec["id"], spec.get("data", {}), spec.get("url"), spec.get("page"))
            for kind, spec in table.items()}


def _wechat(get: Any, http: aiohttp.ClientSession) -> Channel | None:
    appid, secret = get("WECHAT_APPID"), get("WECHAT_SECRET")
    if not appid or not secret or not get("WECHAT_TEMPLATES"):
        return None
    app = WechatApp(appid, secret, get("WECHAT_API_BASE") or "https://api.weixin.qq.com")
    return WechatTemplate(http, app, _specs(get("WECHAT_TEMPLATES")))


def _subscribe(get: Any, http: aiohttp.ClientSession) -> Channel | None:
    appid, secret = get("MINIPROGRAM_APPID"), get("MINIPROGRAM_SECRET")
    if not appid or not secret or not get("MINIPROGRAM_TEMPLATES"):
        return None
    app = WechatApp(appid, secret, get("WECHAT_API_BASE") or "https://api.weixin.qq.com")
    return WechatSubscribe(http, app, _specs(get("MINIPROGRAM_TEMPLATES")),
                           state=get("MINIPROGRAM_STATE") or "formal")


def _push(get: Any, http: aiohttp.ClientSession) -> Channel | None:
    url, secret = get("PUSH_WEBHOOK_URL"), get("WEBHOOK_SECRET")
    if not url or not secret:
        return None
    return WebhookPush(http, WebhookConfig(url, secret))

