"""Excel exports of bills and of the arrears list, for staff to notify tenants."""

from __future__ import annotations

import io
from datetime import date
from typing import Any

from openpyxl import Workbook
from sqlalchemy.ext.asyncio import AsyncSession

from services.bill_queries import arrears, list_bills

BILL_COLUMNS = (("number", "账单号 Bill"), ("account_code", "账户 Account"), ("tenant", "租户 Tenant"),
                ("phone", "电话 Phone"), ("period_start", "起 From"), ("period_end", "止 To (excl.)"),
                ("due_on", "到期 Due"), ("status", "状态 Status"), ("total", "应收 Total"),
                ("paid", "已收 Paid"), ("outstanding", "欠费 Outstanding"))
ARREARS_COLUMNS = (("account_code", "账户 Account"), ("tenant", "租户 Tenant"), ("phone", "电话 Phone"),
                   ("open_bills", "未结账单 Open bills"), ("outstanding", "欠费 Outstanding"),
                   ("overdue", "逾期 Overdue"), ("oldest_due_on", "最早到期 Oldest due"),
                   ("days_overdue", "逾期天数 Days overdue"))


def _sheet(title: str, columns: tuple[tuple[str, str], ...], rows: list[dict[str, Any]]) -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.title = title
    ws.append([label for _, label in columns])
    for r in rows:
        ws.append([r[key] for key, _ in columns])  # yuan as exact text ("12.34"), never a float
    ws.freeze_panes = "A2"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


async def bills_xlsx(session: AsyncSession, site_id: int, period_start: date | None = None,
                     status: str | None = None) -> bytes:
    """All matching bills of a site as one sheet."""
    rows = await list_bills(session, site_id, status=status, period_start=period_start, limit=1_000_000)
    return _sheet("bills", BILL_COLUMNS, rows)


async def arrears_xlsx(session: AsyncSession, site_id: int, today: date) -> bytes:
    """The arrears list as one sheet, with a total row."""
    summary = await arrears(session, site_id, today)
    total = dict(account_code="合计 Total", tenant="", phone="", open_bills=sum(r["open_bills"] for r in summary["rows"]),
                 outstanding=summary["outstanding"], overdue=summary["overdue"], oldest_due_on="", days_overdue="")
    return _sheet("arrears", ARREARS_COLUMNS, [*summary["rows"], total])
