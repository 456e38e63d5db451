"""Meter lifecycle: replacing a physical meter without billing its new base as usage."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.errors import NotFound, ServiceError
from services.ingest import ReadingIn, ingest
from store.models import Meter, Reading
from store.types import utcnow


async def replace_meter(session: AsyncSession, meter_id: int, at: datetime, new_base_total: int,
                        final_old: ReadingIn | None = None, new_address: str | None = None,
                        new_base_rates: tuple[int, int, int, int] | None = None) -> Meter:
    """Bill the old meter's final reading, then start a new epoch from the new meter's base."""
    meter = await session.get(Meter, meter_id, with_for_update=True)
    if meter is None:
        raise NotFound(f"meter {meter_id} not found")
    if new_base_total < 0:
        raise ServiceError("the new meter's base must be >= 0")
    if final_old is not None:
        [res] = await ingest(session, [final_old])
        if res.error:
            raise ServiceError(f"final reading refused: {res.error}")
    meter.epoch += 1
    meter.base_at, meter.base_total = at, new_base_total
    meter.base_rates = list(new_base_rates) if new_base_rates else None
    meter.last_reading_at, meter.last_total = at, new_base_total
    if new_address:
        meter.address = new_address
    session.add(Reading(meter_id=meter.id, account_id=meter.account_id, epoch=meter.epoch, taken_at=at,
                        received_at=utcnow(), total=new_base_total,
                        rates=list(new_base_rates) if new_base_rates else None, verdict="base"))
    await session.flush()
    return meter
