"""The scale-out rig shared by bench/faults.py and bench/load.py: private servers, a seeded fleet, the processes.

`async with Trial(options) as t:` gives a running cluster (t.cluster), its database (t.sessions),
the Alipay sandbox that signs and sends notifies (t.ali), a provider to open orders (t.provider),
the simulated field's control URL (t.control) and helpers to pay and to chat with the bot.
PostgreSQL is a private cluster (initdb on a free port) when this machine allows it, so it may be
restarted; otherwise a database of the run's own on the shared server (TEST_DATABASE_URL).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from billing.money import Money  # noqa: E402
from meterpay.cluster import Cluster, PrivatePostgres, Servers  # noqa: E402
from meterpay.cluster_fleet import FleetSpec, TrialFleet, seed_fleet  # noqa: E402
from payments.alipay import AlipayConfig, AlipayProvider  # noqa: E402
from payments.sandbox import generate_keyset, start_alipay_sandbox  # noqa: E402
from services.payments import create_payment  # noqa: E402
from services.uow import in_transaction  # noqa: E402
from store.db import admin_sql, create_all, make_engine, make_sessionmaker  # noqa: E402

WECHAT_TOKEN = "trial-token"
WECHAT_APPID = "wxtrial000000000"
SHARED_PG = os.environ.get("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


@dataclass
class TrialOptions:
    fleet: FleetSpec = field(default_factory=FleetSpec)
    webs: int = 2
    workers: int = 2
    pollers: int = 2
    speed: float = 30.0
    poll_interval_s: float = 2.0
    mqtt_interval_s: float = 2.0
    private_pg: bool = True
    keep: bool = False
    env: dict[str, str] = field(default_factory=dict)


class Trial:
    """One scale-out trial; everything it starts is stopped on exit (its directory kept with --keep)."""

    def __init__(self, options: TrialOptions) -> None:
        self.o = options
        self.run = uuid.uuid4().hex[:8]
        self.root = Path(tempfile.mkdtemp(prefix=f"meterpay-trial-{self.run}-"))
        self.servers = Servers(self.root)
        self.pg_private = options.private_pg and PrivatePostgres.available()
        self.db_name = f"meterpay_trial_{self.run}"
        self.paid: dict[str, int] = {}  # out_trade_no -> account id, acknowledged by the platform
        self.unacked: set[str] = set()

    async def __aenter__(self) -> Trial:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__(*sys.exc_info())
            raise
        return self

    async def _start(self) -> None:
        if self.pg_private:
            self.servers.postgres = PrivatePostgres(Path(tempfile.mkdtemp(prefix=f"meterpay-pg-{self.run}-")))
            await asyncio.to_thread(self.servers.postgres.start)
            admin = self.servers.postgres.url
        else:
            admin = SHARED_PG
        await admin_sql(admin, f'CREATE DATABASE "{self.db_name}"')
        self.db_url = admin.rsplit("/", 1)[0] + f"/{self.db_name}"
        self._admin = admin
        await asyncio.to_thread(self.servers.start_redis)
        await asyncio.to_thread(self.servers.start_mosquitto)
        self.engine = make_engine(self.db_url)
        await create_all(self.engine)
        self.sessions = make_sessionmaker(self.engine)
        self.fleet: TrialFleet = await seed_fleet(self.sessions, self.o.fleet)
        keys = generate_keyset()
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self.ali = await start_alipay_sandbox(keys.alipay)
        self.provider = AlipayProvider(AlipayConfig(keys.alipay.app_id, keys.alipay.app_private_pem,
                                                    keys.alipay.alipay_public_pem, self.ali.url), self.http)
        env = keys.write_env(self.root, alipay_gateway=self.ali.url)
        env.pop("WECHATPAY_GATEWAY", None)
        env.update({"DATABASE_URL": self.db_url, "REDIS_URL": f"redis://127.0.0.1:{self.servers.redis_port}/0",
                    "ARQ_QUEUE_NAME": f"trial-{self.run}:queue", "MQTT_URL": f"mqtt://127.0.0.1:{self.servers.mqtt_port}",
                    "MQTT_PREFIX": f"trial-{self.run}",
                    "SECRET_KEY": secrets.token_urlsafe(32), "METERPAY_FAST_HASH": "1", "WECHAT_TOKEN": WECHAT_TOKEN, "WECHAT_APPID": WECHAT_APPID,
                    "POLL_INTERVAL_S": str(self.o.poll_interval_s), "POLLER_LEASE_TTL_S": "10", "POLLER_RENEW_S": "3",
                    "OUTBOX_ACK_TIMEOUT_S": "20", **self.o.env})
        self.cluster = Cluster(self.root, env, self.o.webs, self.o.workers, self.o.pollers)
        env["PUBLIC_URL"] = self.cluster.base_url
        self.control = await asyncio.to_thread(self.cluster.start_sim, self.o.speed, self.o.mqtt_interval_s)
        await asyncio.to_thread(self.cluster.start)

    async def __aexit__(self, exc_type: object = None, *exc: object) -> None:
        if exc_type is not None:
            self.o.keep = True  # a crashed run keeps its logs and database for a post-mortem
        cluster = getattr(self, "cluster", None)
        if cluster is not None:
            await asyncio.to_thread(cluster.stop)
        for closer in ("ali", "http"):
            obj = getattr(self, closer, None)
            if obj is not None:
                await (obj.stop() if closer == "ali" else obj.close())
        if getattr(self, "engine", None) is not None:
            await self.engine.dispose()
        if not self.pg_private and getattr(self, "_admin", None):
            await admin_sql(self._admin, f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        await asyncio.to_thread(self.servers.stop)
        if not self.o.keep:
            shutil.rmtree(self.root, ignore_errors=True)
            if self.servers.postgres is not None:
                shutil.rmtree(self.servers.postgres.root, ignore_errors=True)

    # -- load ------------------------------------------------------------------------------
    async def open_order(self, account_id: int, amount: Money) -> str | None:
        """An order opened the way the pay page does (committed, precreated at the sandbox); None if refused."""
        try:
            async with self.sessions() as s:
                order = await create_payment(s, account_id, amount, self.provider, "qr", uuid.uuid4().hex,
                                             notify_url=f"{self.cluster.base_url}/payments/alipay/notify")
            return order.out_trade_no
        except Exception:  # noqa: BLE001 - database restarting: the tenant simply tries again later
            return None

    async def deliver(self, out_trade_no: str, attempts: int = 40, **options: Any) -> bool:
        """Notify until the platform answers success, backing off as Alipay does (compressed in time)."""
        for attempt in range(attempts):
            try:
                sent = await (self.ali.pay(out_trade_no, **options) if attempt == 0 else self.ali.notify(out_trade_no))
            except asyncio.TimeoutError:
                sent = []  # no answer in time: a failed delivery, tried again like any other
            if any(d.status == 200 and d.body.strip() == b"success" for d in sent):
                return True
            await asyncio.sleep(min(0.5 * 2 ** attempt, 5.0))
        return False

    async def pay(self, account_id: int, amount: Money, **options: Any) -> str | None:
        no = await self.open_order(account_id, amount)
        if no is None:
            return None
        if await self.deliver(no, **options):
            self.paid[no] = account_id
        else:
            self.unacked.add(no)
            self.paid[no] = account_id  # paid at the provider all the same: it must be credited in the end
        return no

    async def bot_message(self, openid: str, text_: str, msg_id: int, redeliver: int = 0) -> tuple[int, float]:
        """A plain-mode WeChat text message (signed like WeChat), redelivered `redeliver` more times."""
        ts, nonce = str(int(time.time())), secrets.token_hex(5)
        signature = hashlib.sha1("".join(sorted([WECHAT_TOKEN, ts, nonce])).encode()).hexdigest()
        body = (f"<xml><ToUserName>gh_trial</ToUserName><FromUserName>{openid}</FromUserName><CreateTime>{ts}"
                f"</CreateTime><MsgType>text</MsgType><Content>{text_}</Content><MsgId>{msg_id}</MsgId></xml>").encode()
        params = {"signature": signature, "timestamp": ts, "nonce": nonce, "openid": openid}
        status, t0 = -1, time.perf_counter()
        for _ in range(1 + redeliver):
            try:
                async with self.http.post(f"{self.cluster.base_url}/wechat", params=params, data=body) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, asyncio.TimeoutError):
                status = -1
        return status, (time.perf_counter() - t0) * 1000

    async def field(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.http.request(method, f"{self.control}{path}", json=body) as resp:
            return await resp.json()




async def serve(options: TrialOptions) -> None:
    """Start the trial and keep it up until Ctrl-C (scripts/scale.sh)."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Trial(options) as t:
        from services.staff import add_user

        password = secrets.token_urlsafe(9)
        await in_transaction(t.sessions, lambda s: add_user(s, "admin", password, "owner", [t.fleet.site_id]))
        procs = {name: p.pid for name, p in t.cluster.procs.items()}
        print(f"meterpay scale-out trial {t.run}: {len(t.fleet.accounts)} meters, processes {procs}")
        print(f"  web (SO_REUSEPORT x{options.webs}): {t.cluster.base_url}/healthz   admin: {t.cluster.base_url}/admin/"
              f" (admin / {password})")
        print(f"  database: {t.db_url}\n  redis: {t.cluster.env['REDIS_URL']}   mqtt: {t.cluster.env['MQTT_URL']}")
        print(f"  simulated field: {t.control}/stats   Alipay sandbox: {t.ali.url}\n  logs: {t.root}")
        print("Ctrl-C stops everything.", flush=True)
        await stop.wait()


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Run the scale-out shape locally until Ctrl-C.")
    parser.add_argument("--webs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pollers", type=int, default=2)
    parser.add_argument("--gateways", type=int, default=12, help="wired gateways (one RS485 downlink each)")
    parser.add_argument("--meters-per-gateway", type=int, default=16)
    parser.add_argument("--mqtt-gateways", type=int, default=2)
    parser.add_argument("--poll-interval", type=float, default=60.0)
    parser.add_argument("--speed", type=float, default=10.0, help="consumption speed-up of the simulated meters")
    parser.add_argument("--shared-postgres", action="store_true", help="a database on TEST_DATABASE_URL's server")
    args = parser.parse_args()
    spec = FleetSpec(gateways=args.gateways, meters_per_gateway=args.meters_per_gateway,
                     mqtt_gateways=args.mqtt_gateways, mqtt_meters=args.meters_per_gateway, site_code="TRIAL")
    options = TrialOptions(fleet=spec, webs=args.webs, workers=args.workers, pollers=args.pollers, speed=args.speed,
                           poll_interval_s=args.poll_interval, mqtt_interval_s=args.poll_interval,
                           private_pg=not args.shared_postgres)
    import logging

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(options))


if __name__ == "__main__":
    main()
