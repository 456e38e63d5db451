"""Automatic cut-off and restore: the platform's own relay commands reach the meter through the executor."""

from __future__ import annotations

from sqlalchemy import select

from billing.money import Money
from services.uow import in_transaction
from services.wallets import recharge
from store.models import Meter, MeterCommand, Outbox
from tests.integration.conftest import build_site, eventually


async def _states(sessions, meter_id) -> list[tuple[str, str]]:
    async with sessions() as s:
        rows = await s.scalars(select(MeterCommand).where(MeterCommand.meter_id == meter_id).order_by(MeterCommand.id))
        return [(c.kind, c.state) for c in rows]


async def test_an_account_that_runs_out_is_cut_off_at_the_meter_and_restored_when_paid(sessions, start_field):
    site = await build_site(sessions, {"1": {}}, credit_fen=50)  # 0.50 yuan: a few seconds at 3600x
    sim, _ = await start_field()
    meter = sim.meter(site.gateway, 1, "1")

    async def cut_off() -> bool:
        states = await _states(sessions, site.meters["1"])
        return bool(states) and all(s == ("relay_open", "confirmed") for s in states)

    await eventually(cut_off)
    assert not meter.relay_closed and meter.relay_writes == 1  # a repeated decision confirms by read-back
    await in_transaction(sessions, lambda s: recharge(s, site.accounts["1"], Money(100_00), "pay-again"))

    async def restored() -> bool:
        return (await _states(sessions, site.meters["1"]))[-1] == ("relay_close", "confirmed")

    await eventually(restored)
    assert meter.relay_closed and meter.relay_writes == 2

    async def mirrored_on() -> bool:  # a reading taken just before the restore may land just after it
        async with sessions() as s:
            return (await s.get(Meter, site.meters["1"])).relay_closed

    await eventually(mirrored_on, timeout_s=2.0)
    async with sessions() as s:  # no job worker ran: the runtime took both commands from meter_commands
        assert set(await s.scalars(select(Outbox.topic))) <= {"notify"}  # a command writes no outbox row
