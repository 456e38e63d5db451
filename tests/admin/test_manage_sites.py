"""Sites, buildings, floors, rooms, gateways and meters: lists, create forms, and all-or-nothing imports."""

from __future__ import annotations

import io
from datetime import datetime, timezone

from aiohttp import FormData
from openpyxl import Workbook
from sqlalchemy import func, select

from services.uow import in_transaction
from store.models import AuditEntry, Building, Floor, Meter, Room, Site, UserSite
from tests.admin.conftest import sign_in


async def _count(sessions, model, *where) -> int:  # type: ignore[no-untyped-def]
    async with sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _upload(token: str, name: str, body: bytes) -> FormData:
    form = FormData()
    form.add_field("_csrf", token)
    form.add_field("file", body, filename=name, content_type="application/octet-stream")
    return form


def _xlsx(rows: list[list[object]]) -> bytes:
    wb = Workbook()
    for r in rows:
        wb.active.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


async def test_an_owner_adds_a_site_of_his_company_and_sees_only_his_sites(client, world, sessions):
    token = await sign_in(client, "owner")
    page = await (await client.get("/admin/sites")).text()
    assert "Site A" in page and "Site B" not in page
    async with sessions() as s:
        company_a = (await s.get(Site, world.a.site)).company_id  # type: ignore[union-attr]
        company_b = (await s.get(Site, world.b.site)).company_id  # type: ignore[union-attr]
    form = {"_csrf": token, "company_id": str(company_a), "code": "A2", "name": "二期", "timezone": "Asia/Shanghai"}
    resp = await client.post("/admin/sites", data=form, allow_redirects=False)
    assert resp.status == 302
    assert (await client.post("/admin/sites", data=form, allow_redirects=False)).status == 409
    bad_tz = await client.post("/admin/sites", data=form | {"code": "TZ", "timezone": "Mars/Olympus"},
                               allow_redirects=False)
    assert bad_tz.status == 400
    other = await client.post("/admin/sites", data=form | {"code": "X", "company_id": str(company_b)},
                              allow_redirects=False)
    assert other.status == 404
    async with sessions() as s:
        new = await s.scalar(select(Site).where(Site.code == "A2"))
        assert new is not None and new.company_id == company_a
        assert await s.scalar(select(UserSite.id).where(UserSite.site_id == new.id,
                                                        UserSite.user_id == world.users["owner"]))
    assert "二期" in await (await client.get(resp.headers["Location"])).text()
    assert await _count(sessions, AuditEntry, AuditEntry.action == "site.create") == 1
    for role in ("operator", "viewer"):
        t = await sign_in(client, role)
        refused = await client.post("/admin/sites", data=form | {"_csrf": t, "code": f"Z{role}"}, allow_redirects=False)
        assert refused.status == 403


async def test_buildings_floors_and_rooms_are_created_by_an_operator_not_a_viewer(client, world, sessions):
    token = await sign_in(client, "operator")
    base = f"/admin/sites/{world.a.site}"
    assert (await client.post(f"{base}/buildings", data={"_csrf": token, "name": "B"}, allow_redirects=False)).status == 302
    assert (await client.post(f"{base}/buildings", data={"_csrf": token, "name": "B"}, allow_redirects=False)).status == 409
    async with sessions() as s:
        b = await s.scalar(select(Building).where(Building.site_id == world.a.site, Building.name == "B"))
    floor = {"_csrf": token, "building_id": str(b.id), "level": "3", "name": "3F"}  # type: ignore[union-attr]
    assert (await client.post(f"{base}/floors", data=floor, allow_redirects=False)).status == 302
    room = {"_csrf": token, "building": "B", "floor": "3", "number": "301", "area_m2": "42.5"}
    assert (await client.post(f"{base}/places/rooms", data=room, allow_redirects=False)).status == 302
    dup = await client.post(f"{base}/places/rooms", data=room, allow_redirects=False)
    assert dup.status == 400 and "exists already" in await dup.text()
    async with sessions() as s:
        r = await s.scalar(select(Room).where(Room.number == "301"))
        assert r is not None and str(r.area_m2) == "42.50" and r.site_id == world.a.site
    page = await (await client.get(f"{base}/places")).text()
    assert "301" in page and "3F" in page
    assert await _count(sessions, AuditEntry, AuditEntry.action.in_(
        ("building.create", "floor.create", "room.create"))) == 3
    b_floor = await client.post(f"{base}/floors", data=floor | {"building_id": str(world.b.site)}, allow_redirects=False)
    assert b_floor.status in (404, 409)  # a building id of another site is not found (or is this one's)
    viewer = await sign_in(client, "viewer")
    for path, form in (("buildings", {"name": "V"}), ("floors", floor), ("places/rooms", room)):
        resp = await client.post(f"{base}/{path}", data=form | {"_csrf": viewer}, allow_redirects=False)
        assert resp.status == 403, path
    assert "room-create" not in await (await client.get(f"{base}/places")).text()


async def test_a_floor_cannot_be_added_to_another_sites_building(client, world, sessions):
    token = await sign_in(client, "owner")
    async with sessions() as s:
        b_building = await s.scalar(select(Building.id).where(Building.site_id == world.b.site))
    resp = await client.post(f"/admin/sites/{world.a.site}/floors",
                             data={"_csrf": token, "building_id": str(b_building), "level": "9"}, allow_redirects=False)
    assert resp.status == 404
    assert await _count(sessions, Floor, Floor.level == 9) == 0


async def test_a_room_import_stores_every_row_or_none(client, world, sessions):
    token = await sign_in(client, "operator")
    url = f"/admin/sites/{world.a.site}/places/rooms/import"
    bad = "building,floor,number,area_m2\nC,1,101,30\nC,x,102,30\nC,1,101,20\nC,2,,abc\n".encode()
    resp = await client.post(url, data=_upload(token, "rooms.csv", bad))
    text = await resp.text()
    assert resp.status == 400
    assert "row 3: floor must be a whole number" in text
    assert "row 4: room 101 of building C appears twice in the file" in text
    assert "row 5: number is empty; area_m2 must be a number" in text
    assert await _count(sessions, Building, Building.name == "C") == 0
    exists = "building,floor,number\nC,1,150\nA,1,101\n".encode("gb18030")  # A/101 is the fixture's room
    resp = await client.post(url, data=_upload(token, "rooms.csv", exists))
    assert resp.status == 400 and "row 3: room 101 of building A exists already" in await resp.text()
    assert await _count(sessions, Room, Room.number == "150") == 0
    assert (await client.post(url, data=_upload(token, "rooms.txt", b"x"))).status == 400
    good = _xlsx([["Building", "Floor", "Number", "Area_m2", "floor_name"], ["C", 1, "101", "30.5", "一层"],
                  ["C", 2, "201", None, None], ["D", 1, "101", "12", None]])
    resp = await client.post(url, data=_upload(token, "rooms.xlsx", good), allow_redirects=False)
    assert resp.status == 302 and "count=3" in resp.headers["Location"]
    async with sessions() as s:
        rooms = {(b, n): str(a) for b, n, a in await s.execute(
            select(Building.name, Room.number, Room.area_m2).join(Building, Building.id == Room.building_id)
            .where(Building.name.in_(("C", "D"))))}
        floor_names = set(await s.scalars(select(Floor.name).join(Building, Building.id == Floor.building_id)
                                          .where(Building.name == "C")))
    assert rooms == {("C", "101"): "30.50", ("C", "201"): "0.00", ("D", "101"): "12.00"}
    assert floor_names == {"一层", "2F"}
    assert await _count(sessions, AuditEntry, AuditEntry.action == "room.import") == 1
    viewer = await sign_in(client, "viewer")
    assert (await client.post(url, data=_upload(viewer, "rooms.xlsx", good))).status == 403


async def test_gateways_and_meters_show_their_online_state_and_import_all_or_nothing(client, world, sessions):
    seen = datetime(2026, 3, 1, 4, 5, 6, tzinfo=timezone.utc)

    async def mark(s):  # type: ignore[no-untyped-def]
        m = await s.get(Meter, world.a.meter)
        m.online, m.last_seen_at = True, seen
    await in_transaction(sessions, mark)
    token = await sign_in(client, "operator")
    base = f"/admin/sites/{world.a.site}"
    page = await (await client.get(f"{base}/devices")).text()
    assert "A-gw1" in page and "2026-03-01 12:05:06" in page and "B-gw1" not in page
    assert "1/2" in page and "部分离线" in page  # one of the gateway's two meters online
    lost = await (await client.get(f"{base}/devices", params={"state": "lost"})).text()
    assert f'id="meter-{world.a.vacant_meter}"' in lost and f'id="meter-{world.a.meter}"' not in lost

    gw = {"_csrf": token, "code": "A-gw2", "protocol": "modbus_tcp", "host": "10.0.0.2", "port": "502"}
    assert (await client.post(f"{base}/gateways", data=gw, allow_redirects=False)).status == 302
    assert (await client.post(f"{base}/gateways", data=gw, allow_redirects=False)).status == 409
    meter = {"_csrf": token, "address": "9001", "utility": "electricity", "model": "acrel_ddsy1352",
             "protocol": "modbus_tcp", "gateway": "A-gw2", "port": "1", "building": "A", "room": "102",
             "tariff": "flat-A"}
    assert (await client.post(f"{base}/meters", data=meter, allow_redirects=False)).status == 302
    foreign = await client.post(f"{base}/meters", data=meter | {"address": "9002", "gateway": "B-gw1"},
                                allow_redirects=False)
    assert foreign.status == 400 and "no gateway 'B-gw1' at this site" in await foreign.text()

    url = f"{base}/meters/import"
    bad = ("address,utility,model,protocol,gateway,port,building,room,tariff,is_master\n"
           "9101,electricity,acrel_ddsy1352,modbus_tcp,A-gw2,1,A,101,,0\n"
           "9102,gas,acrel_ddsy1352,modbus_tcp,A-gw2,1,,,,0\n"
           "9001,electricity,acrel_ddsy1352,modbus_tcp,A-gw2,1,,,,0\n"
           "9103,electricity,acrel_ddsy1352,modbus_tcp,A-gw2,1,A,999,,0\n").encode()
    resp = await client.post(url, data=_upload(token, "meters.csv", bad))
    text = await resp.text()
    assert resp.status == 400 and "row 3: utility must be one of electricity, water" in text
    assert await _count(sessions, Meter, Meter.address.in_(("9101", "9103"))) == 0
    bad2 = bad.decode().splitlines()
    resp = await client.post(url, data=_upload(token, "meters.csv", "\n".join([bad2[0], bad2[1], bad2[3], bad2[4]]).encode()))
    text = await resp.text()
    assert resp.status == 400
    assert "row 3: meter 9001 on gateway A-gw2 port 1 exists already" in text and "row 4: no room 999 in building A" in text
    assert await _count(sessions, Meter, Meter.address == "9101") == 0
    good = _xlsx([["address", "utility", "model", "protocol", "gateway", "port", "is_master"],
                  ["9101", "electricity", "acrel_ddsy1352", "modbus_tcp", "A-gw2", 2, "1"],
                  ["9102", "water", "water_valve", "modbus_tcp", "A-gw2", 3, None]])
    resp = await client.post(url, data=_upload(token, "meters.xlsx", good), allow_redirects=False)
    assert resp.status == 302, await resp.text()
    async with sessions() as s:
        new = {m.address: m for m in await s.scalars(select(Meter).where(Meter.address.in_(("9001", "9101", "9102"))))}
    assert new["9101"].is_master and not new["9102"].is_master and new["9102"].utility == "water"
    assert new["9001"].room_id == world.a.vacant_room and new["9001"].tariff_id == world.a.tariff
    assert await _count(sessions, AuditEntry, AuditEntry.action.in_(
        ("gateway.create", "meter.create", "meter.import"))) == 3
    viewer = await sign_in(client, "viewer")
    for path, form in (("gateways", gw | {"code": "v"}), ("meters", meter | {"address": "v"})):
        assert (await client.post(f"{base}/{path}", data=form | {"_csrf": viewer}, allow_redirects=False)).status == 403
    assert (await client.post(url, data=_upload(viewer, "meters.xlsx", good))).status == 403


async def test_another_sites_management_pages_and_actions_are_not_found(client, world, sessions):
    token = await sign_in(client, "owner")
    base = f"/admin/sites/{world.b.site}"
    for path in ("places", "devices"):
        assert (await client.get(f"{base}/{path}")).status == 404
    for path, form in (("buildings", {"name": "X"}), ("places/rooms", {"building": "A", "floor": "1", "number": "9"}),
                       ("gateways", {"code": "X", "protocol": "mqtt"}),
                       ("meters", {"address": "1", "utility": "water", "model": "water_valve", "protocol": "mqtt"})):
        resp = await client.post(f"{base}/{path}", data=form | {"_csrf": token}, allow_redirects=False)
        assert resp.status == 404, path
    csv = b"building,floor,number\nZ,1,1\n"
    assert (await client.post(f"{base}/places/rooms/import", data=_upload(token, "r.csv", csv))).status == 404
    assert await _count(sessions, Building, Building.name.in_(("X", "Z"))) == 0
