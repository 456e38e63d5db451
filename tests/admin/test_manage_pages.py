"""The delivery log, fee items, apportionment groups, month-end by hand, bills and arrears pages."""

from __future__ import annotations

import io
from datetime import date, datetime, timedelta, timezone

from openpyxl import load_workbook
from sqlalchemy import func, select

from services.uow import in_transaction
from services.wallets import balance
from store.models import ApportionGroup, ApportionMember, AuditEntry, Bill, Delivery, FeeItem, Meter
from tests.admin.conftest import sign_in

THIS_MONTH = date.today().strftime("%Y-%m")


async def _count(sessions, model, *where) -> int:  # type: ignore[no-untyped-def]
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def _deliveries(sessions, world) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(timezone.utc)

    async def add(s):  # type: ignore[no-untyped-def]
        for site, key, channel, status, error, at in (
                (world.a.site, "k1", "sms", "sent", None, now),
                (world.a.site, "k2", "email", "failed", "550 mailbox unavailable", now),
                (world.a.site, "k3", "voice", "queued", None, now - timedelta(days=10)),
                (world.b.site, "k4", "sms", "failed", "site-b-secret-error", now)):
            s.add(Delivery(message_key=key, channel=channel, kind="low_balance", site_id=site,
                           recipient="tenant:1", to=f"to-{key}", local_day=at.date().isoformat(), status=status,
                           attempts=3 if status == "failed" else 1, error=error, created_at=at))
    await in_transaction(sessions, add)


async def test_the_delivery_log_lists_the_sites_messages_and_filters_them(client, world, sessions):
    await _deliveries(sessions, world)
    await sign_in(client, "viewer")
    url = f"/admin/sites/{world.a.site}/deliveries"
    page = await (await client.get(url)).text()
    assert all(f"to-{k}" in page for k in ("k1", "k2", "k3")) and "to-k4" not in page
    assert "550 mailbox unavailable" in page and "site-b-secret-error" not in page
    failed = await (await client.get(url, params={"status": "failed"})).text()
    assert "to-k2" in failed and "to-k1" not in failed and "to-k3" not in failed
    sms = await (await client.get(url, params={"channel": "sms"})).text()
    assert "to-k1" in sms and "to-k2" not in sms
    recent = await (await client.get(url, params={"from": (date.today() - timedelta(days=2)).isoformat()})).text()
    assert "to-k1" in recent and "to-k3" not in recent
    assert (await client.get(f"/admin/sites/{world.b.site}/deliveries")).status == 404


async def _fee(client, token, site, **extra):  # type: ignore[no-untyped-def]
    form = {"_csrf": token, "code": "rent", "name": "房租", "basis": "fixed", "amount_yuan": "300.00",
            "recurrence": "monthly", "day_of_period": "1", "starts_on": "2020-01-01", "collection": "bill",
            "scope": "site"} | extra
    return await client.post(f"/admin/sites/{site}/fees", data=form, allow_redirects=False)


async def test_an_operator_creates_fee_items_and_a_viewer_may_not(client, world, sessions):
    token = await sign_in(client, "operator")
    assert (await _fee(client, token, world.a.site)).status == 302
    per_m2 = await _fee(client, token, world.a.site, code="prop", name="物业费", basis="per_m2", rate_per_m2="2.5",
                        collection="deduct", scope="rooms", room_ids=f"{world.a.room}")
    assert per_m2.status == 302
    assert (await _fee(client, token, world.a.site)).status == 409  # same code again
    assert (await _fee(client, token, world.a.site, code="x", amount_yuan="-1")).status == 400
    other_room = await _fee(client, token, world.a.site, code="y", scope="rooms", room_ids=str(world.b.room))
    assert other_room.status == 404
    assert (await _fee(client, token, world.b.site, code="z")).status == 404
    async with sessions() as s:
        items = {f.code: f for f in await s.scalars(select(FeeItem))}
    assert set(items) == {"rent", "prop"}
    assert (items["rent"].amount_fen, items["rent"].collection) == (300_00, "bill")
    assert (str(items["prop"].rate_per_m2), items["prop"].room_ids) == ("2.5000", [world.a.room])
    assert await _count(sessions, AuditEntry, AuditEntry.action == "fee_item.create") == 2
    page = await (await client.get(f"/admin/sites/{world.a.site}/fees")).text()
    assert "房租" in page and "300.00" in page
    off = await client.post(f"/admin/fees/{items['rent'].id}/active", data={"_csrf": token, "active": "0"},
                            allow_redirects=False)
    assert off.status == 302
    assert await _count(sessions, FeeItem, FeeItem.active.is_(False)) == 1

    viewer = await sign_in(client, "viewer")
    assert (await _fee(client, viewer, world.a.site, code="v")).status == 403
    assert (await client.post(f"/admin/fees/{items['rent'].id}/active", data={"_csrf": viewer, "active": "1"},
                              allow_redirects=False)).status == 403
    assert "fee-create" not in await (await client.get(f"/admin/sites/{world.a.site}/fees")).text()


async def test_a_fee_item_of_another_site_is_not_found(client, world, sessions):
    token = await sign_in(client, "owner_b")
    assert (await _fee(client, token, world.b.site)).status == 302
    async with sessions() as s:
        fee_id = await s.scalar(select(FeeItem.id))
    token = await sign_in(client, "owner")
    resp = await client.post(f"/admin/fees/{fee_id}/active", data={"_csrf": token, "active": "0"},
                             allow_redirects=False)
    assert resp.status == 404
    assert await _count(sessions, FeeItem, FeeItem.active.is_(True)) == 1


async def _master(sessions, world) -> int:  # type: ignore[no-untyped-def]
    async def run(s):  # type: ignore[no-untyped-def]
        m = Meter(site_id=world.a.site, address="M1", utility="electricity", model="acrel-ddsy1352",
                  protocol="modbus_rtu_tcp", is_master=True, tariff_id=world.a.tariff)
        s.add(m)
        await s.flush()
        return m.id
    return await in_transaction(sessions, run)


async def test_an_apportionment_group_is_made_of_this_sites_master_and_rooms(client, world, sessions):
    master = await _master(sessions, world)
    token = await sign_in(client, "operator")
    url = f"/admin/sites/{world.a.site}/apportion"
    form = {"_csrf": token, "code": "lift", "name": "电梯", "master_meter_id": str(master), "method": "ratio",
            "collection": "deduct", "members": f"room:{world.a.room}=0.7\nroom:{world.a.vacant_room}=0.3"}
    assert (await client.post(url, data=form, allow_redirects=False)).status == 302
    bad = await client.post(url, data=form | {"code": "x", "members": "flat 12"}, allow_redirects=False)
    assert bad.status == 400 and "member line 1" in await bad.text()
    foreign = await client.post(url, data=form | {"code": "y", "members": f"room:{world.b.room}"},
                                allow_redirects=False)
    assert foreign.status == 404
    not_master = await client.post(url, data=form | {"code": "z", "master_meter_id": str(world.a.meter)},
                                   allow_redirects=False)
    assert not_master.status == 404
    async with sessions() as s:
        [group] = list(await s.scalars(select(ApportionGroup)))
        ratios = sorted(str(m.ratio) for m in await s.scalars(select(ApportionMember)))
    assert (group.code, group.method, group.master_meter_id) == ("lift", "ratio", master)
    assert ratios == ["0.300000", "0.700000"]
    assert await _count(sessions, AuditEntry, AuditEntry.action == "apportion_group.create") == 1
    assert "电梯" in await (await client.get(url)).text()
    viewer = await sign_in(client, "viewer")
    assert (await client.post(url, data=form | {"_csrf": viewer, "code": "v"}, allow_redirects=False)).status == 403


async def test_month_end_by_hand_bills_and_deducts_once_then_bills_are_confirmed_issued_and_chased(
        client, world, sessions):
    token = await sign_in(client, "operator")
    assert (await _fee(client, token, world.a.site)).status == 302
    assert (await _fee(client, token, world.a.site, code="svc", name="服务费", amount_yuan="10.00",
                       collection="deduct")).status == 302
    run = f"/admin/sites/{world.a.site}/monthend"
    assert (await client.post(run, data={"_csrf": token, "period": "2026-13"}, allow_redirects=False)).status == 400
    future = f"{date.today().year + 1}-01"
    assert (await client.post(run, data={"_csrf": token, "period": future}, allow_redirects=False)).status == 400
    viewer_token = await sign_in(client, "viewer")
    assert (await client.post(run, data={"_csrf": viewer_token, "period": THIS_MONTH},
                              allow_redirects=False)).status == 403
    token = await sign_in(client, "operator")
    for _ in range(2):  # a re-run charges nothing twice
        resp = await client.post(run, data={"_csrf": token, "period": THIS_MONTH}, allow_redirects=False)
        assert resp.status == 302 and "/bills?done=monthend" in resp.headers["Location"]
    async with sessions() as s:
        [bill] = list(await s.scalars(select(Bill)))
        assert (await balance(s, world.a.account)).total.fen == 100_00 - 10_00
    assert (bill.status, bill.total_fen, bill.account_id) == ("draft", 300_00, world.a.account)
    assert await _count(sessions, AuditEntry, AuditEntry.action == "monthend.run") == 2

    page = await (await client.get(f"/admin/sites/{world.a.site}/bills")).text()
    assert bill.number in page and "300.00" in page
    assert "300.00" in await (await client.get(f"/admin/bills/{bill.id}")).text()
    issue = await client.post(f"/admin/bills/{bill.id}/issue", data={"_csrf": token}, allow_redirects=False)
    assert issue.status == 409  # a draft must be confirmed first
    for action in ("confirm", "issue"):
        resp = await client.post(f"/admin/bills/{bill.id}/{action}", data={"_csrf": token}, allow_redirects=False)
        assert resp.status == 302, await resp.text()
    async with sessions() as s:
        assert (await s.get(Bill, bill.id)).status == "issued"  # type: ignore[union-attr]
    assert await _count(sessions, AuditEntry, AuditEntry.action.in_(("bill.confirm", "bill.issue"))) == 2
    arrears = await (await client.get(f"/admin/sites/{world.a.site}/arrears")).text()
    assert "ACC-A" in arrears and "300.00" in arrears

    for path, sheet_text in ((f"/admin/sites/{world.a.site}/arrears.xlsx", "ACC-A"),
                             (f"/admin/sites/{world.a.site}/bills.xlsx", bill.number)):
        resp = await client.get(path)
        assert resp.status == 200 and resp.content_type.endswith("spreadsheetml.sheet")
        ws = load_workbook(io.BytesIO(await resp.read())).active
        cells = [str(c) for row in ws.iter_rows(values_only=True) for c in row]
        assert sheet_text in cells and "300.00" in cells

    viewer_token = await sign_in(client, "viewer")
    refused = await client.post(f"/admin/bills/{bill.id}/void", data={"_csrf": viewer_token, "reason": "x"},
                                allow_redirects=False)
    assert refused.status == 403
    token = await sign_in(client, "operator")
    void = await client.post(f"/admin/bills/{bill.id}/void", data={"_csrf": token, "reason": "wrong tenant"},
                             allow_redirects=False)
    assert void.status == 302
    async with sessions() as s:
        assert (await s.get(Bill, bill.id)).status == "void"  # type: ignore[union-attr]


async def test_bills_of_another_site_are_not_found(client, world, sessions):
    token = await sign_in(client, "owner_b")
    assert (await _fee(client, token, world.b.site)).status == 302
    assert (await client.post(f"/admin/sites/{world.b.site}/monthend", data={"_csrf": token, "period": THIS_MONTH},
                              allow_redirects=False)).status == 302
    async with sessions() as s:
        bill_id = await s.scalar(select(Bill.id))
    token = await sign_in(client, "owner")
    assert (await client.get(f"/admin/bills/{bill_id}")).status == 404
    for action in ("confirm", "reopen", "issue", "void"):
        resp = await client.post(f"/admin/bills/{bill_id}/{action}", data={"_csrf": token, "reason": "r"},
                                 allow_redirects=False)
        assert resp.status == 404, action
    for path in ("bills", "bills.xlsx", "arrears", "arrears.xlsx", "fees", "apportion"):
        assert (await client.get(f"/admin/sites/{world.b.site}/{path}")).status == 404, path
    async with sessions() as s:
        assert (await s.get(Bill, bill_id)).status == "draft"  # type: ignore[union-attr]


NEW_POSTS = ("admin.fee_create", "admin.fee_active", "admin.apportion_create", "admin.monthend", "admin.bill_confirm",
             "admin.bill_reopen", "admin.bill_issue", "admin.bill_void", "admin.site_create", "admin.building_create",
             "admin.floor_create", "admin.room_create", "admin.rooms_import", "admin.gateway_create",
             "admin.meter_create", "admin.meters_import")


async def test_a_viewer_is_refused_every_new_action_and_nothing_is_recorded(client, world, sessions):
    from tests.admin.routes_walk import fill, full_form, routes

    token = await sign_in(client, "viewer")
    posts = {r.name: r for r in routes(client.server.app) if r.method == "POST"}
    assert set(NEW_POSTS) <= set(posts)
    before = await _count(sessions, AuditEntry)
    for name in NEW_POSTS:
        resp = await client.post(fill(posts[name], world.a, world.users["viewer"]), data=full_form(world.a, token),
                                 allow_redirects=False)
        assert resp.status == 403, (name, resp.status)
    assert await _count(sessions, AuditEntry) == before


async def test_every_new_page_renders_in_chinese_and_in_english_without_raw_keys(client, world, sessions):
    import re

    await _deliveries(sessions, world)
    token = await sign_in(client, "owner")
    assert (await _fee(client, token, world.a.site)).status == 302
    await client.post(f"/admin/sites/{world.a.site}/monthend", data={"_csrf": token, "period": THIS_MONTH})
    async with sessions() as s:
        bill_id = await s.scalar(select(Bill.id))
    pages = [f"/admin/sites/{world.a.site}/{p}" for p in ("deliveries", "fees", "apportion", "bills", "arrears",
                                                          "places", "devices")] + ["/admin/sites", f"/admin/bills/{bill_id}"]
    raw = re.compile(r">\s*(?:d|ch|bs|b|c|rc|sc|m|col_room|col_meter|bill)_[a-z_0-9]+\s*<")
    for lang, word in (("zh-CN", "账单"), ("en", "Bills")):
        await client.post("/admin/lang", data={"_csrf": token, "lang": lang, "back": "/admin/"})
        for path in pages:
            resp = await client.get(path)
            text = await resp.text()
            assert resp.status == 200, (path, text)
            assert not raw.search(text), (lang, path, raw.search(text))
        assert word in await (await client.get(f"/admin/sites/{world.a.site}/bills")).text()
