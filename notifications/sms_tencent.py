"""SMS through Tencent Cloud SMS SendSms (API 3.0, version 2021-01-11, TC3-HMAC-SHA256)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from notifications import tc3
from notifications.channel import Message, Rendered, SendResult
from notifications.transport import TransportError, exchange

DEFAULT_ENDPOINT = "https://sms.tencentcloudapi.com/"
SERVICE = "sms"
ACTION = "SendSms"
VERSION = "2021-01-11"
CONTENT_TYPE = "application/json; charset=utf-8"

# Error codes (request-level or per number) worth another attempt later.
RETRYABLE_PREFIXES = (
    "InternalError",
    "RequestLimitExceeded",
    "LimitExceeded.PhoneNumberThirtySecondLimit",
    "LimitExceeded.PhoneNumberOneHourLimit",
    "FailedOperation.InsufficientBalanceInSmsPackage",
)


@dataclass(frozen=True)
class TencentSmsConfig:
    """Keys, the SMS application, the approved signature and one template id per kind."""

    secret_id: str
    secret_key: str = field(repr=False)
    sdk_app_id: str = ""
    sign_name: str = ""
    template_ids: Mapping[str, str] = field(default_factory=dict)  # kind -> template id
    endpoint: str = DEFAULT_ENDPOINT
    region: str = "ap-guangzhou"
    timeout_s: float = 10.0


def e164(phone: str) -> str:
    """Tencent wants +<country><number>; bare numbers are taken as mainland China."""
    return phone if phone.startswith("+") else f"+86{phone}"


def _retryable(code: str) -> bool:
    return code.startswith(RETRYABLE_PREFIXES)


class TencentSms:
    """Sends the kind's template with the rendered params in declared order.

    Tencent has no idempotency key for SendSms; the message key goes in SessionContext, which
    Tencent echoes in the reply and in delivery receipts.
    """

    name = "sms"
    provider = "tencent"

    def __init__(
        self, session: aiohttp.ClientSession, config: TencentSmsConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._config = config
        self._clock = clock
        self.kinds = frozenset(config.template_ids)

    def request(
        self, msg: Message, rendered: Rendered, template_id: str
    ) -> tuple[dict[str, str], bytes]:
        """The signed headers and JSON body for one SendSms call."""
        cfg = self._config
        body = json.dumps({
            "PhoneNumberSet": [e164(msg.to)],
            "SmsSdkAppId": cfg.sdk_app_id,
            "SignName": cfg.sign_name,
            "TemplateId": template_id,
            "TemplateParamSet": [value for _, value in rendered.fields],
            "SessionContext": msg.key,
        }, ensure_ascii=False, separators=(",", ":")).encode()
        host = URL(cfg.endpoint).raw_authority
        timestamp = int(self._clock())
        to_sign = {"Content-Type": CONTENT_TYPE, "Host": host, "X-TC-Action": ACTION}
        auth = tc3.authorization(
            cfg.secret_id, cfg.secret_key, SERVICE, timestamp, "POST", to_sign, body
        )
        headers = {
            **to_sign,
            "Authorization": auth,
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Version": VERSION,
            "X-TC-Region": cfg.region,
        }
        return headers, body

    async def send(self, msg: Message, rendered: Rendered) -> SendResult:
        """Send one SMS; the provider id is Tencent's SerialNo."""
        template_id = self._config.template_ids.get(msg.kind)
        if template_id is None:
            return SendResult.failed(f"no Tencent SMS template for {msg.kind}", retryable=False)
        headers, body = self.request(msg, rendered, template_id)
        try:
            reply = await exchange(
                self._session, "POST", self._config.endpoint,
                timeout_s=self._config.timeout_s, data=body, headers=headers,
            )
        except TransportError as ex:
            return SendResult.failed(f"SendSms: {ex}", retryable=ex.retryable)
        if reply.status >= 300:
            return SendResult.failed(f"SendSms: HTTP {reply.status}", retryable=reply.status >= 500)
        return _result(reply.body.get("Response") or {})


def _result(response: dict) -> SendResult:
    error = response.get("Error")
    if error:
        code = str(error.get("Code", ""))
        return _failed(code, error.get("Message", ""))
    statuses = response.get("SendStatusSet") or []
    if not statuses:
        return SendResult.failed("SendSms: reply without SendStatusSet", retryable=True)
    status = statuses[0]
    code = str(status.get("Code", ""))
    if code == "Ok":
        return SendResult.sent(status.get("SerialNo"))
    return _failed(code, status.get("Message", ""))


def _failed(code: str, message: str) -> SendResult:
    return SendResult.failed(f"SendSms: {code}: {message}", retryable=_retryable(code))
