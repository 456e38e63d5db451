"""A month end to end: a month of readings, fee items, a common-area meter, then bills and ledgers.

Site: tenant A (prepaid, 20 m2, since February) and tenant B (postpaid, 30 m2, moves in on
15 March at 09:00 local); a corridor master meter split by area (20:30) and put on bills.
Readings every 6 hours (in batches of 4, as a gateway would send them), flat 1.00 yuan/kWh:
  master 2.5 kWh per 6 h x 124 intervals = 310 kWh = 31000 fen -> A 12400, B 18600 (20/50, 30/50)
  A      0.5 kWh per 6 h x 124 intervals =  62 kWh =  6200 fen, debited by ingest as it comes
  B      1.0 kWh per 6 h x  65 intervals =  65 kWh =  6500 fen, billed (15 Mar 06:00Z .. 31 Mar 12:00Z)
Fees: rent 1500.00/month by deduction (postpaid B: billed instead), 17/31 for B = 82258 fen;
      property fee 2.00/m2/month by bill: A 4000 fen, B 6000 x 17/31 = 3290.32 -> 3290 fen.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from sqlalchemy import select

from billing.money import Money
from services import apportionment, bill_queries, fees, postpaid
from services.ingest import ReadingIn
from services.monthend import month_end_job, run_month_end
from services.uow import in_transaction
from store.models import Account, LedgerAccount, LedgerTransaction, Posting
from tests.charges.support import BEFORE_MARCH, MARCH, SHANGHAI, balances, books_ok, build_world, feed

SIX_H = timedelta(hours=6)
B_FIRST = datetime(2026, 3, 15, 6, tzinfo=timezone.utc)


def _month_of_readings(w) -> list[list[ReadingIn]]:
    readings = []
    for i in range(125):
        at = BEFORE_MARCH + i * SIX_H
        readings.append(ReadingIn(w.master, at, 1_000_000 + 2500 * i))
        readings.append(ReadingIn(w.meters[0], at, 50_000 + 500 * i))
        if at >= B_FIRST:
            readings.append(ReadingIn(w.meters[1], at, 7_000 + 1000 * int((at - B_FIRST) / SIX_H)))
    times = sorted({r.taken_at for r in readings})
    return [[r for r in readings if r.taken_at in times[k:k + 4]] for k in range(0, len(times), 4)]


async def _configure(sessions, w) -> None:
    async def go(s):
        await fees.create_fee_item(s, w.site_id, dict(code="rent", name="Rent", basis="fixed", amount_fen=150000,
                                                      recurrence="monthly", starts_on="2026-01-01"), "staff")
        await fees.create_fee_item(s, w.site_id, dict(code="property", name="Property fee", basis="per_m2",
                                                      rate_per_m2="2.00", recurrence="monthly",
                                                      starts_on="2026-01-01", collection="bill"), "staff")
        await apportionment.create_group(s, w.site_id, dict(
            code="corridor", name="Corridor", master_meter_id=w.master, method="area", collection="bill",
            members=[dict(room_id=w.rooms[0]), dict(room_id=w.rooms[1])]), "staff")
    await in_transaction(sessions, go)


async def _wallet_lines(sessions, site_id, code) -> list[tuple[str, int]]:
    async with sessions() as s:
        rows = await s.execute(select(LedgerTransaction.kind, Posting.amount_fen)
                               .join(Posting, Posting.txn_id == LedgerTransaction.id)
                               .join(LedgerAccount, LedgerAccount.id == Posting.ledger_account_id)
                               .where(LedgerAccount.site_id == site_id, LedgerAccount.code == code)
                               .order_by(LedgerTransaction.id))
        return [(k, f) for k, f in rows]


async def test_a_month_of_readings_fees_and_common_area_ends_in_exact_bills_and_ledgers(sessions):
    w = await build_world(sessions, areas=("20.00", "30.00"), modes=("prepaid", "postpaid"), credit=2000_00)
    a, b = w.accounts

    async def move_in(s):
        (await s.get(Account, b)).opened_at = datetime(2026, 3, 15, 9, tzinfo=SHANGHAI)
    await in_transaction(sessions, move_in)
    await _configure(sessions, w)
    for batch in _month_of_readings(w):
        await feed(sessions, batch)

    first = await run_month_end(sessions, w.site_id, MARCH)
    assert (first.fees["deducted"], first.fees["deducted_fen"], first.fees["billed"]) == (1, 150000, 3)
    assert (first.apportionment["groups"], first.bills["created"]) == (1, 2)

    # Tenant A's wallet, line by line: the opening credit, each batch of usage, the rent.
    assert await _wallet_lines(sessions, w.site_id, f"wallet:{a}") == \
        [("recharge", 200000), ("usage", -150)] + [("usage", -200)] * 30 + [("usage", -50), ("fee", -150000)]

    async with sessions() as s:
        listed = {x["account_id"]: x for x in await bill_queries.list_bills(s, w.site_id)}
        bill_a = await bill_queries.get_bill(s, listed[a]["id"])
        bill_b = await bill_queries.get_bill(s, listed[b]["id"])
    label = "2026-03-01/2026-04-01"
    assert [(x["source_key"], x["amount_fen"]) for x in bill_a["lines"]] == [
        (f"fee:property:{w.rooms[0]}:{a}:{label}", 4000), (f"apportion:corridor:{label}:room:{w.rooms[0]}", 12400)]
    assert [(x["source_key"], x["quantity"], x["amount_fen"], x["revenue"]) for x in bill_b["lines"]] == [
        (f"usage:{w.meters[1]}:{label}", 65_000, 6500, "revenue:electricity"),
        (f"fee:rent:{w.rooms[1]}:{b}:{label}", 17, 82258, "revenue:fee:rent"),
        (f"fee:property:{w.rooms[1]}:{b}:{label}", 17, 3290, "revenue:fee:property"),
        (f"apportion:corridor:{label}:room:{w.rooms[1]}", 1, 18600, "revenue:common:electricity")]
    assert (bill_a["total_fen"], bill_b["total_fen"]) == (16400, 110648)

    # Re-running the month changes nothing at all.
    before = await balances(sessions, w.site_id)
    again = await run_month_end(sessions, w.site_id, MARCH)
    assert (again.fees["deducted"], again.apportionment["groups"], again.bills["created"]) == (0, 0, 0)
    assert await balances(sessions, w.site_id) == before

    # Staff confirm and issue; B pays through Alipay.
    for bill in (bill_a, bill_b):
        await in_transaction(sessions, lambda s, i=bill["id"]: postpaid.confirm_bill(s, i, "staff"))
        await in_transaction(sessions, lambda s, i=bill["id"]: postpaid.issue_bill(s, i, date(2026, 4, 1), "staff"))
    await in_transaction(sessions, lambda s: postpaid.pay_bill(s, bill_b["id"], Money(110648), "alipay:2026040122001", "alipay"))
    after = await balances(sessions, w.site_id)
    assert after[f"wallet:{a}"] == 200000 - 6200 - 150000
    assert after[f"receivable:{a}"] == -16400
    assert after[f"receivable:{b}"] == 0
    assert await _wallet_lines(sessions, w.site_id, f"receivable:{b}") == [("bill", -110648), ("bill_payment", 110648)]
    assert after["revenue:electricity"] == 6200 + 6500
    assert after["revenue:common:electricity"] == 31000
    assert after["revenue:fee:rent"] == 150000 + 82258
    assert after["revenue:fee:property"] == 4000 + 3290
    assert after["cash:alipay"] == -110648
    await books_ok(sessions)


async def test_the_month_end_job_runs_a_site_by_hand_and_again_as_a_no_op(sessions):
    w = await build_world(sessions, areas=("30.00",), modes=("postpaid",))
    first = await month_end_job({"sessions": sessions}, w.site_id, "2026-03")
    again = await month_end_job({"sessions": sessions}, w.site_id, "2026-03")
    assert (first["bills"]["created"], again["bills"]["created"], again["bills"]["unchanged"]) == (1, 0, 1)
    assert first["period"] == "2026-03-01/2026-04-01"
