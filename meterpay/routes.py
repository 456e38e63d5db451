"""Mounting each entrypoint's routes (admin, bot, payments, tenant API) on the application."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Each entrypoint adds its own routes; this is the one place that lists them."""
    return None
