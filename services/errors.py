"""Errors services raise; entrypoints turn them into HTTP 4xx with the message."""

from __future__ import annotations


class ServiceError(Exception):
    """Bad input or a refused operation; nothing was changed."""

    status = 400


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class InsufficientBalance(ServiceError):
    status = 409
