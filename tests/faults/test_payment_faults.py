"""Paid orders reach meter-side meters exactly once through a killed poller and a stopped Redis.

Who applies credit to a meter: the notify commits the credit, a `push_credit` meter command and
the receipt's outbox row in one transaction; the command is carried out by the MeterRuntime
executor inside `python app.py poller` (it claims meter_commands rows from the database; a command
has no outbox row), while the arq worker sends the receipt. So fault A kills the poller and fault B
stops Redis under a running `python app.py worker` and poller, all real subprocesses.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy import func, select, update

from billing.money import Money
from devices.sim import SimulatorHandle
from devices.sim.bus import Faults
from services import ledger, meter_credit
from services.meter_runtime import load_fleet
from services.meter_sim import fleet_simulator
from services.uow import in_transaction
from store.models import Gateway, LedgerTransaction, Meter, MeterCommand, Outbox
from tests.conftest import need_service
from tests.integration.conftest import Site, build_site, eventually, reading_count
from tests.payflow.conftest import Shop, keys, shop  # noqa: F401 - fixtures used by the tests below

ROOT = Path(__file__).resolve().parents[2]
AMOUNT = Money.yuan("30.00")
POLLER_ENV = {"POLLER_LEASE_TTL_S": "2", "POLLER_RENEW_S": "0.5", "POLL_INTERVAL_S": "0.5", "POLL_TIMEOUT_S": "5",
              "POLLER_COMMAND_CLAIM_S": "2", "POLLER_COMMAND_INTERVAL_S": "0.1", "POLLER_MQTT": "off"}

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Processes:
    """Subprocesses of this test (app.py roles, redis-server), logs in tmp_path, all ended at teardown."""

    def __init__(self, tmp_path: Path, db_url: str) -> None:
        self.tmp_path, self.db_url = tmp_path, db_url
        self.running: list[subprocess.Popen[bytes]] = []
        self.restarts = 0
        self._supervisors: list[asyncio.Task[None]] = []

    def start(self, argv: list[str], name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        base = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "MQTT_URL", "DATABASE_URL")}
        log = open(self.tmp_path / f"{name}-{len(self.running)}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**base, "DATABASE_URL": self.db_url, "PYTHONUNBUFFERED": "1", **(env or {})})
        log.close()
        self.running.append(proc)
        return proc

    def app(self, role: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self.start([sys.executable, "app.py", role], role, env)

    def redis(self, port: int) -> subprocess.Popen[bytes]:
        binary = "redis-server" if Path("/usr/bin/redis-server").exists() else "/usr/sbin/redis-server"
        return self.start([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                          "redis")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.tmp_path.glob("*.log")))

    async def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)

    def supervise(self, role: str, env: dict[str, str] | None = None) -> None:
        """Run an app.py role restarted whenever it exits, as systemd `Restart=always` would."""
        async def keep() -> None:
            while True:
                proc = self.app(role, env)
                await asyncio.to_thread(proc.wait)
                self.restarts += 1
                await asyncio.sleep(0.5)  # RestartSec

        self._supervisors.append(asyncio.create_task(keep(), name=f"supervise {role}"))

    async def stop_all(self) -> None:
        for task in self._supervisors:
            task.cancel()
        await asyncio.gather(*self._supervisors, return_exceptions=True)
        for proc in reversed(self.running):
            await self.stop(proc)


@pytest.fixture
async def procs(tmp_path, db_url, sessions) -> AsyncIterator[Processes]:
    if not (Path("/usr/bin/redis-server").exists() or Path("/usr/sbin/redis-server").exists()):
        need_service("redis-server", "the payment fault tests start their own")
    out = Processes(tmp_path, db_url)
    try:
        yield out
    finally:
        await out.stop_all()


@asynccontextmanager
async def field(sessions, site: Site) -> AsyncIterator[tuple[SimulatorHandle, Faults]]:
    """The site's meters simulated on loopback, the gateway row pointed at them (what a poller reads)."""
    async with sessions() as s:
        fleet = await load_fleet(s)
    faults = Faults()
    sim = await fleet_simulator(fleet, speed=1.0, faults={site.gateway: faults})
    bus = sim.bus(site.gateway, 1)

    async def point(s) -> None:
        await s.execute(update(Gateway).where(Gateway.code == site.gateway).values(host=bus.host, port=bus.tcp_port))

    await in_transaction(sessions, point)
    try:
        yield sim, faults
    finally:
        await sim.stop()


async def redis_up(port: int) -> bool:
    client = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        return bool(await client.ping())
    except OSError:
        return False
    except aioredis.RedisError:
        return False
    finally:
        await client.aclose()


async def wait(check: Callable[[], object], procs: Processes, timeout_s: float, what: str) -> None:
    """`eventually`, failing with the subprocess logs when the condition never comes."""
    try:
        await eventually(check, timeout_s=timeout_s, every_s=0.05)  # type: ignore[arg-type]
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}\n{procs.logs()}")


async def commands(sessions) -> list[MeterCommand]:
    async with sessions() as s:
        return list(await s.scalars(select(MeterCommand).where(MeterCommand.kind == "push_credit")
                                    .order_by(MeterCommand.id)))


async def pay(shop: Shop, site: Site, address: str) -> str:
    """Open an Alipay order for the meter's account and have the sandbox pay it (its notify hits our route)."""
    order = await shop.open(site.accounts[address], AMOUNT, "alipay", "qr", meter_id=site.meters[address])
    deliveries = await shop.alipay.pay(order.out_trade_no)
    for _ in range(5):  # a loaded box may miss the 4.5 s answer deadline: Alipay then notifies again
        if [(d.status, d.body) for d in deliveries] == [(200, b"success")]:
            return order.out_trade_no
        deliveries = await shop.alipay.notify(order.out_trade_no)
    pytest.fail(f"notify for {order.out_trade_no} never acknowledged: {deliveries}")


async def assert_one_purchase_each(sessions, sim: SimulatorHandle, site: Site, paid: dict[str, str]) -> None:
    """The meter took purchase 1 once, the database mirrors it, the ledger has one credit and one settlement."""
    for address, out_trade_no in paid.items():
        meter = sim.meter(site.gateway, 1, address)
        assert meter.credits_applied == [(1, AMOUNT.fen)] and meter.purchase_count == 1
        async with sessions() as s:
            row = await s.get(Meter, site.meters[address])
            assert row is not None and row.purchase_count == 1
            assert await s.scalar(select(func.count()).select_from(LedgerTransaction).where(
                LedgerTransaction.key == f"recharge:{out_trade_no}")) == 1
            assert await ledger.balance_of(s, site.site_id, meter_credit.pending_code(row.id)) == Money(0)
    async with sessions() as s:
        settled = await s.scalar(select(func.count()).select_from(LedgerTransaction)
                                 .where(LedgerTransaction.kind == "meter_credit"))
        assert settled == len(paid)
        assert (await ledger.verify(s)).ok
    assert {c.state for c in await commands(sessions)} == {"confirmed"}
    assert len(await commands(sessions)) == len(paid)


async def test_a_poller_killed_while_a_paid_credit_is_on_the_wire_leaves_exactly_one_purchase_on_the_meter(
        sessions, shop, procs):
    site = await build_site(sessions, {"7": {"billing_side": "meter", "meter_balance_fen": 500}}, credit_fen=0,
                            code=f"F{uuid.uuid4().hex[:5]}", gateway_code=f"gw-{uuid.uuid4().hex[:6]}")
    async with field(sessions, site) as (sim, faults):
        meter = sim.meter(site.gateway, 1, "7")
        poller = procs.app("poller", POLLER_ENV)
        await wait(lambda: reading_count(sessions, site.meters["7"]), procs, 20, "the first poller to read the meter")
        faults.latency_s = 1.5  # every reply now comes late: the push is applied, its reply is not back yet

        paid = {"7": await pay(shop, site, "7")}

        await wait(lambda: _true(bool(meter.credits_applied)), procs, 20, "the push to reach the meter")
        await procs.stop(poller, signal.SIGKILL)
        assert [c.state for c in await commands(sessions)] == ["sent"]  # killed between push and confirmation
        faults.latency_s = 0.0

        procs.app("poller", POLLER_ENV)
        await wait(lambda: _all_confirmed(sessions), procs, 40, "the restarted poller to confirm the credit")
        await assert_one_purchase_each(sessions, sim, site, paid)
        assert meter.writes == 1  # the new poller read the counter back and did not push again


async def test_payments_arriving_while_redis_is_down_are_credited_at_once_and_each_reaches_its_meter_once(
        sessions, shop, procs):
    port = free_port()
    redis = procs.redis(port)
    await wait(lambda: redis_up(port), procs, 10, "redis-server")
    addresses = ("1", "2", "3", "4")
    site = await build_site(sessions, {a: {"billing_side": "meter", "meter_balance_fen": 500} for a in addresses},
                            credit_fen=0, code=f"R{uuid.uuid4().hex[:5]}", gateway_code=f"gw-{uuid.uuid4().hex[:6]}")
    worker_env = {"REDIS_URL": f"redis://127.0.0.1:{port}/0", "ARQ_QUEUE_NAME": f"faults:{uuid.uuid4().hex[:8]}",
                  "OUTBOX_ACK_TIMEOUT_S": "5"}
    async with field(sessions, site) as (sim, _faults):
        procs.supervise("worker", worker_env)  # arq's worker exits when Redis goes: deployments restart it
        procs.app("poller", POLLER_ENV)
        paid = {"1": await pay(shop, site, "1")}  # with Redis up: relayed and acknowledged
        await wait(lambda: _outbox_done(sessions), procs, 30, "the worker to acknowledge the first payment's jobs")

        await procs.stop(redis)
        assert not await redis_up(port)
        for address in addresses[1:]:
            paid[address] = await pay(shop, site, address)
            assert await shop.credits(paid[address]) == 1  # the tenant is credited at once, Redis or not
        await wait(lambda: _all_confirmed(sessions), procs, 30, "the poller to deliver every credit")
        async with sessions() as s:  # the meter commands went from the database; the receipts still wait
            waiting = set(await s.scalars(select(Outbox.key).where(Outbox.done_at.is_(None))))
            topics = set(await s.scalars(select(Outbox.topic)))
        assert {f"payment_received:recharge:{paid[a]}" for a in addresses[1:]} <= waiting
        assert topics == {"notify"}  # a command has no outbox row

        procs.redis(port)
        await wait(lambda: redis_up(port), procs, 10, "redis-server to come back")
        await wait(lambda: _outbox_done(sessions), procs, 40, "the worker to relay and acknowledge every job")
        await assert_one_purchase_each(sessions, sim, site, paid)
        assert all(sim.meter(site.gateway, 1, a).writes == 1 for a in addresses)


async def _true(value: bool) -> bool:
    return value


async def _all_confirmed(sessions) -> bool:
    rows = await commands(sessions)
    return bool(rows) and all(c.state == "confirmed" for c in rows)


async def _outbox_done(sessions) -> bool:
    async with sessions() as s:
        left = await s.scalar(select(func.count()).select_from(Outbox).where(Outbox.done_at.is_(None)))
        total = await s.scalar(select(func.count()).select_from(Outbox))
    return bool(total) and left == 0
