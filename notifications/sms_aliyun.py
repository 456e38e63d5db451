"""SMS through Aliyun Dysmsapi SendSms (RPC style, version 2017-05-25)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import aiohttp

from notifications import aliyun_rpc
from notifications.aliyun_rpc import AliyunKeys, compact_json
from notifications.channel import Message, Rendered, SendResult

DEFAULT_ENDPOINT = "https://dysmsapi.aliyuncs.com/"
VERSION = "2017-05-25"


@dataclass(frozen=True)
class AliyunSmsConfig:
    """Keys, the approved signature (SignName) and one approved template code per kind."""

    keys: AliyunKeys
    sign_name: str
    template_codes: Mapping[str, str] = field(default_factory=dict)  # kind -> SMS_xxx


class AliyunSms:
    """Sends the kind's approved template with the rendered params as TemplateParam.

    Aliyun has no idempotency key for SendSms; the message key goes in OutId, which Aliyun
    echoes in delivery receipts, so a receipt can be matched to our delivery log.
    """

    name = "sms"
    provider = "aliyun"

    def __init__(
        self, session: aiohttp.ClientSession, config: AliyunSmsConfig,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._session = session
        self._config = config
        self._clock = clock
        self.kinds = frozenset(config.template_codes)

    async def send(self, msg: Message, rendered: Rendered) -> SendResult:
        """Send one SMS; provider and network faults come back as a failed SendResult."""
        code = self._config.template_codes.get(msg.kind)
        if code is None:
            return SendResult.failed(f"no Aliyun SMS template for {msg.kind}", retryable=False)
        business = {
            "PhoneNumbers": msg.to,
            "SignName": self._config.sign_name,
            "TemplateCode": code,
            "TemplateParam": compact_json(rendered.field_map),
            "OutId": msg.key,
        }
        return await aliyun_rpc.call(
            self._session, self._config.keys, "SendSms", VERSION, business, "BizId", self._clock
        )
