"""Room monitor benchmark: 10,000 rooms, 20 concurrent staff; p95 of the page and of the live stream.

The app runs in this process on a real port over a fresh database (SQLite by default, or
`--db postgresql+asyncpg://...` into an empty database). Each staff member signs in, then
loads monitor pages (random page and filter); then every one holds the live stream open while
payments arrive. Figures: `page_p95_ms` (full page response), `stream_p95_ms` (stream opened ->
first rooms snapshot, after the site-wide per-state counts), `update_lag_p95_ms` (payment committed -> event received; bounded by
the server's poll interval), `page_cpu_ms` (this process's CPU time per page request, clients included:
the figure least disturbed by other load on a shared machine) and `pages_per_s`. Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("METERPAY_FAST_HASH", "1")

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from admin import setup_admin  # noqa: E402
from billing.money import Money  # noqa: E402
from meterpay.settings import Settings  # noqa: E402
from meterpay.web import init_app  # noqa: E402
from services.staff import create_user  # noqa: E402
from services.uow import in_transaction  # noqa: E402
from services.wallets import recharge  # noqa: E402
from store.db import create_all, make_engine, make_sessionmaker  # noqa: E402
from store.models import Account, Building, Company, Floor, LedgerAccount, Meter, Room, Site, Tenant  # noqa: E402

BUILDINGS, FLOORS, PER_FLOOR = 10, 20, 50  # 10,000 rooms
STAFF = 20
CSRF = re.compile(r'name="_csrf" value="([^"]+)"')


async def seed(url: str, rng: random.Random) -> tuple[int, list[tuple[int, int]]]:
    """Bulk-insert one site of 10,000 rooms (one meter each, 85% with an account); returns (site, [(room, account)])."""
    engine = make_engine(url)
    await create_all(engine)
    async with engine.begin() as c:
        company = (await c.execute(insert(Company).values(name="Bench Co.").returning(Company.id))).scalar_one()
        site = (await c.execute(insert(Site).values(company_id=company, code="BENCH", name="Bench Site",
                                                    timezone="Asia/Shanghai", settings={}).returning(Site.id))).scalar_one()
        rooms, meters, tenants, accounts, wallets = [], [], [], [], []
        rid = mid = aid = 0
        for b in range(1, BUILDINGS + 1):
            bid = (await c.execute(insert(Building).values(site_id=site, name=f"{b:02d}栋").returning(Building.id))).scalar_one()
            for level in range(1, FLOORS + 1):
                fid = (await c.execute(insert(Floor).values(building_id=bid, level=level, name=f"{level}F")
                                       .returning(Floor.id))).scalar_one()
                for n in range(1, PER_FLOOR + 1):
                    rid += 1
                    mid += 1
                    rooms.append(dict(id=rid, site_id=site, building_id=bid, floor_id=fid, number=f"{level}{n:02d}", state="vacant"))
                    acc = None
                    if rng.random() < 0.85:
                        aid += 1
                        acc = aid
                        tenants.append(dict(id=aid, site_id=site, name=f"租户{rid}", phone=f"139{rid:08d}", locale="zh-CN"))
                        accounts.append(dict(id=aid, site_id=site, tenant_id=aid, code=f"B-{rid}", state="open",
                                             payment_mode="prepaid", balance_model="merged", overdraft_fen=0,
                                             package_fee_fen=0, package_units=0, version=1))
                        wallets.append(dict(site_id=site, code=f"wallet:{aid}", account_id=aid,
                                            balance_fen=rng.choice([-500, 0, 1500, 4000, 8000, 20000])))
                    meters.append(dict(id=mid, site_id=site, room_id=rid, account_id=acc, port=1, address=str(mid),
                                       utility="electricity", model="acrel-ddsy1352", protocol="modbus_rtu_tcp",
                                       billing_side="platform", is_master=False, relay_closed=rng.random() > 0.03,
                                       online=rng.random() > 0.05, epoch=1, month_used=0, register_modulus=10**9,
                                       max_rate_per_h=66000, purchase_count=0, flags=0))
        for table, rows in ((Room, rooms), (Tenant, tenants), (Account, accounts), (Meter, meters), (LedgerAccount, wallets)):
            for i in range(0, len(rows), 2000):
                await c.execute(insert(table), rows[i:i + 2000])
    await engine.dispose()
    pairs = [(m["room_id"], m["account_id"]) for m in meters if m["account_id"]]
    return site, pairs


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return round(s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))], 1)


async def signed_in(base: str, username: str, password: str) -> aiohttp.ClientSession:
    http = aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True))
    token = CSRF.search(await (await http.get("/admin/login")).text())
    assert token
    async with http.post("/admin/login", data={"username": username, "password": password,
                                               "_csrf": token.group(1)}) as resp:
        assert resp.status == 200, resp.status
    return http


async def page_worker(http: aiohttp.ClientSession, site: int, n: int, rng: random.Random, out: list[float]) -> None:
    filters = ["", "state=alert1", "state=cutoff", "link=lost", "q=10", "building=3", "floor=7&building=2"]
    for _ in range(n):
        q = f"page={rng.randint(1, 50)}&" + rng.choice(filters)
        t0 = time.perf_counter()
        async with http.get(f"/admin/sites/{site}/rooms?{q}") as resp:
            await resp.read()
            assert resp.status == 200, (resp.status, q, (await resp.text())[:300])
        out.append((time.perf_counter() - t0) * 1000)


async def stream_worker(http: aiohttp.ClientSession, site: int, room_ids: list[int], first: list[float],
                        seen: dict[tuple[int, int], float], stop: asyncio.Event) -> None:
    t0 = time.perf_counter()
    async with http.get(f"/admin/sites/{site}/rooms/stream?ids={','.join(map(str, room_ids))}") as resp:
        got_first, event = False, ""
        while not stop.is_set():
            try:
                line = await asyncio.wait_for(resp.content.readline(), 0.5)
            except asyncio.TimeoutError:
                continue
            if line.startswith(b"event: "):
                event = line[7:].strip().decode()
            if not line.startswith(b"data: ") or event != "rooms":
                continue
            now = time.perf_counter()
            if not got_first:
                first.append((now - t0) * 1000)
                got_first = True
                continue
            for cell in json.loads(line[6:]):
                seen.setdefault((cell["id"], cell["balance_fen"]), now)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    args = ap.parse_args()
    rng = random.Random(11)
    tmp = tempfile.mkdtemp(prefix="bench-monitor-")
    url = args.db or f"sqlite+aiosqlite:///{tmp}/monitor.db"
    t_seed = time.perf_counter()
    site, pairs = await seed(url, rng)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    await create_user(sessions, "bench", "bench-password", "viewer", [site])
    print(f"seeded {BUILDINGS * FLOORS * PER_FLOOR} rooms in {time.perf_counter() - t_seed:.1f}s", file=sys.stderr)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = init_app(Settings(database_url=url, secret_key=uuid.uuid4().hex, extra={}))
    setup_admin(app)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    clients = [await signed_in(base, "bench", "bench-password") for _ in range(STAFF)]
    try:
        page_ms: list[float] = []
        per = 8 if args.quick else 50
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(page_worker(h, site, per, random.Random(i), page_ms) for i, h in enumerate(clients)))
        page_cpu_ms = (time.process_time() - cpu0) * 1000 / max(1, len(page_ms))
        page_rps = len(page_ms) / (time.perf_counter() - wall0)

        first: list[float] = []
        seen: dict[tuple[int, int], float] = {}
        stop = asyncio.Event()
        watched = pairs[:200]  # the first page: every staff member watches it
        tasks = [asyncio.create_task(stream_worker(h, site, [r for r, _ in watched], first, seen, stop)) for h in clients]
        while len(first) < STAFF:
            await asyncio.sleep(0.05)
        commits: list[tuple[int, int, float]] = []  # (room, new balance, committed at)
        for _ in range(8 if args.quick else 40):
            room, acc = rng.choice(watched)
            order_bal = await in_transaction(sessions, lambda s, a=acc: _pay(s, a))
            commits.append((room, order_bal, time.perf_counter()))
            await asyncio.sleep(0.4)
        await asyncio.sleep(2.5)
        stop.set()
        await asyncio.gather(*tasks)
        lags = [(seen[(r, b)] - t) * 1000 for r, b, t in commits if (r, b) in seen]
    finally:
        for h in clients:
            await h.close()
        await runner.cleanup()
        await engine.dispose()
    print(json.dumps({"bench": "monitor", "rooms": BUILDINGS * FLOORS * PER_FLOOR, "staff": STAFF,
                      "db": url.split(":")[0], "page_requests": len(page_ms),
                      "page_p50_ms": pct(page_ms, 50), "page_p95_ms": pct(page_ms, 95),
                      "page_cpu_ms": round(page_cpu_ms, 1), "pages_per_s": round(page_rps, 1),
                      "stream_p95_ms": pct(first, 95), "update_lag_p95_ms": pct(lags, 95),
                      "updates_seen": f"{len(lags)}/{len(commits)}"}))


async def _pay(s, account_id: int) -> int:  # type: ignore[no-untyped-def]
    from services.wallets import account_balance, get_account

    await recharge(s, account_id, Money(1_00), f"bench-{uuid.uuid4().hex}")
    return await account_balance(s, await get_account(s, account_id))


if __name__ == "__main__":
    asyncio.run(main())
