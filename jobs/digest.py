"""Site-wide scans run by cron: the staff daily digest and lost meters / gateways."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing import alerts
from billing.alerts import AccountBalance, LinkKind, LinkStatus
from billing.money import Money
from services import alerting
from store.models import Account, Gateway, LedgerAccount, Meter, Site

DIGEST_HOUR = 8  # site-local; Site.settings["notify"]["digest_hour"] overrides


async def _balances(session: AsyncSession, site_id: int) -> list[AccountBalance]:
    rows = await session.execute(
        select(Account.id, Account.code, func.coalesce(func.sum(LedgerAccount.balance_fen), 0))
        .join(LedgerAccount, (LedgerAccount.account_id == Account.id)
              & LedgerAccount.code.like("wallet:%"), isouter=True)
        .where(Account.site_id == site_id, Account.state == "open")
        .group_by(Account.id, Account.code))
    return [AccountBalance(str(i), code, Money(int(fen))) for i, code, fen in rows.tuples()]


async def _links(session: AsyncSession, site_id: int) -> list[LinkStatus]:
    meters = await session.execute(select(Meter.id, Meter.last_seen_at).where(Meter.site_id == site_id))
    gateways = await session.execute(select(Gateway.id, Gateway.last_seen_at).where(Gateway.site_id == site_id))
    return ([LinkStatus(LinkKind.METER, str(i), seen) for i, seen in meters.tuples()]
            + [LinkStatus(LinkKind.GATEWAY, str(i), seen) for i, seen in gateways.tuples()])


async def queue_digests(session: AsyncSession, now: datetime) -> int:
    """Queue today's digest for every site whose local digest hour it is (keyed per site and day)."""
    count = 0
    for site in list(await session.scalars(select(Site))):
        local = now.astimezone(ZoneInfo(site.timezone))
        hour = int(((site.settings or {}).get("notify") or {}).get("digest_hour", DIGEST_HOUR))
        if local.hour != hour:
            continue
        digest = alerts.daily_digest(str(site.id), local.date(), await _balances(session, site.id),
                                     await _links(session, site.id), now, alerting.site_config(site))
        if digest.is_empty:
            continue
        params = {"site": site.name, "date": local.date().isoformat(),
                  "arrears_count": str(len(digest.arrears)),
                  "arrears_total": digest.total_arrears.to_yuan_str(), "lost_count": str(len(digest.lost))}
        count += await alerting.queue_message(session, digest.key, "staff_digest", site, now, params,
                                              staff=True)
    return count


async def queue_lost_links(session: AsyncSession, now: datetime) -> int:
    """Queue one alert per outage for each meter and gateway silent past lost_after_s."""
    count = 0
    for site in list(await session.scalars(select(Site))):
        since = now - timedelta(seconds=alerting.site_config(site).lost_after_s)
        for model, kind in ((Meter, LinkKind.METER), (Gateway, LinkKind.GATEWAY)):
            ids = list(await session.scalars(select(model.id).where(
                model.site_id == site.id, model.last_seen_at.is_not(None), model.last_seen_at < since)))
            for device_id in ids:
                count += await alerting.link_lost(session, kind, device_id, now)
    return count
