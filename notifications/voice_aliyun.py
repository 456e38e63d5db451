"""Voice call notices through Aliyun Dyvmsapi SingleCallByTts (RPC style, version 2017-05-25)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import aiohttp

from notifications import aliyun_rpc
from notifications.aliyun_rpc import AliyunKeys, compact_json
from notifications.channel import Message, Rendered, SendResult

DEFAULT_ENDPOINT = "https://dyvmsapi.aliyuncs.com/"
VERSION = "2017-05-25"


@dataclass(frozen=True)
class AliyunVoiceConfig:
    """Keys, one approved TTS template per kind, and how the call is played."""

    keys: AliyunKeys
    tts_codes: Mapping[str, str] = field(default_factory=dict)  # kind -> TTS_xxx
    called_show_number: str | None = None  # the number shown to the callee, if the account has one
    play_times: int = 2
    volume: int = 100
    speed: int = 0


class AliyunVoice:
    """Calls the tenant and reads the kind's TTS template; the message key goes in OutId."""

    name = "voice"
    provider = "aliyun"

    def __init__(
        self, session: aiohttp.ClientSession, config: AliyunVoiceConfig,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._session = session
        self._config = config
        self._clock = clock
        self.kinds = frozenset(config.tts_codes)

    async def send(self, msg: Message, rendered: Rendered) -> SendResult:
        """Place one call; the provider id is Aliyun's CallId."""
        code = self._config.tts_codes.get(msg.kind)
        if code is None:
            return SendResult.failed(f"no Aliyun TTS template for {msg.kind}", retryable=False)
        cfg = self._config
        business = {
            "CalledNumber": msg.to,
            "TtsCode": code,
            "TtsParam": compact_json(rendered.field_map),
            "PlayTimes": str(cfg.play_times),
            "Volume": str(cfg.volume),
            "Speed": str(cfg.speed),
            "OutId": msg.key,
        }
        if cfg.called_show_number:
            business["CalledShowNumber"] = cfg.called_show_number
        return await aliyun_rpc.call(
            self._session, cfg.keys, "SingleCallByTts", VERSION, business, "CallId", self._clock
        )
