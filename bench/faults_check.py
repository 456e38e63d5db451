"""The fault suite's checker: after the storm, prove the books and the meters agree, exactly once.

Each check returns counts; a `lost_*` or `double_*` count above zero is a failure.
- ledger: services.ledger.verify (every transaction sums to zero, cached balances = postings);
- payments: every order paid at the provider is credited by exactly one ledger transaction, and
  forged / tampered notifies credited nothing;
- meter credits: every meter-side credit was confirmed by its meter, and the simulated meter
  applied exactly those purchases (counter and amount), no more;
- readings: per meter the billed intervals chain without overlap or gap, their quantities sum to
  the baseline's advance, each usage transaction's revenue equals its readings' amounts, and the
  meter's register (consumption frozen) equals the billed baseline;
- wallets: each platform account's balance = opening (before any usage) + payments - its readings' amounts;
- relays: no meter is off while its account is in credit (after the command retry window).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from meterpay.cluster_fleet import TrialFleet
from services.ledger import verify
from services.meter_io import meter_index
from store.models import LedgerAccount, LedgerTransaction, MeterCommand, Meter, Order, Outbox, Posting, ProviderPayment, Reading

BILLS = ("billed", "rollover")
HALF_STEP_WH = 5  # wired registers hold 0.01 kWh, rounded half-even from whole Wh; MQTT reports whole Wh


async def check(sessions: async_sessionmaker[AsyncSession], fleet: TrialFleet, paid: dict[str, int],
                forged: set[str], field_meters: list[dict[str, Any]], opening_fen: dict[int, int]) -> dict[str, int]:
    async with sessions() as s:
        out: dict[str, int] = {}
        book = await verify(s)
        out["double_ledger_unbalanced"] = book.unbalanced_transactions
        out["lost_ledger_balance_mismatch"] = book.cache_mismatches
        out["double_ledger_total_fen"] = abs(book.total_fen)
        out.update(await _payments(s, paid, forged))
        out.update(await _meter_credits(s, paid, fleet, field_meters))
        out.update(await _readings(s))
        out.update(await _energy(s, field_meters))
        out.update(await _wallets(s, fleet, paid, opening_fen))
        out.update(await _relays(s, fleet, field_meters))
        out["lost_outbox_jobs"] = int(await s.scalar(select(func.count()).select_from(Outbox)
                                                     .where(Outbox.done_at.is_(None))) or 0)
    return out


async def _payments(s: AsyncSession, paid: dict[str, int], forged: set[str]) -> dict[str, int]:
    keys = {f"recharge:{no}": no for no in paid}
    counts = dict((await s.execute(select(LedgerTransaction.key, func.count()).where(
        LedgerTransaction.key.like("recharge:%")).group_by(LedgerTransaction.key))).all())
    states = dict((await s.execute(select(Order.out_trade_no, Order.state)
                                   .where(Order.out_trade_no.in_(list(paid) + list(forged))))).all())
    extra = await s.scalar(select(func.count()).select_from(ProviderPayment).where(ProviderPayment.role == "extra")) or 0
    return {"lost_payments": sum(1 for k in keys if counts.get(k, 0) == 0 or states.get(keys[k]) != "credited"),
            "double_payments": sum(max(0, counts.get(k, 0) - 1) for k in keys) + int(extra),
            "double_forged_credited": sum(1 for no in forged if counts.get(f"recharge:{no}", 0) or
                                          states.get(no) not in ("created", None)),
            "paid_orders": len(paid), "forged_orders": len(forged)}


async def _meter_credits(s: AsyncSession, paid: dict[str, int], fleet: TrialFleet,
                         field_meters: list[dict[str, Any]]) -> dict[str, int]:
    meter_side = {a.account_id: a for a in fleet.meter_side}
    wanted = {f"credit:{no}" for no, acc in paid.items() if acc in meter_side}
    rows = (await s.execute(select(MeterCommand.key, MeterCommand.meter_id, MeterCommand.state, MeterCommand.params)
                            .where(MeterCommand.kind == "push_credit"))).all()
    confirmed = {k: (m, p) for k, m, st, p in rows if st == "confirmed"}
    by_ref = {(f["gateway"], f["port"], f["address"]): f for f in field_meters}
    index = {v: k for k, v in (await meter_index(s)).items()}
    applied_extra = applied_missing = 0
    for a in meter_side.values():
        expected = sorted((int(p["purchase_count"]), int(p.get("amount_fen", 0))) for m, p in confirmed.values()
                          if m == a.meter_id)
        sim = by_ref.get(index.get(a.meter_id, ("", 0, "")), {})
        applied = sorted((int(c), int(f)) for c, f in sim.get("credits", []))
        applied_extra += len([x for x in applied if x not in expected])
        applied_missing += len([x for x in expected if x not in applied])
    return {"lost_meter_credits": len(wanted - confirmed.keys()) + applied_missing,
            "double_meter_credits": applied_extra, "meter_credits_confirmed": len(wanted & confirmed.keys())}


async def _readings(s: AsyncSession) -> dict[str, int]:
    rows = (await s.execute(select(Reading.meter_id, Reading.epoch, Reading.taken_at, Reading.from_at, Reading.quantity,
                                   Reading.total, Reading.verdict).where(Reading.verdict.in_(("base", *BILLS)))
                            .order_by(Reading.meter_id, Reading.epoch, Reading.taken_at))).all()
    overlap = gap = sum_mismatch = 0
    chain: dict[tuple[int, int], list[Any]] = defaultdict(list)
    for r in rows:
        chain[(r.meter_id, r.epoch)].append(r)
    for items in chain.values():
        base = next((r for r in items if r.verdict == "base"), None)
        billed = [r for r in items if r.verdict in BILLS]
        if base is None or not billed:
            continue
        prev = base.taken_at
        for r in billed:
            overlap += r.from_at < prev
            gap += r.from_at > prev
            prev = r.taken_at
        sum_mismatch += sum(r.quantity for r in billed) != billed[-1].total - base.total
    usage = (await s.execute(select(Posting.txn_id, func.sum(Posting.amount_fen)).join(
        LedgerTransaction, LedgerTransaction.id == Posting.txn_id).where(
        LedgerTransaction.kind == "usage", Posting.amount_fen > 0).group_by(Posting.txn_id))).all()
    billed_fen = dict((await s.execute(select(Reading.txn_id, func.sum(Reading.amount_fen))
                                       .where(Reading.txn_id.is_not(None)).group_by(Reading.txn_id))).all())
    revenue_diff = sum(int(fen) - int(billed_fen.get(txn, 0)) for txn, fen in usage)
    dup = await s.scalar(select(func.count()).select_from(select(Reading.meter_id).group_by(
        Reading.meter_id, Reading.epoch, Reading.taken_at).having(func.count() > 1).subquery())) or 0
    return {"double_billed_intervals": overlap + int(dup), "lost_billed_intervals": gap,
            "double_billed_quantity_meters": sum_mismatch, "double_revenue_fen": max(revenue_diff, 0),
            "lost_revenue_fen": max(-revenue_diff, 0),
            "readings": int(await s.scalar(select(func.count()).select_from(Reading)) or 0)}


async def _energy(s: AsyncSession, field_meters: list[dict[str, Any]]) -> dict[str, int]:
    """With consumption frozen and a final poll done, the register must equal the billed baseline."""
    ids = await meter_index(s)
    bases = dict((await s.execute(select(Meter.id, Meter.base_total))).all())
    lost = double = lost_wh = 0
    for f in field_meters:
        mid = ids.get((f["gateway"], f["port"], f["address"]))
        if mid is None:
            continue
        diff = int(f["energy"]) - int(bases.get(mid) or 0)
        slack = 0 if f["gateway"].startswith("4g") else HALF_STEP_WH
        lost += diff > slack
        double += diff < -slack
        lost_wh += max(diff - slack, 0)
    return {"lost_energy_meters": lost, "lost_energy_wh": lost_wh, "double_energy_meters": double}


async def _wallets(s: AsyncSession, fleet: TrialFleet, paid: dict[str, int], opening_fen: dict[int, int]) -> dict[str, int]:
    amounts = dict((await s.execute(select(Order.out_trade_no, Order.amount_fen)
                                    .where(Order.out_trade_no.in_(list(paid))))).all())
    credited: dict[int, int] = defaultdict(int)
    for no, acc in paid.items():
        credited[acc] += int(amounts.get(no, 0))
    usage = dict((await s.execute(select(Reading.account_id, func.sum(Reading.amount_fen))
                                  .where(Reading.txn_id.is_not(None)).group_by(Reading.account_id))).all())
    balances = dict((await s.execute(select(LedgerAccount.account_id, func.sum(LedgerAccount.balance_fen))
                                     .where(LedgerAccount.code.like("wallet:%")).group_by(LedgerAccount.account_id))).all())
    over = under = 0
    for a in fleet.accounts:
        if a.billing_side != "platform":
            continue
        diff = int(balances.get(a.account_id) or 0) - (opening_fen.get(a.account_id, 0) + credited[a.account_id]
                                                       - int(usage.get(a.account_id) or 0))
        over += max(diff, 0)
        under += max(-diff, 0)
    return {"double_wallet_credit_fen": over, "double_wallet_debit_fen": under}


async def _relays(s: AsyncSession, fleet: TrialFleet, field_meters: list[dict[str, Any]]) -> dict[str, int]:
    ids = await meter_index(s)
    by_meter = {ids.get((f["gateway"], f["port"], f["address"])): f for f in field_meters}
    balances = dict((await s.execute(select(LedgerAccount.account_id, func.sum(LedgerAccount.balance_fen))
                                     .where(LedgerAccount.code.like("wallet:%")).group_by(LedgerAccount.account_id))).all())
    wrong = off = 0
    for a in fleet.accounts:
        f = by_meter.get(a.meter_id)
        if f is None or a.protocol == "mqtt":
            continue
        off += not f["relay_closed"]
        in_credit = f["balance_fen"] > 0 if a.billing_side == "meter" else int(balances.get(a.account_id) or 0) > 0
        wrong += in_credit and not f["relay_closed"]
    commands = dict((await s.execute(select(MeterCommand.kind, func.count()).where(MeterCommand.state == "confirmed")
                                     .group_by(MeterCommand.kind))).all())
    return {"double_cutoff_in_credit": wrong, "meters_off_at_end": off,
            "cutoffs_confirmed": int(commands.get("relay_open", 0)), "restores_confirmed": int(commands.get("relay_close", 0))}
