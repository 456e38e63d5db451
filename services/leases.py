"""Gateway leases: each gateway is polled by exactly one poller, taken over within seconds if it dies.

A poller claims gateways whose lease is free or expired and renews its own before they expire.
The claim is one conditional UPDATE per gateway, so two pollers racing for the same gateway
cannot both win (the loser's UPDATE matches no row). A poller that stops renewing loses its
gateways after `ttl_s`; another poller's next claim takes them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Gateway
from store.types import utcnow


async def claim(session: AsyncSession, owner: str, ttl_s: float, limit: int | None = None,
                now: datetime | None = None, protocols: tuple[str, ...] | None = None) -> list[int]:
    """Renew this owner's leases and claim free or expired gateways (up to `limit` in total)."""
    now = now or utcnow()
    until = now + timedelta(seconds=ttl_s)
    await session.execute(update(Gateway).where(Gateway.lease_owner == owner).values(lease_until=until))
    mine = list(await session.scalars(select(Gateway.id).where(Gateway.lease_owner == owner)))
    free = select(Gateway.id).where(or_(Gateway.lease_owner.is_(None), Gateway.lease_until < now)) \
        .order_by(Gateway.id)
    if protocols:
        free = free.where(Gateway.protocol.in_(protocols))
    for gid in list(await session.scalars(free)):
        if limit is not None and len(mine) >= limit:
            break
        res = await session.execute(update(Gateway).where(
            Gateway.id == gid, or_(Gateway.lease_owner.is_(None), Gateway.lease_until < now))
            .values(lease_owner=owner, lease_until=until))
        if res.rowcount == 1:
            mine.append(gid)
    return sorted(mine)


async def release(session: AsyncSession, owner: str) -> None:
    """Give up all of an owner's gateways at once (clean shutdown)."""
    await session.execute(update(Gateway).where(Gateway.lease_owner == owner)
                          .values(lease_owner=None, lease_until=None))
