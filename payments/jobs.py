"""Payment job bodies in the worker's ctx shape (jobs.tasks style): refund extras, query, reconcile.

Wire-up for jobs/ (owned by the worker): add `refund_extra_payment` to jobs.tasks.JOBS, the cron
`cron(payments_query_pending, second=15)` (every minute) to jobs.worker.cron_jobs(), and
`register_daily_rollup(payments_reconcile)`; call `open_payment_context(ctx)` after open_context
and `close_payment_context(ctx)` before close_context.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from payments.registry import build_providers
from services.payment_checks import query_pending, reconcile_day, retry_refunds
from services.payment_refunds import refund_extra, refund_extra_payments
from store.types import utcnow

Ctx = dict[str, Any]


async def open_payment_context(ctx: Ctx) -> None:
    """ctx["payment_providers"] from ctx["settings"] (kept if already there, e.g. in tests)."""
    if "payment_providers" not in ctx:
        http = aiohttp.ClientSession()
        ctx["_payments_http"] = http
        ctx["payment_providers"] = build_providers(ctx["settings"], http)


async def close_payment_context(ctx: Ctx) -> None:
    http = ctx.pop("_payments_http", None)
    if http is not None:
        await http.close()


def _now(ctx: Ctx) -> datetime:
    clock = ctx.get("clock")
    return clock() if clock is not None else utcnow()


async def refund_extra_payment(ctx: Ctx, key: str) -> str:
    """Topic payment_refund (job id `payment-refund:<payment id>`): refund an order's extra payment."""
    return await refund_extra(ctx["sessions"], ctx["payment_providers"], int(key.rsplit(":", 1)[1]))


async def payments_query_pending(ctx: Ctx) -> int:
    """Cron, every minute: query unpaid orders on schedule, resend pending refunds, sweep extras."""
    providers, now = ctx["payment_providers"], _now(ctx)
    report = await query_pending(ctx["sessions"], providers, now)
    await retry_refunds(ctx["sessions"], providers, now)
    await refund_extra_payments(ctx["sessions"], providers)
    return report.credited


async def payments_reconcile(ctx: Ctx, now: datetime) -> None:
    """Daily roll-up hook: reconcile yesterday (site-local) with every provider."""
    tz = ctx["settings"].site_timezone if "settings" in ctx else "Asia/Shanghai"
    yesterday = (now.astimezone(ZoneInfo(tz)) - timedelta(days=1)).date()
    await reconcile_day(ctx["sessions"], ctx["payment_providers"], yesterday, tz)
