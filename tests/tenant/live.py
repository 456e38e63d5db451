"""A live tenant server in its own thread and event loop, for clients that block (Schemathesis)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web

from services.uow import in_transaction
from store.db import create_all, make_engine, make_sessionmaker
from store.models import TenantLink
from tests.tenant.conftest import LOGIN_CODES, build_app
from tests.tenant.fakes import FakeStarter, fake_wechat_app
from tests.tenant.seed import Clock, Seeded, seed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _start(app: web.Application, port: int = 0) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@contextmanager
def live_tenant_server(db_path: Path, bind_openid: str, pay_after_s: float = 0.0) -> Iterator[tuple[str, Seeded]]:
    """Seed a SQLite database, bind `bind_openid` to the main account, serve; yields (base URL, seeded)."""
    loop = asyncio.new_event_loop()
    ready: dict[str, object] = {}

    async def up() -> None:
        engine = make_engine(f"sqlite+aiosqlite:///{db_path}")
        await create_all(engine)
        sessions = make_sessionmaker(engine)
        seeded = await seed(sessions)
        await in_transaction(sessions, lambda s: _link(s, bind_openid, seeded.account_id))
        wechat, wechat_url = await _start(fake_wechat_app(LOGIN_CODES))
        starter = FakeStarter(sessions, pay_after_s)
        port = _free_port()  # the public URL (Alipay's return_url) must be known before the app is built
        app, url = await _start(build_app(sessions, seeded, starter, wechat_url, clock=Clock(),
                                          public_url=f"http://127.0.0.1:{port}"), port)
        ready.update(engine=engine, runners=(app, wechat), url=url, seeded=seeded, starter=starter)

    async def down() -> None:
        await ready["starter"].settle()  # type: ignore[attr-defined]
        for runner in ready["runners"]:  # type: ignore[attr-defined]
            await runner.cleanup()
        await ready["engine"].dispose()  # type: ignore[attr-defined]

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(up(), loop).result(timeout=30)
        yield str(ready["url"]), ready["seeded"]  # type: ignore[misc]
    finally:
        if ready:
            asyncio.run_coroutine_threadsafe(down(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


async def _link(s, openid: str, account_id: int) -> None:  # type: ignore[no-untyped-def]
    s.add(TenantLink(openid=openid, account_id=account_id, via="staff"))
