"""Jobs, cron and ctx that other packages contribute to the worker, registered in one place."""

from __future__ import annotations

from typing import Any

from arq import cron
from arq.cron import CronJob

from jobs.tasks import register_daily_rollup, register_job


def install() -> None:
    """Register contributed jobs and roll-up hooks (idempotent)."""
    from payments.jobs import payments_reconcile, refund_extra_payment
    from services.payments import REFUND_TOPIC

    register_job(REFUND_TOPIC, refund_extra_payment)
    register_daily_rollup(payments_reconcile)


def contributed_cron() -> list[CronJob]:
    """Contributed periodic work (UTC)."""
    from payments.jobs import payments_query_pending
    from services.monthend import month_end_cron

    return [cron(payments_query_pending, second=15),  # every minute
            cron(roll_up_usage, second=45),  # daily/monthly usage roll-ups, every minute
            cron(run_batches, second=set(range(0, 60, 5))),
            cron(month_end_cron, day=1, hour=18, minute=0, second=0)]  # 02:00 on the 1st in China


async def roll_up_usage(ctx: dict[str, Any]) -> int:
    """Fold new billed readings into the report roll-ups (incremental, safe to re-run)."""
    from services.rollups import roll_up_all

    return await roll_up_all(ctx["sessions"])


async def run_batches(ctx: dict[str, Any]) -> list[int]:
    """Start scheduled batch tasks and follow those in flight."""
    from services.batches import run_due_batches

    return await run_due_batches(ctx["sessions"])


async def open_contributed(ctx: dict[str, Any]) -> None:
    """Contributed ctx entries (payment providers)."""
    from payments.jobs import open_payment_context

    await open_payment_context(ctx)


async def close_contributed(ctx: dict[str, Any]) -> None:
    from payments.jobs import close_payment_context

    await close_payment_context(ctx)


def contributed_functions() -> list[Any]:
    """Job functions queued directly by name (not through an outbox topic)."""
    from services.monthend import month_end_job

    return [month_end_job]
