"""A real headless Chromium drives the panel: sign in, monitor, room, recharge, relay, audit; a viewer is refused.

The app runs with the meter simulator and the command runtime wired in as the embedded demo
wires them (meterpay.embedded.simulator_ctx): simulated meters answer real Modbus RTU-over-TCP
on loopback sockets, so a relay switch clicked in the page is only "confirmed" once the
executor has written the relay and read it back from the simulated meter.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from sqlalchemy import select

from billing.money import Money
from devices.driver import make_driver
from devices.profiles import PROFILES
from meterpay.embedded import SIMULATOR, simulator_ctx
from services.uow import in_transaction
from services.wallets import recharge
from store.db import create_all, make_engine, make_sessionmaker
from store.models import Gateway, Meter
from tests.admin.conftest import PASSWORD, World, _site, make_app, make_settings
from tests.conftest import need_service

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"


@pytest.fixture
async def server(tmp_path, unused_tcp_port) -> AsyncIterator[tuple[str, World, str, web.Application]]:
    """The real app on a real port, over a fresh SQLite file with two sites and one user per role,
    its meters simulated on loopback and driven by the command runtime (consumption frozen: SIM_SPEED 0,
    so balances move only by the payments the test makes)."""
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
    app = make_app(make_settings(url, ADMIN_STREAM_INTERVAL_S="0.5", SIM_SPEED="0"))
    app.cleanup_ctx.append(simulator_ctx)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    yield f"http://127.0.0.1:{unused_tcp_port}", world, url, app
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
    """Click the relay button, give the reason, confirm; then wait until the page shows the command
    confirmed (the page re-reads itself while a command is open)."""
    await page.click(f"#relay-{action}-{meter_id}")
    await page.fill("#relay-form input[name=reason]", reason)
    await page.click("#relay-confirm")
    await page.wait_for_selector("#flash")
    await page.wait_for_selector("#commands .cmd.cmd-confirmed >> nth=0", timeout=30_000)
    await page.wait_for_function(
        "() => !document.querySelector('#commands .cmd-queued, #commands .cmd-sent')", timeout=30_000)


async def _relay_of_simulated_meter(app: web.Application, url: str, meter_id: int) -> bool:
    """The relay as the simulated meter itself reports it, over its own socket (closed = power on)."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as s:
            gateway, address = (await s.execute(select(Gateway.code, Meter.address).join(
                Meter, Meter.gateway_id == Gateway.id).where(Meter.id == meter_id))).one()
    finally:
        await engine.dispose()
    bus = next(b for b in app[SIMULATOR].buses if b.gateway == gateway and address in b.meters)
    driver = make_driver(bus.endpoint, {address: PROFILES[bus.meters[address].profile_key]})
    try:
        return await driver.read_relay(address)
    finally:
        await driver.close()


async def test_an_owner_recharges_a_room_and_switches_its_relay(server, browser):
    base, world, url, app = server
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

    assert await _relay_of_simulated_meter(app, url, world.a.meter) is True
    await _switch(page, world.a.meter, "off", "欠费停电测试")
    # confirmed by the executor's read-back, shown in the page without a reload, and true on the meter
    assert (await page.text_content(f"#relay-{world.a.meter}")).strip() == "拉闸"
    assert "已确认" in await page.text_content("#commands .cmd >> nth=0")
    assert await _relay_of_simulated_meter(app, url, world.a.meter) is False
    await page.screenshot(path=str(SHOTS / "room-relay-off.png"), full_page=True)

    await _switch(page, world.a.meter, "on", "恢复供电测试")
    assert (await page.text_content(f"#relay-{world.a.meter}")).strip() == "合闸"
    assert await _relay_of_simulated_meter(app, url, world.a.meter) is True
    kinds_states = [(await row.locator("td >> nth=2").text_content(), await row.locator(".cmd-state").text_content())
                    for row in await page.locator("#commands .cmd").all()]
    assert kinds_states == [("relay_close", "已确认"), ("relay_open", "已确认")]
    await page.screenshot(path=str(SHOTS / "room-after-actions.png"), full_page=True)

    await page.goto(f"{base}/admin/audit")
    actions = await page.locator("#audit .action").all_text_contents()
    # the staff actions, and the command runtime's own entries when the meter confirmed each switch
    staff_actions = [a for a in actions if not a.startswith("meter_command.")]
    assert staff_actions[:3] == ["meter.relay_close", "meter.relay_open", "account.recharge"]
    assert actions.count("meter_command.confirmed") == 2
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
    base, world, url, app = server
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
    assert await _relay_of_simulated_meter(app, url, world.a.meter) is True  # the meter was never told anything
    await page.goto(f"{base}/admin/rooms/{world.b.room}")
    assert "not found" in (await page.content()).lower()
