"""Excel (.xlsx) exports of the reports: the monthly report, a meter's series, income.

Energy is written as kWh / m³ numbers (Wh / 1000 as an exact Decimal, shown with 3 decimals) so
managers can sum it; money as exact yuan text ("12.34"), never a float, as the other exports do.
"""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any, Iterable

from openpyxl import Workbook
from openpyxl.styles import Font

from billing.money import Money
from services.finance_reports import Income
from services.reports import UTILITIES, MonthlyReport, Point, Usage

MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
UNIT = {"electricity": "kWh", "water": "m³"}
KWH = "0.000"


def units(base: int) -> Decimal:
    return Decimal(int(base)) / 1000


def yuan(fen: int) -> str:
    return Money(int(fen)).to_yuan_str()


def _book(sheets: Iterable[tuple[str, list[str], list[list[Any]]]]) -> bytes:
    wb = Workbook()
    wb.remove(wb.active)
    for title, header, rows in sheets:
        ws = wb.create_sheet(title[:31])
        ws.append(header)
        for cell in ws[1]:
            cell.font = Font(bold=True)
        for row in rows:
            ws.append(row)
            for cell in ws[ws.max_row]:
                if isinstance(cell.value, Decimal):
                    cell.number_format = KWH
        ws.freeze_panes = "A2"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _usage_cells(u: Usage) -> list[Any]:
    return [units(u.quantity), units(u.sharp), units(u.peak), units(u.flat), units(u.valley), yuan(u.cost_fen)]


def monthly_report_xlsx(report: MonthlyReport) -> bytes:
    """One sheet per utility: a row per room, then the total row."""
    sheets = []
    for utility in UTILITIES:
        unit = UNIT[utility]
        header = ["楼栋 Building", "楼层 Floor", "房间 Room", "租户 Tenant", f"总量 Total ({unit})",
                  f"尖 Sharp ({unit})", f"峰 Peak ({unit})", f"平 Flat ({unit})", f"谷 Valley ({unit})",
                  "费用 Cost (yuan)", f"上月 Previous month ({unit})", "环比 MoM %", f"去年同月 Last year ({unit})",
                  "同比 YoY %"]
        rows = [[r.building, r.floor, r.number, r.tenant, *_usage_cells(r.usage[utility]), units(r.prev[utility]),
                 r.mom(utility) or "", units(r.last_year[utility]), r.yoy(utility) or ""]
                for r in report.rows if r.usage[utility].quantity or r.prev[utility] or r.last_year[utility]]
        t = report.total
        rows.append(["合计 Total", "", "", "", *_usage_cells(t.usage[utility]), units(t.prev[utility]),
                     t.mom(utility) or "", units(t.last_year[utility]), t.yoy(utility) or ""])
        sheets.append((f"{utility} {report.label}", header, rows))
    return _book(sheets)


def series_xlsx(title: str, utility: str, points: list[Point]) -> bytes:
    unit = UNIT.get(utility, "kWh")
    header = ["期间 Period", f"用量 Quantity ({unit})", "尖 Sharp", "峰 Peak", "平 Flat", "谷 Valley",
              "费用 Cost (yuan)", "读数 Readings"]
    rows = [[p.label, *_usage_cells(p.usage), p.usage.readings] for p in points]
    return _book([(title, header, rows)])


def income_xlsx(income: Income) -> bytes:
    """Two sheets: received by channel, earned by utility / fee; a period per row, totals last."""
    sheets = []
    for title, table in (("received by channel", income.by_channel), ("income by utility", income.by_utility)):
        keys = list(table)
        rows = [[p, *[yuan(table[k].get(p, 0)) for k in keys], yuan(sum(table[k].get(p, 0) for k in keys))]
                for p in income.periods]
        totals = Income.totals(table)
        rows.append(["合计 Total", *[yuan(totals[k]) for k in keys], yuan(sum(totals.values()))])
        sheets.append((title, ["期间 Period", *keys, "合计 Total"], rows))
    return _book(sheets)
