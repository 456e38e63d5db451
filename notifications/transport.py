"""One HTTP exchange with a provider, with network faults translated into a retryable error."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp


class TransportError(Exception):
    """The request never got an answer (timeout, refused or dropped connection)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class Reply:
    """A provider's HTTP status and decoded JSON body (an empty dict when there was none)."""

    status: int
    body: dict[str, Any]


async def exchange(
    session: aiohttp.ClientSession, method: str, url: str, *, timeout_s: float, **kwargs: Any
) -> Reply:
    """Send one request and decode the JSON answer; network faults become TransportError."""
    try:
        async with session.request(
            method, url, timeout=aiohttp.ClientTimeout(total=timeout_s), **kwargs
        ) as response:
            raw = await response.read()
            status = response.status
    except asyncio.TimeoutError as ex:
        raise TransportError(f"timeout after {timeout_s}s") from ex
    except aiohttp.ClientError as ex:
        raise TransportError(f"{type(ex).__name__}: {ex}") from ex
    return Reply(status, _decode(raw))


def _decode(raw: bytes) -> dict[str, Any]:
    """The JSON object in a reply; {} for an empty or non-JSON body (a proxy's error page)."""
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {"value": body}
