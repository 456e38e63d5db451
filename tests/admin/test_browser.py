"""A real headless Chromium drives the panel: sign in, monitor, room, recharge, relay, audit; a viewer is refused."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from billing.money import Money
from services.uow import in_transaction
from services.wallets import recharge
from store.db import create_all, make_engine, make_sessionmaker
from tests.admin.conftest import PASSWORD, World, _site, make_app, make_settings
from tests.conftest import need_service

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"


@pytest.fixture
async def server(tmp_path, unused_tcp_port) -> AsyncIterator[tuple[str, World, str]]:
    """The real app on a real port, over a fresh SQLite file with two sites and one user per role."""
    if not os.path.exists(CHROMIUM):
        need_service("Chromium", "Debian chromium is not installed at /usr/bin/chromium")
    from services.staff import add_user

    url = f"sqlite+aiosqlite:///{tmp_path}/browser.db"
    engine = make_engine(url)
    await create_all(engine)

    async def build(s):  # type: ignore[no-untyped-def]
        w = World(await _site(s, "A"), await _site(s, "B"))
        for role in ("owner", "viewer"):
            w.users[role] = (await add_user(s, role, PASSWORD, role, [w.a.site])).id
        return w

    world = await in_transaction(make_sessionmaker(engine), build)
    await engine.dispose()
    runner = web.AppRunner(make_app(make_settings(url, ADMIN_STREAM_INTERVAL_S="0.5")))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    yield f"http://127.0.0.1:{unused_tcp_port}", world, url
    await runner.cleanup()


@pytest.fixture
async def browser():  # type: ignore[no-untyped-def]
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        await b.close()


async def _sign_in(page, base: str, username: str) -> None:  # type: ignore[no-untyped-def]
    await page.goto(f"{base}/admin/login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_url(re.compile(r".*/admin/sites/\d+/rooms.*"))


async def _pay_elsewhere(url: str, account_id: int, amount: Money) -> None:
    engine = make_engine(url)
    try:
        await in_transaction(make_sessionmaker(engine),
                             lambda s: recharge(s, account_id, amount, f"elsewhere-{uuid.uuid4().hex}"))
    finally:
        await engine.dispose()


async def _switch(page, meter_id: int, action: str, reason: str) -> None:  # type: ignore[no-untyped-def]
    await page.click(f"#relay-{action}-{meter_id}")
    await page.fill("#relay-form input[name=reason]", reason)
    await page.click("#relay-confirm")
    await page.wait_for_selector("#flash")


async def test_an_owner_recharges_a_room_and_switches_its_relay(server, browser):
    base, world, url = server
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await _sign_in(page, base, "owner")
    cell = f"#room-{world.a.room}"
    await page.wait_for_selector(cell)
    await _pay_elsewhere(url, world.a.account, Money(1_00))  # e.g. a tenant paying by WeChat meanwhile
    await page.wait_for_function("sel => document.querySelector(sel + ' .bal').textContent === '101.00'", arg=cell)
    assert "正常" in await page.text_content(cell)  # the live update keeps the Chinese labels
    await page.screenshot(path=str(SHOTS / "monitor.png"), full_page=True)

    await page.click(f"#room-{world.a.room}")
    await page.wait_for_selector("#room-title")
    assert (await page.text_content("#balance")).strip() == "101.00"
    await page.screenshot(path=str(SHOTS / "room.png"), full_page=True)

    await page.fill("#recharge-form input[name=amount]", "50.00")
    await page.dblclick("#recharge-btn")  # a double click still credits once
    await page.wait_for_selector("#flash")
    assert (await page.text_content("#balance")).strip() == "151.00"
    await page.click("#receipt-link")
    await page.wait_for_selector("#receipt")
    assert "50.00" in await page.text_content("#receipt")
    await page.screenshot(path=str(SHOTS / "receipt.png"), full_page=True)
    await page.go_back()

    await _switch(page, world.a.meter, "off", "欠费停电测试")
    await _switch(page, world.a.meter, "on", "恢复供电测试")
    states = await page.locator("#commands .cmd").all_text_contents()
    # The device layer confirms commands by read-back; until it runs, the panel shows them queued.
    assert len(states) == 2 and all("排队中" in s for s in states)
    await page.screenshot(path=str(SHOTS / "room-after-actions.png"), full_page=True)

    await page.goto(f"{base}/admin/audit")
    actions = await page.locator("#audit .action").all_text_contents()
    assert actions[:3] == ["meter.relay_close", "meter.relay_open", "account.recharge"]
    assert actions.count("account.recharge") == 1
    await page.screenshot(path=str(SHOTS / "audit.png"), full_page=True)
    for name, path in (("orders", f"/admin/sites/{world.a.site}/orders"), ("tariffs", f"/admin/sites/{world.a.site}/tariffs"),
                       ("users", "/admin/users")):
        await page.goto(base + path)
        await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    await page.click("#lang-switch")
    await page.goto(f"{base}/admin/sites/{world.a.site}/rooms")
    assert "Room monitor" in await page.text_content("h1")
    await page.screenshot(path=str(SHOTS / "monitor-en.png"), full_page=True)


async def test_a_viewer_sees_no_action_buttons_and_a_forged_post_is_refused(server, browser):
    base, world, _ = server
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await _sign_in(page, base, "viewer")
    await page.goto(f"{base}/admin/rooms/{world.a.room}")
    await page.wait_for_selector("#room-title")
    assert await page.locator("#recharge-form, #refund-form, a[id^=relay-], select[name=tariff_id]").count() == 0
    await page.screenshot(path=str(SHOTS / "room-viewer.png"), full_page=True)
    statuses = await page.evaluate("""async ([account, meter]) => {
        const csrf = document.querySelector("input[name=_csrf]").value;
        const post = (url, body) => fetch(url, {method: "POST", body: new URLSearchParams({_csrf: csrf, ...body}),
                                               redirect: "manual"}).then(r => r.status);
        return [await post(`/admin/accounts/${account}/recharge`, {amount: "10.00", idem: "abc123"}),
                await post(`/admin/meters/${meter}/relay`, {action: "off", reason: "x", idem: "abc124", confirm: "yes"})];
    }""", [world.a.account, world.a.meter])
    assert statuses == [403, 403]
    await page.goto(f"{base}/admin/rooms/{world.b.room}")
    assert "not found" in (await page.content()).lower()
