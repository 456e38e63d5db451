"""Creating the first staff user: for the demo (admin/admin) and from the command line.

    python -m admin.bootstrap USERNAME ROLE SITE_ID[,SITE_ID...]   (password read from stdin, never argv)
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import sys

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.staff import create_user
from store.models import Site, User

log = logging.getLogger(__name__)
DEMO_USER, DEMO_PASSWORD = "admin", "admin"


async def ensure_demo_owner(sessions: async_sessionmaker[AsyncSession]) -> bool:
    """Create the demo owner `admin`/`admin` over every site unless that user exists; returns whether it did."""
    async with sessions() as s:
        if await s.scalar(select(User.id).where(User.username == DEMO_USER)) is not None:
            return False
        site_ids = list(await s.scalars(select(Site.id)))
    if not site_ids:
        return False
    await create_user(sessions, DEMO_USER, DEMO_PASSWORD, "owner", site_ids)
    log.warning("demo staff user created: sign in at /admin/ as %s / %s (demo only: change it)", DEMO_USER, DEMO_PASSWORD)
    return True


async def _cli(argv: list[str]) -> int:
    from meterpay.settings import Settings
    from store.db import make_engine, make_sessionmaker

    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    username, role, sites = argv
    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    engine = make_engine(Settings.from_env().database_url)
    try:
        uid = await create_user(make_sessionmaker(engine), username, password, role,
                                [int(x) for x in sites.split(",") if x.strip()])
    finally:
        await engine.dispose()
    print(f"user {username} created (id {uid})")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(_cli(sys.argv[1:])))
