"""Finance figures agree with the orders and the ledger; Excel exports open and hold the report's numbers."""

from __future__ import annotations

import io
from datetime import datetime, time, timedelta

from openpyxl import load_workbook
from sqlalchemy import select

from billing.money import Money
from services.accounts import OpenAccount, open_account
from services.finance_reports import cash_reconciliation, entries, income
from services.ingest import ReadingIn, ingest
from services.reports import meter_series, monthly_report
from services.rollups import roll_up_all
from services.uow import in_transaction
from services.wallets import recharge, refund
from services.xlsx import income_xlsx, monthly_report_xlsx, series_xlsx
from store.models import Order
from store.types import utcnow
from tests.factories import EPOCH, FLAT_1, add_meter, add_tariff, make_site
from tests.reports.support import TZ


async def _money_day(sessions):
    now = utcnow()

    async def go(s):
        kit = await make_site(s, "M1")
        t = await add_tariff(s, kit, "flat", FLAT_1)
        w = await add_tariff(s, kit, "water", {"kind": "flat", "price": "3.00"}, utility="water")
        e = await add_meter(s, kit, "201", t)
        wm = await add_meter(s, kit, "201w", w, utility="water")
        acc = await open_account(s, OpenAccount(kit.site.id, "Li Lei", "13900000003", (e.id, wm.id)), actor="t")
        acc.opened_at = EPOCH
        await recharge(s, acc.id, Money(100_00), "r1", provider="cash")
        await recharge(s, acc.id, Money(250_00), "r2", provider="alipay")
        await recharge(s, acc.id, Money(80_00), "r3", provider="wechatpay")
        await refund(s, acc.id, Money(30_00), "f1", provider="cash")
        # yesterday 10:00 local: in the past and never across a local midnight, whatever the clock says
        start = datetime.combine(now.astimezone(TZ).date() - timedelta(days=1), time(10), tzinfo=TZ)
        await ingest(s, [ReadingIn(e.id, start, 1_000), ReadingIn(wm.id, start, 500)])
        await ingest(s, [ReadingIn(e.id, start + timedelta(hours=1), 6_000),  # 5 kWh at 1.00
                         ReadingIn(wm.id, start + timedelta(hours=1), 2_500)])  # 2 m3 at 3.00
        return kit.site.id, e.id, (start + timedelta(hours=1)).astimezone(TZ).date()
    return await in_transaction(sessions, go)


async def test_income_is_split_by_channel_and_by_utility_and_matches_the_orders(sessions):
    site, _, _ = await _money_day(sessions)
    today = utcnow().astimezone(TZ).date()
    async with sessions() as s:
        inc = await income(s, site, today - timedelta(days=1), today + timedelta(days=1), "day")
        month = await income(s, site, today.replace(day=1), today + timedelta(days=1), "month")
        orders = list(await s.scalars(select(Order)))
        listed = await entries(s, site)
        usage_only = await entries(s, site, kind="usage")
    totals = inc.totals(inc.by_channel)
    assert totals == {"cash": 70_00, "alipay": 250_00, "wechatpay": 80_00}
    assert sum(totals.values()) == sum(o.amount_fen * (1 if o.kind == "recharge" else -1) for o in orders)
    assert inc.totals(inc.by_utility) == {"electricity": 5_00, "water": 6_00}
    assert inc.by_channel["alipay"] == {today.isoformat(): 250_00}
    assert month.periods == [f"{today:%Y-%m}"] and month.totals(month.by_channel) == totals
    assert {e.kind for e in listed} == {"recharge", "refund", "usage"}
    assert sum(e.amount_fen for e in usage_only) == 11_00


async def test_the_daily_cash_reconciliation_balances_orders_against_the_ledger(sessions):
    site, _, _ = await _money_day(sessions)
    today = utcnow().astimezone(TZ).date()
    async with sessions() as s:
        lines = {c.provider: c for c in await cash_reconciliation(s, site, today)}
        yesterday = await cash_reconciliation(s, site, today - timedelta(days=1))
    assert (lines["cash"].orders_in_fen, lines["cash"].orders_out_fen, lines["cash"].ledger_fen) == (100_00, 30_00, 70_00)
    assert lines["cash"].balanced and lines["cash"].provider_fen is None
    assert lines["alipay"].ledger_fen == lines["alipay"].orders_net_fen == 250_00
    assert lines["alipay"].provider_fen == 0 and not lines["alipay"].balanced  # no provider record of it
    assert yesterday == []


async def test_the_monthly_report_exports_to_excel_with_the_same_figures(sessions):
    site, meter, used_on = await _money_day(sessions)
    await roll_up_all(sessions)
    today = utcnow().astimezone(TZ).date()
    async with sessions() as s:
        report = await monthly_report(s, site, used_on)
        series = await meter_series(s, meter, "day", used_on - timedelta(days=2), used_on + timedelta(days=1))
        inc = await income(s, site, today, today + timedelta(days=1))
    wb = load_workbook(io.BytesIO(monthly_report_xlsx(report)))
    ws = wb[f"electricity {used_on:%Y-%m}"]
    header = [c.value for c in ws[1]]
    row = [c.value for c in ws[2]]
    total = [c.value for c in ws[ws.max_row]]
    assert header[4].startswith("总量") and row[2] == "201" and row[3] == "Li Lei"
    assert round(row[4] * 1000) == report.rows[0].usage["electricity"].quantity == 5_000
    assert row[9] == "5.00" and total[0] == "合计 Total" and total[9] == "5.00"
    water = wb[f"water {used_on:%Y-%m}"]
    assert round(water.cell(2, 5).value * 1000) == 2_000 and water.cell(2, 10).value == "6.00"
    days = load_workbook(io.BytesIO(series_xlsx("meter 201", "electricity", series))).active
    assert days.cell(2, 1).value == series[0].label and days.cell(2, 7).value == "5.00"
    money = load_workbook(io.BytesIO(income_xlsx(inc)))
    assert [c.value for c in money["received by channel"][1]] == ["期间 Period", "alipay", "cash", "wechatpay", "合计 Total"]
    assert money["received by channel"].cell(2, 5).value == "400.00"
