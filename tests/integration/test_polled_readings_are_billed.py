"""The poller reads the simulator over real sockets; readings land in the database and are billed."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import func, select

from billing.money import Money
from services import ledger
from services.wallets import balance
from store.models import Meter, Reading
from tests.integration.conftest import build_site, eventually, reading_count


async def test_polled_readings_land_in_the_database_and_are_billed_at_the_tariff(sessions, start_field):
    site = await build_site(sessions, {"1": {}, "2": {}}, price="1.00")
    started = datetime.now(timezone.utc)
    sim, runtime = await start_field(speed=3600)

    async def billed_three_each() -> bool:
        return all([await reading_count(sessions, m, "billed") >= 3 for m in site.meters.values()])

    await eventually(billed_three_each)
    await runtime.stop()
    finished = datetime.now(timezone.utc)
    async with sessions() as s:
        for address, meter_id in site.meters.items():
            rows = list(await s.scalars(select(Reading).where(Reading.meter_id == meter_id).order_by(Reading.taken_at)))
            assert rows[0].verdict == "base" and {r.verdict for r in rows[1:]} == {"billed"}
            assert all(started <= r.taken_at <= finished for r in rows)  # stamped in real time, not simulated time
            assert rows[-1].total <= sim.meter(site.gateway, 1, address).energy + 5  # register rounds to 10 Wh
            spent = sum(r.amount_fen for r in rows)
            assert spent == sum(round(r.quantity / 10) for r in rows) > 0  # 1.00 yuan/kWh = 1 fen per 10 Wh
            assert (await balance(s, site.accounts[address])).total == Money(100_00 - spent)
            meter = await s.get(Meter, meter_id)
            assert meter.online and meter.live and meter.live["voltage_v"] > 200 and meter.relay_closed
        assert (await ledger.verify(s)).ok
        assert await s.scalar(select(func.count()).select_from(Reading)) == runtime.sink.ingested
