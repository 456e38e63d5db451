"""Headless Chromium: the finance page, the monthly report and its Excel download, a scheduled batch."""

from __future__ import annotations

import asyncio
import io
import os
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from openpyxl import load_workbook

from services import batches
from services.rollups import roll_up_all
from services.staff import add_user
from services.uow import in_transaction
from store.db import create_all, make_engine, make_sessionmaker
from tests.admin.conftest import PASSWORD, World, _site
from tests.reports.test_pages import make_app
from tests.conftest import need_service

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(autouse=True)
def _fast_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERPAY_FAST_HASH", "1")


@pytest.fixture
async def server(tmp_path, unused_tcp_port) -> AsyncIterator[tuple[str, World, object]]:
    if not os.path.exists(CHROMIUM):
        need_service("Chromium", "Debian chromium is not installed at /usr/bin/chromium")
    url = f"sqlite+aiosqlite:///{tmp_path}/browser.db"
    engine = make_engine(url)
    await create_all(engine)
    sessions = make_sessionmaker(engine)

    async def build(s):  # type: ignore[no-untyped-def]
        w = World(await _site(s, "A"), await _site(s, "B"))
        w.users["owner"] = (await add_user(s, "owner", PASSWORD, "owner", [w.a.site])).id
        return w

    world = await in_transaction(sessions, build)
    await roll_up_all(sessions)
    runner = web.AppRunner(make_app(url))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    yield f"http://127.0.0.1:{unused_tcp_port}", world, sessions
    await runner.cleanup()
    await engine.dispose()


@pytest.fixture
async def page(server):  # type: ignore[no-untyped-def]
    from playwright.async_api import async_playwright

    base = server[0]
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        ctx = await b.new_context(accept_downloads=True, locale="zh-CN")
        p = await ctx.new_page()
        await p.goto(f"{base}/admin/login")
        await p.fill("input[name=username]", "owner")
        await p.fill("input[name=password]", PASSWORD)
        await p.click("#login-form button[type=submit]")
        await p.wait_for_url(re.compile(r".*/admin/sites/\d+/rooms.*"))
        yield p
        await b.close()


async def test_the_finance_page_shows_income_by_channel(server, page):
    base, world, _ = server
    await page.goto(f"{base}/admin/sites/{world.a.site}/finance")
    assert await page.text_content("#received-total") == "100.00"
    assert await page.locator("#income-chart rect").count() >= 1
    await page.select_option("select[name=g]", "month")
    await page.click("#apply")
    await page.wait_for_url(re.compile(r".*g=month.*"))
    assert await page.text_content("#received-total") == "100.00"
    await page.click("#reports-nav >> text=日对账")
    assert await page.locator("#cash tr[data-provider=cash]").count() == 1


async def test_the_monthly_report_downloads_as_a_workbook(server, page):
    base, world, _ = server
    await page.goto(f"{base}/admin/sites/{world.a.site}/reports")
    await page.click("#open-monthly")
    await page.wait_for_selector("#report-title")
    async with page.expect_download() as info:
        await page.click("#export")
    download = await info.value
    path = await download.path()
    assert download.suggested_filename.endswith(".xlsx") and path is not None
    wb = load_workbook(io.BytesIO(open(path, "rb").read()))
    assert any(name.startswith("electricity") for name in wb.sheetnames)
    assert wb[wb.sheetnames[0]].cell(1, 5).value.startswith("总量")


async def test_a_scheduled_batch_waits_then_runs_and_the_page_follows_it(server, page):
    base, world, sessions = server
    await page.goto(f"{base}/admin/sites/{world.a.site}/batches")
    await page.select_option("#action", "alert_amounts")
    await page.fill("input[name=alert_L1]", "30")
    when = datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(minutes=5)
    await page.fill("#run_at", when.strftime("%Y-%m-%dT%H:%M"))
    page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await page.click("#batch-submit")
    await page.wait_for_url(re.compile(r".*/admin/batches/\d+$"))
    assert await page.text_content("#task-state") == "scheduled"
    task_id = int(page.url.rsplit("/", 1)[1])
    await batches.run_due_batches(sessions)  # not due yet
    assert await page.text_content("#task-state") == "scheduled"
    await batches.run_due_batches(sessions, datetime.now(ZoneInfo("UTC")) + timedelta(minutes=6))
    await page.wait_for_function("document.getElementById('task-state').textContent === 'done'", timeout=10_000)
    assert await page.text_content("#progress a[data-k=done] b") == "1"  # the meter with an account
    assert await page.text_content("#progress a[data-k=skipped] b") == "1"  # the vacant one
    await page.goto(f"{base}/admin/batches/{task_id}?state=skipped")
    assert await page.locator("#items tr.item-skipped").count() == 1
