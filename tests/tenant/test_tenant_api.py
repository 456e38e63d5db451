"""The mini-program API over HTTP: login, binding, balance, usage, orders, bills, payments, errors."""

from __future__ import annotations

import pytest

from api import tokens
from tests.tenant.conftest import Api
from tests.tenant.seed import PHONE, SECRET


async def bound(api: Api) -> dict[str, str]:
    headers = await api.login()
    await api.client.post("/api/rooms/bind/phone", json={"phone": PHONE}, headers=headers)
    code = api.seeded.sms[-1][1]  # the code as the SMS carried it
    resp = await api.client.post("/api/rooms/bind/code", json={"code": code}, headers=headers)
    assert (await resp.json())["status"] == "bound"
    return headers


async def test_login_exchanges_a_wx_code_for_a_signed_token(api: Api):
    resp = await api.client.post("/api/login", json={"code": "code-han"})
    body = await resp.json()
    assert resp.status == 200 and body["bound"] is False
    assert tokens.verify(SECRET, body["token"]) == "o-han"


async def test_an_invalid_wx_code_is_401(api: Api):
    resp = await api.client.post("/api/login", json={"code": "stolen"})
    assert resp.status == 401 and "40029" in (await resp.json())["error"]


async def test_a_malformed_login_is_a_clear_400(api: Api):
    for body in [b"", b"not json", b"[1, 2]", b'{"code": 5}', b'{"code": ""}', b"\xff\xfe"]:
        resp = await api.client.post("/api/login", data=body, headers={"Content-Type": "application/json"})
        assert resp.status == 400, body
        assert (await resp.json())["error"]


async def test_requests_without_a_valid_token_are_401(api: Api):
    for header in [None, "Bearer", "Bearer forged.token", "Basic abc", "Bearer a.b.c"]:
        headers = {"Authorization": header} if header else {}
        resp = await api.client.get("/api/balance", headers=headers)
        assert resp.status == 401 and "error" in await resp.json(), header


async def test_an_expired_token_is_401(api: Api):
    old = tokens.issue(SECRET, "o-han", ttl_s=60, now=1_000_000)
    resp = await api.client.get("/api/rooms", headers={"Authorization": f"Bearer {old}"})
    assert resp.status == 401 and "expired" in (await resp.json())["error"]


async def test_binding_by_phone_then_rooms_and_balance(api: Api):
    headers = await bound(api)
    rooms = (await (await api.client.get("/api/rooms", headers=headers)).json())["rooms"]
    assert {r["site_name"] for r in rooms} == {"阳光公寓", "学生公寓"}
    balances = (await (await api.client.get("/api/balance", headers=headers)).json())["balances"]
    mine = next(b for b in balances if b["room"]["account_id"] == api.seeded.account_id)
    assert (mine["balance_fen"], mine["balance"], mine["utility"]) == (9100, "91.00", "electricity")
    assert mine["days_left"] == 148


async def test_binding_by_room_over_the_api(api: Api):
    headers = await api.login("code-new")
    resp = await api.client.post("/api/rooms/bind/room", headers=headers,
                                 json={"site": "学生公寓", "room_no": "202", "phone_last4": "9000"})
    assert (await resp.json())["status"] == "bound"
    bad = await api.client.post("/api/rooms/bind/room", headers=headers,
                                json={"site": "学生公寓", "room_no": "202", "phone_last4": "90"})
    assert bad.status == 400


async def test_usage_has_cost_and_tou_split(api: Api):
    headers = await bound(api)
    resp = await api.client.get("/api/usage", params={"span": "month"}, headers=headers)
    [usage] = [u for u in (await resp.json())["usage"] if u["room"]["account_id"] == api.seeded.account_id]
    assert (usage["quantity"], usage["unit"], usage["cost"]) == (13_000, "Wh", "6.70")
    assert usage["tou"] == {"sharp": 0, "peak": 4_000, "flat": 0, "valley": 9_000}
    bad = await api.client.get("/api/usage", params={"span": "forever"}, headers=headers)
    assert bad.status == 400 and "span" in (await bad.json())["error"]


async def test_usage_series_is_per_local_day(api: Api):
    headers = await bound(api)
    resp = await api.client.get("/api/usage/series", headers=headers,
                                params={"account_id": str(api.seeded.account_id), "days": "366"})
    points = (await resp.json())["points"]
    assert [(p["date"], p["quantity"], p["cost"]) for p in points] == [
        ("2026-02-28", 3_000, "2.30"), ("2026-03-01", 8_000, "2.40"), ("2026-03-15", 5_000, "4.30")]
    week = await api.client.get("/api/usage/series", headers=headers,
                                params={"account_id": str(api.seeded.account_id), "days": "1"})
    assert [p["date"] for p in (await week.json())["points"]] == ["2026-03-15"]
    other = await api.client.get("/api/usage/series", params={"account_id": "999999"}, headers=headers)
    assert other.status == 404


async def test_orders_and_bills(api: Api):
    headers = await bound(api)
    orders = (await (await api.client.get("/api/orders", headers=headers)).json())["orders"]
    assert sorted(o["amount"] for o in orders) == ["100.00", "20.00"]
    one = await api.client.get(f"/api/orders/{orders[0]['order_no']}", headers=headers)
    assert (await one.json())["order_no"] == orders[0]["order_no"]
    assert (await api.client.get("/api/orders/R-nope", headers=headers)).status == 404
    assert (await (await api.client.get("/api/bills", headers=headers)).json()) == {"bills": []}


async def test_create_payment_starts_a_wechat_jsapi_payment_for_a_bound_room(api: Api):
    headers = await bound(api)
    resp = await api.client.post("/api/payments", headers=headers, json={
        "account_id": api.seeded.account_id, "amount": "50", "channel": "wechatpay_jsapi"})
    body = await resp.json()
    assert resp.status == 201 and body["amount_fen"] == 5000 and "prepay_id=" in body["jsapi_params"]["package"]
    assert api.starter.started[-1][2:] == ("wechatpay_jsapi", "o-han")
    await api.starter.settle()
    order = await api.client.get(f"/api/orders/{body['out_trade_no']}", headers=headers)
    assert (await order.json())["status"] == "paid"
    balances = (await (await api.client.get("/api/balance", headers=headers)).json())["balances"]
    assert any(b["balance"] == "141.00" for b in balances)


BAD_PAYMENTS = [
    ({"account_id": 0, "amount": "50"}, 400),
    ({"account_id": "x", "amount": "50"}, 400),
    ({"account_id": True, "amount": "50"}, 400),
    ({"account_id": 1, "amount": 50.5}, 400),
    ({"account_id": 1, "amount": "0.001"}, 400),
    ({"account_id": 1, "amount": "NaN"}, 400),
    ({"account_id": 1, "amount": "99999"}, 400),
    ({"account_id": 1, "amount": "50", "channel": "bitcoin"}, 400),
    ({"account_id": 999999, "amount": "50"}, 404),
]


async def test_bad_payment_requests_are_4xx_with_a_message(api: Api):
    headers = await bound(api)
    for body, status in BAD_PAYMENTS:
        resp = await api.client.post("/api/payments", json=body, headers=headers)
        assert resp.status == status and (await resp.json())["error"], body
    assert api.starter.started == []


async def test_a_payment_for_someone_elses_room_is_404(api: Api):
    headers = await api.login("code-new")
    resp = await api.client.post("/api/payments", headers=headers,
                                 json={"account_id": api.seeded.account_id, "amount": "50"})
    assert resp.status == 404


async def test_unbind_over_the_api(api: Api):
    headers = await bound(api)
    path = f"/api/rooms/{api.seeded.account_id}"
    assert (await api.client.delete(path, headers=headers)).status == 200
    assert (await api.client.delete(path, headers=headers)).status == 404


async def test_the_openapi_document_is_served(api: Api):
    doc = await (await api.client.get("/api/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    assert {"/api/login", "/api/balance", "/api/usage/series", "/api/payments"} <= set(doc["paths"])


async def test_an_unknown_api_path_is_a_json_404(api: Api):
    resp = await api.client.get("/api/nothing-here")
    assert resp.status == 404 and "error" in await resp.json()
