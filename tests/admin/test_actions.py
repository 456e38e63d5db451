"""Staff actions change the books once, queue commands, and leave an audit entry in the same transaction."""

from __future__ import annotations

import io
import uuid

from openpyxl import load_workbook
from sqlalchemy import func, select

from services.wallets import balance
from store.models import Account, AuditEntry, MeterCommand, Order, TariffVersion


async def _count(sessions, model, *where) -> int:  # type: ignore[no-untyped-def]
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_a_double_clicked_recharge_credits_once_and_is_audited_once(client, world, sessions):
    from tests.admin.conftest import sign_in

    token = await sign_in(client, "cashier")
    form = {"_csrf": token, "amount": "25.50", "idem": uuid.uuid4().hex}
    first = await client.post(f"/admin/accounts/{world.a.account}/recharge", data=form, allow_redirects=False)
    second = await client.post(f"/admin/accounts/{world.a.account}/recharge", data=form, allow_redirects=False)
    assert first.status == second.status == 302
    assert first.headers["Location"] == second.headers["Location"]
    async with sessions() as s:
        assert (await balance(s, world.a.account)).total.fen == 100_00 + 25_50
    assert await _count(sessions, AuditEntry, AuditEntry.action == "account.recharge") == 1
    receipt = await client.get(first.headers["Location"].split("?")[0])
    assert "25.50" in await receipt.text()


async def test_a_refund_beyond_the_balance_is_refused_and_changes_nothing(client, world, sessions):
    from tests.admin.conftest import sign_in

    token = await sign_in(client, "operator")
    resp = await client.post(f"/admin/accounts/{world.a.account}/refund",
                             data={"_csrf": token, "amount": "500.00", "idem": uuid.uuid4().hex}, allow_redirects=False)
    assert resp.status == 409
    assert await _count(sessions, AuditEntry, AuditEntry.action == "account.refund") == 0
    ok = await client.post(f"/admin/accounts/{world.a.account}/refund",
                           data={"_csrf": token, "amount": "30.00", "idem": uuid.uuid4().hex, "note": "moving out"},
                           allow_redirects=False)
    assert ok.status == 302
    async with sessions() as s:
        assert (await balance(s, world.a.account)).total.fen == 70_00
        entry = await s.scalar(select(AuditEntry).where(AuditEntry.action == "account.refund"))
        assert entry is not None and entry.before == {"balance_fen": 100_00} and entry.after["balance_fen"] == 70_00


async def test_switching_a_relay_needs_the_confirmation_and_queues_one_command(client, world, sessions):
    from tests.admin.conftest import sign_in

    token = await sign_in(client, "operator")
    url = f"/admin/meters/{world.a.meter}/relay"
    key = uuid.uuid4().hex
    unconfirmed = await client.post(url, data={"_csrf": token, "action": "off", "reason": "r", "idem": key},
                                    allow_redirects=False)
    assert unconfirmed.status == 400
    form = {"_csrf": token, "action": "off", "reason": "tenant asked", "idem": key, "confirm": "yes"}
    for _ in range(2):
        assert (await client.post(url, data=form, allow_redirects=False)).status == 302
    async with sessions() as s:
        cmds = list(await s.scalars(select(MeterCommand).where(MeterCommand.meter_id == world.a.meter)))
        assert [(c.kind, c.state, c.reason, c.created_by) for c in cmds] == [
            ("relay_open", "queued", "tenant asked", "operator")]
        audit = list(await s.scalars(select(AuditEntry).where(AuditEntry.action == "meter.relay_open")))
        assert len(audit) == 1 and audit[0].reason == "tenant asked"
    page = await (await client.get(f"/admin/rooms/{world.a.room}")).text()
    assert "relay_open" in page and "排队中" in page


async def test_a_tariff_version_is_validated_by_the_billing_core(client, world, sessions):
    from tests.admin.conftest import sign_in

    token = await sign_in(client, "operator")
    url = f"/admin/tariffs/{world.a.tariff}/versions"
    bad = await client.post(url, data={"_csrf": token, "effective_from": "2031-01-01",
                                       "spec": '{"kind": "flat", "price": 1.2}'}, allow_redirects=False)
    assert bad.status == 400 and "float" in await bad.text()
    good = await client.post(url, data={"_csrf": token, "effective_from": "2031-01-01",
                                        "spec": '{"kind": "flat", "price": "1.20"}'}, allow_redirects=False)
    assert good.status == 302
    assert await _count(sessions, TariffVersion, TariffVersion.tariff_id == world.a.tariff) == 2
    assert await _count(sessions, AuditEntry, AuditEntry.action == "tariff.add_version") == 1


async def test_opening_and_closing_an_account_from_the_room_page(client, world, sessions):
    from tests.admin.conftest import sign_in

    token = await sign_in(client, "owner")
    resp = await client.post(f"/admin/rooms/{world.a.vacant_room}/open-account", data={
        "_csrf": token, "meter_id": str(world.a.vacant_meter), "tenant_name": "李雷", "tenant_phone": "13800000000",
        "balance_model": "merged", "payment_mode": "prepaid"}, allow_redirects=False)
    assert resp.status == 302
    async with sessions() as s:
        acc = await s.scalar(select(Account).where(Account.site_id == world.a.site, Account.id != world.a.account))
        assert acc is not None and acc.state == "open"
    closed = await client.post(f"/admin/accounts/{acc.id}/close", data={"_csrf": token, "reason": "left"},
                               allow_redirects=False)
    assert closed.status == 302
    async with sessions() as s:
        assert (await s.get(Account, acc.id)).state == "closed"  # type: ignore[union-attr]
    assert await _count(sessions, AuditEntry, AuditEntry.action.in_(["account.open", "account.close"])) == 2


async def test_orders_export_to_an_xlsx_of_exact_amounts(client, world):
    from tests.admin.conftest import sign_in

    await sign_in(client, "viewer")
    resp = await client.get(f"/admin/sites/{world.a.site}/orders.xlsx?kind=recharge")
    assert resp.status == 200
    ws = load_workbook(io.BytesIO(await resp.read())).active
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0][0] == "order no." and len(rows) == 2
    assert rows[1][7] == "100.00" and rows[1][5] == "ACC-A"


async def test_the_panel_speaks_chinese_first_and_english_on_request(client, world):
    from tests.admin.conftest import sign_in

    token = await sign_in(client, "viewer")
    page = await (await client.get(f"/admin/sites/{world.a.site}/rooms")).text()
    assert "房间监控" in page
    await client.post("/admin/lang", data={"_csrf": token, "lang": "en", "back": "/admin/audit"})
    page = await (await client.get(f"/admin/sites/{world.a.site}/rooms")).text()
    assert "Room monitor" in page and "房间监控" not in page


async def test_the_monitor_filters_by_state_and_search(client, world):
    from tests.admin.conftest import sign_in

    await sign_in(client, "viewer")
    base = f"/admin/sites/{world.a.site}/rooms"
    vacant = await (await client.get(base + "?state=vacant")).text()
    assert f'id="room-{world.a.vacant_room}"' in vacant and f'id="room-{world.a.room}"' not in vacant
    found = await (await client.get(base + "?q=Tenant")).text()
    assert f'id="room-{world.a.room}"' in found and f'id="room-{world.a.vacant_room}"' not in found
    lost = await (await client.get(base + "?link=lost")).text()
    assert f'id="room-{world.a.vacant_room}"' in lost and f'id="room-{world.a.room}"' not in lost


async def test_a_state_filter_counts_rooms_by_state_on_the_page(client, world):
    from tests.admin.conftest import sign_in

    await sign_in(client, "viewer")
    page = await (await client.get(f"/admin/sites/{world.a.site}/rooms?state=normal")).text()
    assert 'id="count-normal">1<' in page and 'id="count-vacant">1<' in page
