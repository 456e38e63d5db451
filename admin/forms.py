"""Reading form fields into typed values; a bad field is a ServiceError (400) with a plain message."""

from __future__ import annotations

from typing import Any, Mapping

from billing.money import Money, MoneyError
from services.errors import ServiceError


def text(form: Mapping[str, Any], name: str, required: bool = True, max_len: int = 300) -> str:
    value = str(form.get(name) or "").strip()
    if required and not value:
        raise ServiceError(f"{name} is required")
    return value[:max_len]


def integer(form: Mapping[str, Any], name: str) -> int:
    try:
        return int(str(form.get(name, "")).strip())
    except ValueError:
        raise ServiceError(f"{name} must be a whole number") from None


def opt_int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def money(form: Mapping[str, Any], name: str) -> Money:
    """A positive amount typed in yuan ("12.50"); floats never enter."""
    try:
        amount = Money.yuan(text(form, name, max_len=20))
    except MoneyError as ex:
        raise ServiceError(f"{name}: {ex}") from ex
    if not amount.is_positive:
        raise ServiceError(f"{name} must be more than zero")
    return amount


def key(form: Mapping[str, Any], name: str = "idem") -> str:
    """The idempotency key a form carries (made when it was rendered), so a double click acts once."""
    value = text(form, name, max_len=64)
    if not value.replace("-", "").isalnum():
        raise ServiceError("bad form key")
    return value
