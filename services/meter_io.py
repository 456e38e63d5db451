"""Readings from devices/ into billing: map (gateway, port, address) to a meter, ingest per batch.

The sink is what the poller and the MQTT bridge hand their `MeterSample` batches to. Each batch
is one transaction through `services.ingest.ingest`, so a batch is billed whole or not at all
(and a failed batch stays with the poller for its next flush). Online/lost is per meter: a
reading sets it online (ingest does that); `mark_lost` turns it off when a meter has sent
nothing for a while, whatever its gateway's link says.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from devices.sample import MeterSample
from services.ingest import IngestResult, ReadingIn, ingest
from services.uow import in_transaction
from store.models import Gateway, Meter

log = logging.getLogger(__name__)
RefKey = tuple[str, int, str]  # gateway code, downlink, address
LIVE_FIELDS = ("voltage_v", "current_a", "power_w", "power_factor", "frequency_hz")


async def meter_index(session: AsyncSession) -> dict[RefKey, int]:
    """Every meter that sits behind a gateway, by (gateway code, downlink, address)."""
    rows = await session.execute(select(Gateway.code, Meter.port, Meter.address, Meter.id)
                                 .join(Gateway, Gateway.id == Meter.gateway_id))
    return {(code, port, address): meter_id for code, port, address, meter_id in rows}


@dataclass
class MeterDirectory:
    """A cache of meter ids by address; refreshed on a miss, at most once per `refresh_min_s`."""

    sessions: async_sessionmaker[AsyncSession]
    refresh_min_s: float = 5.0
    ids: dict[RefKey, int] = field(default_factory=dict)
    _loaded_at: float | None = None
    _unknown_logged: set[RefKey] = field(default_factory=set)

    async def refresh(self) -> None:
        async with self.sessions() as session:
            self.ids = await meter_index(session)
        self._loaded_at = time.monotonic()

    async def resolve(self, keys: Iterable[RefKey]) -> dict[RefKey, int]:
        """Ids for the keys that name a known meter; unknown ones are logged once and left out."""
        keys = set(keys)
        stale = self._loaded_at is None or time.monotonic() - self._loaded_at >= self.refresh_min_s
        if stale and (self._loaded_at is None or not keys <= self.ids.keys()):
            await self.refresh()
        for key in keys - self.ids.keys() - self._unknown_logged:
            self._unknown_logged.add(key)
            log.warning("reading from unknown meter %s/%s/%s dropped (not in the database)", *key)
        return {k: self.ids[k] for k in keys if k in self.ids}


def to_reading(meter_id: int, sample: MeterSample) -> ReadingIn:
    """A sample as the ingest service takes it; a water meter's valve is its `relay_closed`."""
    live = {k: getattr(sample, k) for k in LIVE_FIELDS if getattr(sample, k) is not None}
    return ReadingIn(meter_id=meter_id, taken_at=sample.taken_at, total=sample.energy_total,
                     rates=sample.energy_rates, live=live or None, relay_closed=sample.relay_closed,
                     meter_balance_fen=sample.meter_balance_fen, purchase_count=sample.purchase_count)


@dataclass
class ReadingSink:
    """The poller's / MQTT bridge's sink: one ingest transaction per batch of samples."""

    sessions: async_sessionmaker[AsyncSession]
    directory: MeterDirectory
    ingested: int = 0
    refused: int = 0
    dropped: int = 0

    @classmethod
    def for_sessions(cls, sessions: async_sessionmaker[AsyncSession]) -> ReadingSink:
        return cls(sessions, MeterDirectory(sessions))

    async def __call__(self, samples: list[MeterSample]) -> list[IngestResult]:
        ids = await self.directory.resolve((s.gateway, s.port, s.address) for s in samples)
        readings = [to_reading(ids[k], s) for s in samples if (k := (s.gateway, s.port, s.address)) in ids]
        self.dropped += len(samples) - len(readings)
        if not readings:
            return []
        results = await in_transaction(self.sessions, lambda session: ingest(session, readings))
        errors = [r for r in results if r.error]
        self.ingested += len(results) - len(errors)
        self.refused += len(errors)
        for r in errors[:3]:
            log.warning("reading of meter %s at %s refused: %s", r.meter_id, r.taken_at.isoformat(), r.error)
        return results


async def mark_lost(session: AsyncSession, now: datetime, after_s: float) -> list[int]:
    """Set online=False for meters with no reading received for longer than `after_s`; their ids."""
    cutoff = now - timedelta(seconds=after_s)
    stale = (Meter.online.is_(True), or_(Meter.last_seen_at.is_(None), Meter.last_seen_at < cutoff))
    ids = list(await session.scalars(select(Meter.id).where(*stale)))
    if ids:
        await session.execute(update(Meter).where(Meter.id.in_(ids), *stale).values(online=False))
        log.info("%d meter(s) lost: nothing received since %s", len(ids), cutoff.isoformat())
    return ids
