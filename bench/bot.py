"""Bot reply latency: 500 concurrent tenants asking for their balance over real HTTP.

The /wechat app (over the in-memory fake port) runs in its own process on loopback, so the
client's own work does not queue in front of the server's. Messages are built and encrypted
exactly as WeChat does (wechatpy) before the clock starts.

Two figures:
- steady (reply_p50_ms / reply_p99_ms): every tenant keeps a connection open and asks again
  after reading its reply (think time uniform in 0..2x --think-s), for --seconds;
- burst (burst_p50_ms / burst_p99_ms): all tenants send at the same instant, --bursts times.

    python bench/bot.py            # full: 500 tenants, 30 s steady, 10 bursts
    python bench/bot.py --quick    # under a minute
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
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402
import xmltodict  # noqa: E402
from aiohttp import web  # noqa: E402
from wechatpy.crypto import WeChatCrypto  # noqa: E402
from wechatpy.replies import deserialize_reply  # noqa: E402
from wechatpy.utils import WeChatSigner  # noqa: E402

from billing.money import Money  # noqa: E402
from bot.fake_port import FakeAccount, FakeTenantPort  # noqa: E402
from bot.port import RoomView  # noqa: E402
from bot.seen import InMemorySeenStore  # noqa: E402
from bot.wechat import make_wechat_app  # noqa: E402

TOKEN = "bench-token"
APPID = "wxbench000000000"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
ACCOUNT = "gh_bench"


def openid_of(n: int) -> str:
    return f"o-bench-{n:05d}"


def seeded_port(tenants: int) -> FakeTenantPort:
    port = FakeTenantPort()
    for n in range(tenants):
        room = RoomView(f"acc-{n}", "S1", "阳光公寓", f"{n // 100 + 1}-{n % 100 + 1:02d}")
        port.add_account(FakeAccount(room=room, phone=f"138{n:08d}",
                                     balances={"electricity": Money(1000 + n)},
                                     daily_cost={"electricity": Money(250)}))
        port.bind(openid_of(n), room.account_id)
    return port


async def serve(tenants: int, mode: str, conn: Connection) -> None:
    async def send_custom(openid: str, text: str) -> None:
        return None

    aes_key = AES_KEY if mode != "plain" else None
    app = make_wechat_app(seeded_port(tenants), TOKEN, APPID, aes_key, send_custom,
                          InMemorySeenStore(), max_skew_s=3600)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    server = site._server
    assert server is not None and server.sockets  # type: ignore[union-attr]
    conn.send(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, conn.recv)  # the parent says when to stop
    await runner.cleanup()


def server_main(tenants: int, mode: str, conn: Connection) -> None:
    asyncio.run(serve(tenants, mode, conn))


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
        self._msg_id = 7_100_000_000_000_000_000

    def build(self, openid: str) -> Request:
        self._msg_id += 1
        ts, nonce = str(int(time.time())), secrets.token_hex(5)
        signer = WeChatSigner()
        signer.add_data(TOKEN, ts, nonce)
        params = {"signature": signer.signature, "timestamp": ts, "nonce": nonce,
                  "openid": openid}
        xml = xmltodict.unparse({"xml": {
            "ToUserName": ACCOUNT, "FromUserName": openid, "CreateTime": ts,
            "MsgType": "text", "Content": "余额", "MsgId": str(self._msg_id)}},
            full_document=False)
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
            body = self.crypto.decrypt_message(body, outer["MsgSignature"], outer["TimeStamp"],
                                               outer["Nonce"])
        return str(deserialize_reply(body).content)


async def ask(session: aiohttp.ClientSession, url: str, request: Request) -> tuple[float, str]:
    started = time.perf_counter()
    async with session.post(url, params=request.params, data=request.body) as response:
        body = await response.text()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:200]}")
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


async def burst(session: aiohttp.ClientSession, url: str,
                rounds: list[list[Request]]) -> list[float]:
    latencies: list[float] = []
    for requests in rounds:
        results = await asyncio.gather(*(ask(session, url, r) for r in requests))
        latencies.extend(ms for ms, _ in results)
        await asyncio.sleep(0.2)
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def cpu_s(pid: int) -> float:
    """User+system CPU seconds of a process (Linux /proc), to show where the time goes."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(args: argparse.Namespace, port: int, server_pid: int) -> dict[str, object]:
    url = f"http://127.0.0.1:{port}/wechat"
    messages = Messages(args.mode)
    per_tenant = int(args.seconds / args.think_s) + 5
    queues = [[messages.build(openid_of(n)) for _ in range(per_tenant)]
              for n in range(args.tenants)]
    rounds = [[messages.build(openid_of(n)) for n in range(args.tenants)]
              for _ in range(args.bursts)]
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        _, sample = await ask(session, url, messages.build(openid_of(0)))
        text = messages.reply_text(sample)
        assert "¥10.00" in text, text
        await burst(session, url, rounds[:1])  # open the connections and warm up
        started, server_cpu = time.perf_counter(), cpu_s(server_pid)
        steady_ms = await steady(session, url, queues, args.seconds, args.think_s)
        elapsed = time.perf_counter() - started
        server_cpu = cpu_s(server_pid) - server_cpu
        burst_ms = await burst(session, url, rounds[1:])
    return {
        "bench": "bot",
        "tenants": args.tenants,
        "mode": args.mode,
        "reply_p50_ms": pct(steady_ms, 0.50),
        "reply_p99_ms": pct(steady_ms, 0.99),
        "reply_mean_ms": round(statistics.fmean(steady_ms), 2),
        "replies_per_s": round(len(steady_ms) / elapsed, 1),
        "steady_replies": len(steady_ms),
        "think_s": args.think_s,
        "server_cpu_ms_per_reply": round(server_cpu * 1000 / len(steady_ms), 3),
        "burst_p50_ms": pct(burst_ms, 0.50),
        "burst_p99_ms": pct(burst_ms, 0.99),
        "burst_replies": len(burst_ms),
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="finish in under a minute")
    parser.add_argument("--tenants", type=int, default=500)
    parser.add_argument("--mode", choices=["plain", "safe"], default="safe")
    parser.add_argument("--think-s", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--bursts", type=int, default=None)
    args = parser.parse_args()
    args.seconds = args.seconds or (10.0 if args.quick else 30.0)
    args.bursts = (args.bursts or (4 if args.quick else 10)) + 1

    parent, child = mp.get_context("spawn").Pipe()
    server = mp.get_context("spawn").Process(target=server_main,
                                             args=(args.tenants, args.mode, child), daemon=True)
    server.start()
    try:
        if not parent.poll(30):
            raise SystemExit("bench server did not start")
        figures = asyncio.run(run(args, parent.recv(), server.pid))
    finally:
        parent.send("stop")
        server.join(10)
        if server.is_alive():
            server.terminate()
    print(json.dumps(figures, ensure_ascii=False))


if __name__ == "__main__":
    main()
