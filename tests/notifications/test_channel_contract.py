"""What every channel promises the dispatcher: a known logical name, known kinds, no raising."""

from __future__ import annotations

import pytest

from notifications.aliyun_rpc import AliyunKeys
from notifications.channel import Channel
from notifications.email import SmtpConfig, SmtpEmail
from notifications.policy import CHANNEL_RULES
from notifications.sms_aliyun import AliyunSms, AliyunSmsConfig
from notifications.sms_tencent import TencentSms, TencentSmsConfig
from notifications.templates import KINDS
from notifications.voice_aliyun import AliyunVoice, AliyunVoiceConfig
from notifications.webhook import WebhookConfig, WebhookPush
from notifications.wechat_template import WechatApp, WechatSubscribe, WechatTemplate, WechatTemplateSpec

ALL = {"low_balance_2": "T1"}
SPEC = {"low_balance_2": WechatTemplateSpec("t", {"thing1": "account"})}


def build_all(http, port: int) -> list[Channel]:
    url = f"http://127.0.0.1:{port}"
    keys = AliyunKeys(url + "/", "id", "secret", timeout_s=1.0)
    app = WechatApp("wx", "s", base_url=url, timeout_s=1.0)
    return [
        AliyunSms(http, AliyunSmsConfig(keys, "sign", ALL)),
        AliyunVoice(http, AliyunVoiceConfig(keys, ALL)),
        TencentSms(http, TencentSmsConfig("id", "key", "app", "sign", ALL, endpoint=url + "/", timeout_s=1.0)),
        WechatTemplate(http, app, SPEC),
        WechatSubscribe(http, app, SPEC),
        WebhookPush(http, WebhookConfig(url + "/push", "s", timeout_s=1.0)),
        SmtpEmail(SmtpConfig("127.0.0.1", port, "a@example.com", start_tls=False, timeout_s=1.0)),
    ]


async def test_every_channel_has_a_policy_name_and_only_known_kinds(http, unused_tcp_port):
    for channel in build_all(http, unused_tcp_port):
        assert channel.name in CHANNEL_RULES
        assert channel.kinds and channel.kinds <= KINDS


@pytest.mark.parametrize("index", range(7))
async def test_every_channel_reports_nothing_listening_as_a_retryable_failure(http, unused_tcp_port, index, message):
    channel = build_all(http, unused_tcp_port)[index]
    result = await channel.send(*message(to="tenant@example.com"))
    assert not result.ok and result.retryable and result.provider_id is None and result.error
