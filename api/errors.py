"""Every failure under /api/ and /pay/status answers JSON: {"error": message}, 4xx for bad input."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web

from services.errors import ServiceError

log = logging.getLogger(__name__)
JSON_PREFIXES = ("/api/", "/pay/status")


class ApiError(web.HTTPException):
    """A 4xx (or 5xx) with a JSON body: raise ApiError(400, "amount must be ...")."""

    def __init__(self, status: int, message: str) -> None:
        self.status_code = status
        super().__init__(text=json.dumps({"error": message}, ensure_ascii=False),
                         content_type="application/json")


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Turn HTTP errors, service refusals and crashes on JSON routes into JSON answers."""
    if not request.path.startswith(JSON_PREFIXES):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError:
        raise
    except ServiceError as ex:
        raise ApiError(ex.status, str(ex)) from ex
    except web.HTTPException as ex:
        if ex.status < 400:
            raise
        message = ex.text if ex.text and not ex.text.startswith(f"{ex.status}:") else ex.reason
        raise ApiError(ex.status, message or ex.reason) from ex
    except Exception as ex:
        log.exception("tenant API failed on %s %s", request.method, request.path)
        raise ApiError(500, "internal error") from ex


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or a 400 saying what is wrong with it."""
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError) as ex:
        raise ApiError(400, "the body must be a JSON object") from ex
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def text_field(body: dict[str, Any], name: str, max_len: int = 64) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"`{name}` is required (a non-empty string)")
    if len(value) > max_len:
        raise ApiError(400, f"`{name}` is longer than {max_len} characters")
    return value.strip()


def int_param(raw: object, name: str, lo: int, hi: int) -> int:
    """An integer from a query/path/body value, within [lo, hi]."""
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise ApiError(400, f"`{name}` must be an integer")
    try:
        value = int(raw) if isinstance(raw, int) or raw.strip().lstrip("-").isdigit() else None
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        raise ApiError(400, f"`{name}` must be an integer from {lo} to {hi}")
    return value
