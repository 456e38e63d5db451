"""A local Tencent Cloud SMS endpoint (API 3.0 SendSms) that checks TC3-HMAC-SHA256.

The canonical request is rebuilt here from the headers and body as received, independently
of the client's signer, and the signature compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from notifications.sandbox.server import Fault, Sandbox

AUTH_RE = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[^/]+)"
    r"/tc3_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<sig>[0-9a-f]{64})$"
)
REQUIRED = ("PhoneNumberSet", "SmsSdkAppId", "TemplateId")
# Tencent's messages for the checks made here.
ERRORS: dict[str, str] = {
    "AuthFailure.InvalidAuthorization": "Authorization header is malformed or incomplete.",
    "AuthFailure.SecretIdNotFound": "The SecretId is not found.",
    "AuthFailure.SignatureExpire": "Signature expired.",
    "AuthFailure.SignatureFailure": "The provided credentials could not be validated.",
    "MissingParameter": "A required parameter is missing.",
    "InvalidAction": "The requested action does not exist.",
    "NoSuchVersion": "The requested version does not exist.",
    "InvalidParameter": "The body is not JSON.",
    "InvalidParameterValue.SdkAppIdNotExist": "SdkAppId does not exist.",
    "InvalidParameterValue.TemplateParameterFormatError": "Template params must be strings.",
}


class TencentReject(Exception):
    """A Tencent API 3.0 error: Response.Error.Code and Message (HTTP status stays 200)."""

    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(code)
        self.code, self.message = code, message or ERRORS.get(code, "injected fault")


def _h(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def expected_signature(secret_key: str, request_headers: Mapping[str, str], signed: list[str],
                       body: bytes, timestamp: int, date: str, service: str) -> str:
    """TC3 as documented, from the received request."""
    lower = {k.lower(): v for k, v in request_headers.items()}
    canonical_headers = "".join(
        f"{name}:{lower.get(name, '').strip().lower()}\n" for name in signed
    )
    canonical = "\n".join(("POST", "/", "", canonical_headers, ";".join(signed),
                           hashlib.sha256(body).hexdigest()))
    to_sign = "\n".join(("TC3-HMAC-SHA256", str(timestamp), f"{date}/{service}/tc3_request",
                         hashlib.sha256(canonical.encode("utf-8")).hexdigest()))
    key = _h(_h(_h(("TC3" + secret_key).encode("utf-8"), date), service), "tc3_request")
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass
class TencentSandbox(Sandbox):
    """Serves POST '/' as sms.tencentcloudapi.com does for SendSms."""

    keys: Mapping[str, str] = field(default_factory=dict)  # SecretId -> SecretKey
    sdk_app_ids: frozenset[str] = frozenset()  # empty: any SmsSdkAppId
    clock: Callable[[], float] = time.time
    max_skew_s: int = 300

    def routes(self) -> list[web.RouteDef]:
        """API 3.0 answers on the endpoint root."""
        return [web.post("/", self._handle)]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        request_id = str(uuid.uuid4())
        params: dict[str, Any] = {}
        try:
            self._authenticate(request, body)
            params = self._parse(request, body)
        except TencentReject as ex:
            return self._reject(request, body, params, ex, request_id)
        fault = self.take_fault()
        if fault is not None:
            await self.hold(fault)
            if fault.status is not None:
                self.record(request, body, params, False, f"HTTP {fault.status}")
                return web.Response(status=fault.status, text="injected")
            if fault.code is not None and not fault.per_item:
                reject = TencentReject(fault.code, fault.message)
                return self._reject(request, body, params, reject, request_id)
        statuses = [self._status(phone, params, fault) for phone in params["PhoneNumberSet"]]
        ok = all(s["Code"] == "Ok" for s in statuses)
        error = None if ok else statuses[0]["Code"]
        self.record(request, body, params, ok, error)
        return web.json_response({"Response": {"SendStatusSet": statuses, "RequestId": request_id}})

    def _authenticate(self, request: web.Request, body: bytes) -> None:
        match = AUTH_RE.match(request.headers.get("Authorization", ""))
        if match is None:
            raise TencentReject("AuthFailure.InvalidAuthorization")
        signed = match["signed"].split(";")
        if "content-type" not in signed or "host" not in signed or signed != sorted(signed):
            raise TencentReject("AuthFailure.InvalidAuthorization")
        secret = self.keys.get(match["id"])
        if secret is None:
            raise TencentReject("AuthFailure.SecretIdNotFound")
        try:
            timestamp = int(request.headers.get("X-TC-Timestamp", ""))
        except ValueError as ex:
            raise TencentReject("MissingParameter") from ex
        if abs(self.clock() - timestamp) > self.max_skew_s:
            raise TencentReject("AuthFailure.SignatureExpire")
        date = datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d")
        if match["date"] != date or match["service"] != "sms":
            raise TencentReject("AuthFailure.SignatureFailure")
        expected = expected_signature(secret, request.headers, signed, body, timestamp, date, "sms")
        if not hmac.compare_digest(expected, match["sig"]):
            raise TencentReject("AuthFailure.SignatureFailure")

    def _parse(self, request: web.Request, body: bytes) -> dict[str, Any]:
        if request.headers.get("X-TC-Action") != "SendSms":
            raise TencentReject("InvalidAction")
        if request.headers.get("X-TC-Version") != "2021-01-11":
            raise TencentReject("NoSuchVersion")
        try:
            params = json.loads(body)
        except ValueError as ex:
            raise TencentReject("InvalidParameter") from ex
        missing = [name for name in REQUIRED if not params.get(name)]
        if missing:
            raise TencentReject("MissingParameter")
        if self.sdk_app_ids and params["SmsSdkAppId"] not in self.sdk_app_ids:
            raise TencentReject("InvalidParameterValue.SdkAppIdNotExist")
        if not all(isinstance(v, str) for v in params.get("TemplateParamSet", [])):
            raise TencentReject("InvalidParameterValue.TemplateParameterFormatError")
        return params

    def _status(self, phone: str, params: dict[str, Any], fault: Fault | None) -> dict[str, Any]:
        code, message = ("Ok", "send success")
        if fault is not None and fault.per_item and fault.code is not None:
            code, message = fault.code, fault.message
        return {
            "SerialNo": f"{uuid.uuid4().int % 10**12}:{len(self.received) + 1}",
            "PhoneNumber": phone, "Fee": 1 if code == "Ok" else 0,
            "SessionContext": params.get("SessionContext", ""), "Code": code,
            "Message": message, "IsoCode": "CN",
        }

    def _reject(self, request: web.Request, body: bytes, params: dict[str, Any],
                ex: TencentReject, request_id: str) -> web.Response:
        self.record(request, body, params, False, ex.code)
        error = {"Error": {"Code": ex.code, "Message": ex.message}, "RequestId": request_id}
        return web.json_response({"Response": error})
