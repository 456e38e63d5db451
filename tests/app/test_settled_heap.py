"""The long-running entry points freeze their start-up heap (meterpay.heap): full garbage
collections then walk only what came after start-up, instead of stalling requests for 70 ms."""

from __future__ import annotations

import asyncio
import gc

import aiohttp

import app
from meterpay import runner
from meterpay.cluster import free_port
from meterpay.settings import Settings


async def _serve_until_healthy(settings: Settings, settle_heap: bool) -> int:
    """Serve, wait for /healthz, and return the freeze count seen while serving."""
    stop = asyncio.Event()
    task = asyncio.create_task(runner.serve(settings, stop=stop, settle_heap=settle_heap))
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"http://127.0.0.1:{settings.port}/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.02)
            else:
                raise AssertionError("the app never answered /healthz")
        return gc.get_freeze_count()
    finally:
        stop.set()
        await task
        gc.unfreeze()


async def test_serving_with_a_settled_heap_freezes_what_start_up_left(tmp_path):
    settings = Settings.from_env({"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/h.db", "PORT": str(free_port()),
                                  "EMBEDDED_WORKER": "off"}, dotenv=None)
    gc.unfreeze()
    assert await _serve_until_healthy(settings, settle_heap=False) == 0  # what tests call: left alone
    assert await _serve_until_healthy(settings, settle_heap=True) > 10_000  # modules, mappers, routes...


def test_the_run_worker_and_poller_commands_ask_for_it(monkeypatch):
    asked: dict[str, object] = {}

    async def fake_serve(settings, simulate=False, stop=None, settle_heap=False):  # type: ignore[no-untyped-def]
        asked["run"] = settle_heap
    monkeypatch.setattr(runner, "serve", fake_serve)
    monkeypatch.setattr("jobs.worker.run_worker", lambda settings, settle_heap=False: asked.update(worker=settle_heap))
    monkeypatch.setattr("services.poller_process.run_poller",
                        lambda settings, settle_heap=False: asked.update(poller=settle_heap))
    for command in ("run", "worker", "poller"):
        app.main([command])
    assert asked == {"run": True, "worker": True, "poller": True}
