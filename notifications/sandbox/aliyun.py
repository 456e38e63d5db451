"""A local Aliyun RPC endpoint for Dysmsapi SendSms and Dyvmsapi SingleCallByTts.

The signature is recomputed here from the parameters as received, independently of the
client's signer: sorted pairs, RFC 3986 encoding, METHOD&%2F&..., HMAC-SHA1 with secret + "&".
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from aiohttp import web

from notifications.sandbox.server import Fault, Sandbox

# Business parameters each action requires, and the id field its success reply carries.
ACTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "SendSms": (("PhoneNumbers", "SignName", "TemplateCode"), "BizId"),
    "SingleCallByTts": (("CalledNumber", "TtsCode"), "CallId"),
}
COMMON = ("AccessKeyId", "Action", "SignatureMethod", "SignatureNonce", "SignatureVersion",
          "Timestamp", "Version", "Signature")
VERSION = "2017-05-25"
# Aliyun's answers for the checks made here: Code -> (HTTP status, Message).
ERRORS: dict[str, tuple[int, str]] = {
    "MissingParameter": (400, "A mandatory parameter is missing."),
    "InvalidParameter": (400, "Unsupported signature method or version."),
    "InvalidAccessKeyId.NotFound": (404, "Specified access key is not found."),
    "InvalidTimeStamp.Format": (400, "Specified time stamp is not valid."),
    "InvalidTimeStamp.Expired": (400, "Specified time stamp or date has expired."),
    "SignatureDoesNotMatch": (400, "Specified signature does not match our calculation."),
    "SignatureNonceUsed": (400, "Specified signature nonce was used already."),
    "InvalidAction.NotFound": (404, "Specified api is not found."),
    "InvalidVersion": (400, "Specified parameter Version is not valid."),
    "isv.INVALID_JSON_PARAM": (200, "A template parameter is not valid JSON."),
}


class AliyunReject(Exception):
    """An Aliyun error answer: HTTP status, Code and Message."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(code)
        status, known = ERRORS.get(code, (200, "injected fault"))
        self.status, self.code, self.message = status, code, message or known


def _encode(text: str) -> str:
    return quote(text, safe="-_.~")


def expected_signature(method: str, params: Mapping[str, str], secret: str) -> str:
    """Aliyun's documented RPC signature, computed from the received parameters."""
    pairs = sorted((k, v) for k, v in params.items() if k != "Signature")
    query = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in pairs)
    to_sign = "&".join((method, _encode("/"), _encode(query)))
    mac = hmac.new((secret + "&").encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


@dataclass
class AliyunSandbox(Sandbox):
    """Serves POST/GET '/' for both SMS and voice, with Aliyun's checks and replies."""

    keys: Mapping[str, str] = field(default_factory=dict)  # AccessKeyId -> AccessKeySecret
    clock: Callable[[], float] = time.time
    max_skew_s: int = 900  # Aliyun accepts a Timestamp within 15 minutes
    _nonces: set[str] = field(default_factory=set, init=False)

    def routes(self) -> list[web.RouteDef]:
        """Aliyun RPC APIs answer on the endpoint root."""
        return [web.route("*", "/", self._handle)]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        params: dict[str, str] = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        request_id = str(uuid.uuid4()).upper()
        try:
            self._authenticate(request.method, params)
        except AliyunReject as ex:
            return self._reject(request, body, params, ex, request_id)
        fault = self.take_fault()
        if fault is not None:
            reply = await self._faulty(request, body, params, fault, request_id)
            if reply is not None:
                return reply
        try:
            answer = self._perform(params)
        except AliyunReject as ex:
            return self._reject(request, body, params, ex, request_id)
        self.record(request, body, params, True)
        return web.json_response({"Code": "OK", "Message": "OK", "RequestId": request_id, **answer})

    def _authenticate(self, method: str, params: dict[str, str]) -> None:
        missing = [name for name in COMMON if not params.get(name)]
        if missing:
            raise AliyunReject("MissingParameter")
        if params["SignatureMethod"] != "HMAC-SHA1" or params["SignatureVersion"] != "1.0":
            raise AliyunReject("InvalidParameter")
        secret = self.keys.get(params["AccessKeyId"])
        if secret is None:
            raise AliyunReject("InvalidAccessKeyId.NotFound")
        try:
            stamp = datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ")
        except ValueError as ex:
            raise AliyunReject("InvalidTimeStamp.Format") from ex
        if abs(stamp.replace(tzinfo=timezone.utc).timestamp() - self.clock()) > self.max_skew_s:
            raise AliyunReject("InvalidTimeStamp.Expired")
        given = params["Signature"]
        if not hmac.compare_digest(given, expected_signature(method, params, secret)):
            raise AliyunReject("SignatureDoesNotMatch")
        if params["SignatureNonce"] in self._nonces:
            raise AliyunReject("SignatureNonceUsed")
        self._nonces.add(params["SignatureNonce"])

    def _perform(self, params: dict[str, str]) -> dict[str, Any]:
        action = ACTIONS.get(params["Action"])
        if action is None:
            raise AliyunReject("InvalidAction.NotFound")
        if params["Version"] != VERSION:
            raise AliyunReject("InvalidVersion")
        required, id_field = action
        missing = [name for name in required if not params.get(name)]
        if missing:
            raise AliyunReject("MissingParameter")
        for name in ("TemplateParam", "TtsParam"):
            if name in params:
                try:
                    json.loads(params[name])
                except ValueError as ex:
                    raise AliyunReject("isv.INVALID_JSON_PARAM") from ex
        return {id_field: f"{len(self.delivered) + 1:06d}^{uuid.uuid4().int % 10**10}"}

    async def _faulty(
        self, request: web.Request, body: bytes, params: dict[str, str], fault: Fault,
        request_id: str,
    ) -> web.StreamResponse | None:
        await self.hold(fault)
        if fault.status is not None:
            self.record(request, body, params, False, f"HTTP {fault.status}")
            return web.Response(status=fault.status, text="injected")
        if fault.code is not None:
            reject = AliyunReject(fault.code, fault.message)
            return self._reject(request, body, params, reject, request_id)
        return None

    def _reject(
        self, request: web.Request, body: bytes, params: dict[str, str], ex: AliyunReject,
        request_id: str,
    ) -> web.Response:
        self.record(request, body, params, False, ex.code)
        reply = {"Code": ex.code, "Message": ex.message, "RequestId": request_id}
        return web.json_response(reply, status=ex.status)
