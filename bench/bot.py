"""Bot reply latency: 500 concurrent tenants asking for their balance over real HTTP.

What is measured is the deployed path of "余额" through /wechat: signature check, AES decrypt
(safe mode), XML parse, dedup claim in Redis (`RedisSeenStore`, what production uses with
REDIS_URL), binding + accounts + balances + days left from PostgreSQL (`DbTenantPort`), reply
render and AES encrypt.

Server: `--workers` lists the configurations measured (default "1,2": one process, then two).
Each configuration starts that many processes serving /wechat on ONE port with SO_REUSEPORT,
the way `python app.py run` scales on one machine (meterpay/cluster.py); each has its own engine
(store.db.make_engine, as the app). The database is one of its own on 127.0.0.1:5432, seeded
with --tenants tenants, each bound to one open account with a meter in a room, a merged wallet
and a billed reading every --reading-minutes over the last 8 days (the balance query sums a
week of them). `--port fake` swaps in the in-memory port and seen store, to see the cost of
HTTP + crypto alone.

Client: this process (the servers are others), aiohttp, one keep-alive connection per tenant.
Messages are built and encrypted with wechatpy before the clock starts; every reply is read.
Its CPU share is reported (client_cpu_pct) so a saturated client would show; so are the servers'
and PostgreSQL's CPU per reply.

Offered load (steady, the reply_* figures): every tenant asks, waits for and reads the reply,
then thinks uniform 0..2x --think-s (mean 1 s) and asks again, for --seconds: a closed loop
offering about tenants / (think + latency) = ~500 requests/s. Latency is from sending the
request to having read the whole reply. Burst (burst_*): all tenants ask at the same instant,
--bursts times (a stress figure, not the target).

The top-level reply_p50_ms / reply_p99_ms are those of the last (largest) configuration; `runs`
holds every configuration's figures, the single process included. The machine is shared: quote
the load average with the figures (printed as load_avg).

    python bench/bot.py                 # full: 500 tenants, 30 s steady, 10 bursts, 1 and 2 workers
    python bench/bot.py --quick         # about a minute
    python bench/bot.py --workers 2 --port fake
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import secrets
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402
import xmltodict  # noqa: E402
from aiohttp import web  # noqa: E402
from sqlalchemy import insert, text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402
from store.db import admin_sql  # noqa: E402
from procstat import cpu_s  # noqa: E402
from wechatpy.crypto import WeChatCrypto  # noqa: E402
from wechatpy.replies import deserialize_reply  # noqa: E402
from wechatpy.utils import WeChatSigner  # noqa: E402

TOKEN = "bench-token"
APPID = "wxbench000000000"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
ACCOUNT = "gh_bench"
ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
BALANCE_FEN = 10_000  # tenant n holds 100.00 + n fen
READING_FEN = 6  # per reading


def openid_of(n: int) -> str:
    return f"o-bench-{n:05d}"


# -- the database ----------------------------------------------------------------------------
async def admin(sql: str) -> None:
    await admin_sql(ADMIN_URL, sql)


async def seed(url: str, tenants: int, reading_minutes: int) -> None:
    """Tenants bound to accounts with a meter in a room, a merged wallet and a week of readings."""
    from store.db import create_all, make_engine
    from store.models import (Account, Building, Company, Floor, LedgerAccount, Meter, Room, Site, Tenant,
                              TenantLink)

    engine = make_engine(url)
    now = datetime.now(timezone.utc)
    try:
        await create_all(engine)
        async with engine.begin() as conn:
            async def add(model: Any, rows: list[dict[str, Any]]) -> list[int]:
                result = await conn.execute(insert(model).returning(model.id, sort_by_parameter_order=True), rows)
                return [r[0] for r in result]

            [company] = await add(Company, [{"name": "Bench"}])
            [site] = await add(Site, [{"company_id": company, "code": "S1", "name": "阳光公寓",
                                       "timezone": "Asia/Shanghai", "settings": {}}])
            [building] = await add(Building, [{"site_id": site, "name": "1栋"}])
            [floor] = await add(Floor, [{"building_id": building, "level": 1, "name": "1F"}])
            rooms = await add(Room, [{"site_id": site, "building_id": building, "floor_id": floor,
                                      "number": f"{n // 100 + 1}-{n % 100 + 1:02d}", "state": "occupied"}
                                     for n in range(tenants)])
            people = await add(Tenant, [{"site_id": site, "name": f"T{n}", "phone": f"138{n:08d}",
                                         "locale": "zh-CN"} for n in range(tenants)])
            accounts = await add(Account, [{"site_id": site, "tenant_id": people[n], "code": f"B{n}",
                                            "opened_at": now - timedelta(days=90)} for n in range(tenants)])
            await add(Meter, [{"site_id": site, "room_id": rooms[n], "account_id": accounts[n], "address": f"M{n}",
                               "utility": "electricity", "model": "acrel-ddsy1352", "protocol": "modbus_rtu_tcp"}
                              for n in range(tenants)])
            await add(LedgerAccount, [{"site_id": site, "code": f"wallet:{a}", "account_id": a,
                                       "balance_fen": BALANCE_FEN + n} for n, a in enumerate(accounts)])
            await add(TenantLink, [{"openid": openid_of(n), "account_id": a, "via": "staff", "created_at": now}
                                   for n, a in enumerate(accounts)])
            await conn.execute(text(
                "INSERT INTO readings (meter_id, account_id, epoch, taken_at, received_at, total, verdict, quantity,"
                " amount_fen) SELECT m.id, m.account_id, 1, t, t, 0, 'billed', 10, :fen FROM meters m"
                " CROSS JOIN generate_series(:start, :end, make_interval(mins => :step)) AS t"),
                {"fen": READING_FEN, "start": now - timedelta(days=8), "end": now, "step": reading_minutes})
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("ANALYZE"))
    finally:
        await engine.dispose()


def expected_reply(reading_minutes: int) -> str:
    """What tenant 0 must be told: 100.00 and the days that lasts at a week's readings."""
    from services.tenant_rules import days_left

    per_day = READING_FEN * 24 * 60 // reading_minutes
    days = days_left(BALANCE_FEN, per_day * 7, 7 * 86_400)
    return f"¥100.00，预计可用 {days} 天"


# -- the server processes --------------------------------------------------------------------
async def serve(args: dict[str, Any], conn: Connection) -> None:
    from bot.seen import InMemorySeenStore
    from bot.wechat import make_wechat_app

    async def send_custom(openid: str, text: str) -> None:
        return None

    cleanup = []
    seen: Any = InMemorySeenStore()
    if args["seen"] == "redis":
        from bot.seen_redis import RedisSeenStore, redis_client

        redis = redis_client(REDIS_URL)
        cleanup.append(redis.aclose)
        seen = RedisSeenStore(redis, prefix=args["redis_prefix"])
    if args["port_kind"] == "fake":
        port: Any = fake_port(args["tenants"])
    else:
        from services.tenant import DbTenantPort
        from store.db import make_engine, make_sessionmaker

        engine = make_engine(args["db_url"])
        cleanup.append(engine.dispose)
        port = DbTenantPort(make_sessionmaker(engine), secret_key="bench-secret",
                            pay_base_url="https://pay.example.test/pay/", send_sms=send_custom)
    app = make_wechat_app(port, TOKEN, APPID, AES_KEY if args["mode"] != "plain" else None, send_custom, seen,
                          max_skew_s=3600)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args["http_port"], backlog=4096, reuse_port=True).start()
    conn.send("ready")
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # the parent says when to stop
    await runner.cleanup()
    for close in cleanup:
        await close()


def fake_port(tenants: int) -> Any:
    from billing.money import Money
    from bot.fake_port import FakeAccount, FakeTenantPort
    from bot.port import RoomView

    port = FakeTenantPort()
    for n in range(tenants):
        room = RoomView(f"acc-{n}", "S1", "阳光公寓", f"{n // 100 + 1}-{n % 100 + 1:02d}")
        port.add_account(FakeAccount(room=room, phone=f"138{n:08d}", balances={"electricity": Money(1000 + n)},
                                     daily_cost={"electricity": Money(250)}))
        port.bind(openid_of(n), room.account_id)
    return port


def server_main(args: dict[str, Any], conn: Connection) -> None:
    asyncio.run(serve(args, conn))


# -- the client ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Request:
    openid: str
    params: dict[str, str]
    body: bytes


class Messages:
    """Balance questions signed (and encrypted) the way WeChat sends them."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
        self._msg_id = 7_100_000_000_000_000_000 + secrets.randbelow(10**15) * 1000

    def build(self, openid: str) -> Request:
        self._msg_id += 1
        ts, nonce = str(int(time.time())), secrets.token_hex(5)
        signer = WeChatSigner()
        signer.add_data(TOKEN, ts, nonce)
        params = {"signature": signer.signature, "timestamp": ts, "nonce": nonce, "openid": openid}
        xml = xmltodict.unparse({"xml": {
            "ToUserName": ACCOUNT, "FromUserName": openid, "CreateTime": ts,
            "MsgType": "text", "Content": "余额", "MsgId": str(self._msg_id)}}, full_document=False)
        if self.mode == "plain":
            return Request(openid, params, xml.encode())
        sealed = xmltodict.parse(self.crypto.encrypt_message(xml, nonce, ts))["xml"]
        body = xmltodict.unparse({"xml": {"ToUserName": ACCOUNT, "Encrypt": sealed["Encrypt"]}},
                                 full_document=False)
        params |= {"encrypt_type": "aes", "msg_signature": sealed["MsgSignature"]}
        return Request(openid, params, body.encode())

    def reply_text(self, body: str) -> str:
        if self.mode != "plain":
            outer = xmltodict.parse(body)["xml"]
            body = self.crypto.decrypt_message(body, outer["MsgSignature"], outer["TimeStamp"], outer["Nonce"])
        return str(deserialize_reply(body).content)


async def ask(session: aiohttp.ClientSession, url: str, request: Request) -> tuple[float, str]:
    started = time.perf_counter()
    async with session.post(url, params=request.params, data=request.body) as response:
        body = await response.text()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:200]}")
    if body == "success":  # answered "later" (over the reply budget): not a balance reply
        raise RuntimeError("the bot answered 'success' instead of the balance")
    return (time.perf_counter() - started) * 1000, body


async def steady(session: aiohttp.ClientSession, url: str, queues: list[list[Request]],
                 seconds: float, think_s: float) -> list[float]:
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def tenant(requests: list[Request]) -> None:
        await asyncio.sleep(random.uniform(0, 2 * think_s))
        for request in requests:
            if time.perf_counter() >= stop_at:
                return
            ms, _ = await ask(session, url, request)
            latencies.append(ms)
            await asyncio.sleep(random.uniform(0, 2 * think_s))

    await asyncio.gather(*(tenant(q) for q in queues))
    return latencies


async def burst(session: aiohttp.ClientSession, url: str, rounds: list[list[Request]]) -> list[float]:
    latencies: list[float] = []
    for requests in rounds:
        results = await asyncio.gather(*(ask(session, url, r) for r in requests))
        latencies.extend(ms for ms, _ in results)
        await asyncio.sleep(0.2)
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)




async def pg_backends(db_name: str | None) -> list[int]:
    """Server processes of the bench database (to count PostgreSQL's CPU per reply)."""
    if db_name is None:
        return []
    engine = create_async_engine(ADMIN_URL)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": db_name})
            return [int(r[0]) for r in rows]
    finally:
        await engine.dispose()


async def measure(args: argparse.Namespace, http_port: int, server_pids: list[int], workers: int,
                  db_name: str | None) -> dict[str, object]:
    url = f"http://127.0.0.1:{http_port}/wechat"
    messages = Messages(args.mode)
    per_tenant = int(args.seconds / args.think_s) + 5
    queues = [[messages.build(openid_of(n)) for _ in range(per_tenant)] for n in range(args.tenants)]
    rounds = [[messages.build(openid_of(n)) for n in range(args.tenants)] for _ in range(args.bursts)]
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        _, sample = await ask(session, url, messages.build(openid_of(0)))
        reply = messages.reply_text(sample)
        want = expected_reply(args.reading_minutes) if args.port == "db" else "¥10.00"
        assert want in reply, (want, reply)
        await burst(session, url, rounds[:2])  # open the connections, fill the pools, warm up
        pg_pids = await pg_backends(db_name)
        started, client_cpu = time.perf_counter(), time.process_time()
        server_cpu = sum(cpu_s(p) for p in server_pids)
        pg_cpu = {p: cpu_s(p) for p in pg_pids}
        steady_ms = await steady(session, url, queues, args.seconds, args.think_s)
        elapsed = time.perf_counter() - started
        client_cpu = time.process_time() - client_cpu
        server_cpu = sum(cpu_s(p) for p in server_pids) - server_cpu
        pg_used = sum(cpu_s(p) - pg_cpu.get(p, 0.0) for p in await pg_backends(db_name))
        load = os.getloadavg()
        burst_ms = await burst(session, url, rounds[2:])
    n = len(steady_ms)
    return {
        "workers": workers,
        "reply_p50_ms": pct(steady_ms, 0.50),
        "reply_p99_ms": pct(steady_ms, 0.99),
        "reply_mean_ms": round(statistics.fmean(steady_ms), 2),
        "replies_per_s": round(n / elapsed, 1),
        "steady_replies": n,
        "server_cpu_ms_per_reply": round(server_cpu * 1000 / n, 3),
        "pg_cpu_ms_per_reply": round(pg_used * 1000 / n, 3),
        "server_cpu_pct": round(100 * server_cpu / elapsed, 1),
        "client_cpu_pct": round(100 * client_cpu / elapsed, 1),
        "burst_p50_ms": pct(burst_ms, 0.50),
        "burst_p99_ms": pct(burst_ms, 0.99),
        "burst_replies": len(burst_ms),
        "load_avg": [round(x, 2) for x in load],
    }


def run_config(args: argparse.Namespace, workers: int, db_url: str | None, db_name: str | None) -> dict[str, object]:
    """Start `workers` server processes on one port, measure, stop them."""
    from meterpay.cluster import free_port

    http_port = free_port()
    spawn = mp.get_context("spawn")
    server_args = {"tenants": args.tenants, "mode": args.mode, "port_kind": args.port, "db_url": db_url,
                   "seen": args.seen or ("redis" if args.port == "db" else "memory"),
                   "http_port": http_port, "redis_prefix": f"meterpay-bench-bot-{os.getpid()}-{workers}:"}
    servers, pipes = [], []
    for _ in range(workers):
        parent, child = spawn.Pipe()
        proc = spawn.Process(target=server_main, args=(server_args, child), daemon=True)
        proc.start()
        servers.append(proc)
        pipes.append(parent)
    try:
        for pipe in pipes:
            if not pipe.poll(60):
                raise SystemExit("bench server did not start")
            pipe.recv()
        figures = asyncio.run(measure(args, http_port, [p.pid for p in servers if p.pid], workers, db_name))
    finally:
        for pipe in pipes:
            pipe.send("stop")
        for proc in servers:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
    print(json.dumps(figures, ensure_ascii=False), file=sys.stderr)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="finish in about a minute")
    parser.add_argument("--tenants", type=int, default=500)
    parser.add_argument("--mode", choices=["plain", "safe"], default="safe")
    parser.add_argument("--port", choices=["db", "fake"], default="db",
                        help="db: PostgreSQL + Redis as deployed; fake: in-memory port and seen store")
    parser.add_argument("--seen", choices=["redis", "memory"], default=None,
                        help="dedup store (default: redis with --port db, memory with --port fake)")
    parser.add_argument("--workers", default="1,2", help="server processes per configuration, e.g. 1,2")
    parser.add_argument("--think-s", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--bursts", type=int, default=None)
    parser.add_argument("--reading-minutes", type=int, default=15)
    args = parser.parse_args()
    args.seconds = args.seconds or (10.0 if args.quick else 30.0)
    args.bursts = (args.bursts or (3 if args.quick else 10)) + 2
    configs = [int(w) for w in args.workers.split(",")]

    db_name = db_url = None
    if args.port == "db":
        db_name = f"meterpay_bench_bot_{os.getpid()}"
        db_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{db_name}"
        asyncio.run(admin(f'CREATE DATABASE "{db_name}"'))
    try:
        if db_url:
            t0 = time.perf_counter()
            asyncio.run(seed(db_url, args.tenants, args.reading_minutes))
            print(f"seeded {args.tenants} tenants in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        runs = [run_config(args, workers, db_url, db_name) for workers in configs]
    finally:
        if db_name:
            asyncio.run(admin(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
    last = runs[-1]
    print(json.dumps({"bench": "bot", "tenants": args.tenants, "mode": args.mode, "port": args.port,
                      "seen": args.seen or ("redis" if args.port == "db" else "memory"),
                      "think_s": args.think_s, "seconds": args.seconds, "cpus": os.cpu_count(),
                      "reply_p50_ms": last["reply_p50_ms"], "reply_p99_ms": last["reply_p99_ms"],
                      "workers": last["workers"], "runs": runs}, ensure_ascii=False))


if __name__ == "__main__":
    main()
