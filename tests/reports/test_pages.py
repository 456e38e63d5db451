"""The finance, report and batch pages answer, stay within the user's sites and roles, and export Excel."""

from __future__ import annotations

import io

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from admin import ADMIN, build_admin
from admin.reports_views import setup_reports_routes
from meterpay.web import init_app
from services.rollups import roll_up_all
from services.staff import add_user
from services.uow import in_transaction
from store.models import BatchItem, Order
from tests.admin.conftest import PASSWORD, World, _site, make_settings, sign_in


@pytest.fixture(autouse=True)
def _fast_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METERPAY_FAST_HASH", "1")


def make_app(url: str, **extra: str):  # type: ignore[no-untyped-def]
    """What admin.setup_admin does, with the report pages added to the panel before it is mounted."""
    app = init_app(make_settings(url, **extra))
    sub = build_admin(app)
    setup_reports_routes(sub)
    app.add_subapp("/admin/", sub)
    app[ADMIN] = sub
    return app


@pytest.fixture
async def world(sessions) -> World:  # type: ignore[no-untyped-def]
    async def build(s):  # type: ignore[no-untyped-def]
        w = World(await _site(s, "A"), await _site(s, "B"))
        for role in ("owner", "viewer", "cashier"):
            w.users[role] = (await add_user(s, role, PASSWORD, role, [w.a.site])).id
        return w
    w = await in_transaction(sessions, build)
    await roll_up_all(sessions)
    return w


async def test_every_report_page_answers_for_a_signed_in_user(aiohttp_client, db_url, world):
    client = await aiohttp_client(make_app(db_url))
    await sign_in(client, "viewer")
    site, meter = world.a.site, world.a.meter
    for path in (f"/admin/sites/{site}/finance", f"/admin/sites/{site}/finance?g=month&from=2020-01-01",
                 f"/admin/sites/{site}/finance/entries", f"/admin/sites/{site}/finance/cash",
                 f"/admin/sites/{site}/reports", f"/admin/sites/{site}/reports/monthly",
                 f"/admin/sites/{site}/reports/monthly?print=1", f"/admin/meters/{meter}/energy?g=month",
                 f"/admin/sites/{site}/batches"):
        resp = await client.get(path)
        assert resp.status == 200, (path, await resp.text())
    text = await (await client.get(f"/admin/sites/{site}/finance")).text()
    assert 'id="received-total">100.00' in text
    assert (await client.get(f"/admin/sites/{world.b.site}/finance")).status == 404
    assert (await client.get(f"/admin/meters/{world.b.meter}/energy")).status == 404
    assert (await client.get(f"/admin/sites/{site}/finance?from=yesterday")).status == 400


async def test_the_exports_are_real_workbooks(aiohttp_client, db_url, world):
    client = await aiohttp_client(make_app(db_url))
    await sign_in(client, "owner")
    for path in (f"/admin/sites/{world.a.site}/reports/monthly.xlsx", f"/admin/sites/{world.a.site}/finance.xlsx",
                 f"/admin/meters/{world.a.meter}/energy.xlsx?g=year"):
        resp = await client.get(path)
        assert resp.status == 200 and resp.content_type.endswith("spreadsheetml.sheet")
        assert load_workbook(io.BytesIO(await resp.read())).sheetnames


async def test_a_batch_runs_now_from_the_form_and_roles_are_enforced(aiohttp_client, db_url, world, sessions):
    client = await aiohttp_client(make_app(db_url))
    token = await sign_in(client, "viewer")
    form = {"_csrf": token, "action": "relay_off", "meter_ids": str(world.a.meter)}
    assert (await client.post(f"/admin/sites/{world.a.site}/batches", data=form)).status == 403
    client2 = await aiohttp_client(make_app(db_url))
    token = await sign_in(client2, "cashier")
    form = {"_csrf": token, "action": "recharge", "amount": "12.50", "state": "with_account"}
    resp = await client2.post(f"/admin/sites/{world.a.site}/batches", data=form, allow_redirects=False)
    assert resp.status == 302, await resp.text()
    page = await client2.get(resp.headers["Location"])
    assert "done <b>1</b>" in await page.text()
    progress = await (await client2.get(resp.headers["Location"] + "/progress.json")).json()
    assert progress["state"] == "done" and progress["counts"]["done"] == 1
    async with sessions() as s:
        amounts = sorted(o.amount_fen for o in await s.scalars(select(Order).where(Order.site_id == world.a.site)))
        assert amounts == [12_50, 100_00] and len(list(await s.scalars(select(BatchItem)))) == 1
    bad = {"_csrf": token, "action": "recharge", "amount": "12.5.0"}
    assert (await client2.post(f"/admin/sites/{world.a.site}/batches", data=bad)).status == 400
