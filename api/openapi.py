"""The OpenAPI 3 document of the tenant API, served at /api/openapi.json."""

from __future__ import annotations

from typing import Any

CHANNELS = ["wechatpay_jsapi", "alipay_wap"]
ERROR = {"$ref": "#/components/responses/Error"}
AUTH: list[dict[str, list[str]]] = [{"session": []}]


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required or list(props)}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(key: str, item: str) -> dict[str, Any]:
    return _obj({key: {"type": "array", "items": _ref(item)}})


def _ok(schema: dict[str, Any], desc: str = "OK", status: str = "200", *errors: str) -> dict[str, Any]:
    out: dict[str, Any] = {status: {"description": desc, "content": {"application/json": {"schema": schema}}}}
    for code in ("400", "401", *errors):
        out[code] = ERROR
    return out


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, responses: dict[str, Any], *, body: dict[str, Any] | None = None,
        params: list[dict[str, Any]] | None = None, auth: bool = True) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if auth:
        op["security"] = AUTH
    if body is not None:
        op["requestBody"] = _body(body)
    if params:
        op["parameters"] = params
    return op


def _q(name: str, schema: dict[str, Any], required: bool = False, where: str = "query") -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path", "schema": schema}


def _money(name: str) -> dict[str, Any]:
    return {f"{name}_fen": {"type": "integer"}, name: {"type": "string", "pattern": r"^-?\d+\.\d{2}$"}}


BIND_STATUS = ["bound", "bad_code", "expired", "no_pending", "no_match", "not_allowed"]
ID = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
AMOUNT = {"type": "string", "pattern": r"^[0-9]{1,4}(\.[0-9]{1,2})?$", "example": "50.00"}
SCHEMAS: dict[str, Any] = {
    "Room": _obj({"account_id": {"type": "integer"}, "site_code": {"type": "string"},
                  "site_name": {"type": "string"}, "room_no": {"type": "string"}, "label": {"type": "string"}}),
    "Balance": _obj({"room": _ref("Room"), "utility": {"enum": ["electricity", "water"]}, **_money("balance"),
                     "days_left": {"type": ["integer", "null"]}}),
    "Usage": _obj({"room": _ref("Room"), "utility": {"enum": ["electricity", "water"]},
                   "span": {"enum": ["today", "month", "last_month"]}, "quantity": {"type": "integer"},
                   "unit": {"enum": ["Wh", "L"]}, **_money("cost"),
                   "tou": {"oneOf": [{"type": "null"}, _obj({k: {"type": "integer"} for k in
                                                             ("sharp", "peak", "flat", "valley")})]}}),
    "Order": _obj({"order_no": {"type": "string"}, "room": _ref("Room"), "kind": {"enum": ["recharge", "refund", "bill"]},
                   **_money("amount"), "status": {"enum": ["pending", "paid", "failed", "refunded"]},
                   "channel": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"}}),
    "Bill": _obj({"bill_no": {"type": "string"}, "room": _ref("Room"), "period_start": {"type": "string",
                  "format": "date"}, "period_end": {"type": "string", "format": "date"}, **_money("amount"),
                  "status": {"enum": ["unpaid", "paid", "overdue"]}, "bill_id": {"type": "integer"},
                  **_money("outstanding"), "payable": {"type": "boolean"},
                  "pay_url": {"type": ["string", "null"], "description": "signed pay page link for this bill"}},
                 ["bill_no", "room", "period_start", "period_end", "amount_fen", "amount", "status"]),
    "BindResult": _obj({"status": {"enum": BIND_STATUS}, "rooms": {"type": "array", "items": _ref("Room")}}),
    "Error": _obj({"error": {"type": "string"}}),
}


def _paths() -> dict[str, Any]:
    return {
        "/api/login": {"post": _op("Log in with a wx.login code; returns a session token", _ok(_obj(
            {"token": {"type": "string"}, "expires_in": {"type": "integer"}, "bound": {"type": "boolean"}}),
            "Logged in", "200", "502"), body=_obj({"code": {"type": "string", "minLength": 1, "maxLength": 128}}),
            auth=False)},
        "/api/rooms": {"get": _op("Rooms bound to this WeChat user", _ok(_list("rooms", "Room")))},
        "/api/rooms/bind/phone": {"post": _op("Send an SMS code to a registered phone", _ok(_obj(
            {"status": {"enum": ["code_sent", "unknown_phone"]}}), "Started", "200", "429"),
            body=_obj({"phone": {"type": "string", "minLength": 1, "maxLength": 20}}))},
        "/api/rooms/bind/code": {"post": _op("Confirm the SMS code; binds the phone's rooms",
                                             _ok(_ref("BindResult")),
                                             body=_obj({"code": {"type": "string", "minLength": 1, "maxLength": 12}}))},
        "/api/rooms/bind/room": {"post": _op("Bind by room number and the phone's last 4 digits",
                                             _ok(_ref("BindResult")), body=_obj({
                                                 "site": {"type": "string", "minLength": 1, "maxLength": 100},
                                                 "room_no": {"type": "string", "minLength": 1, "maxLength": 40},
                                                 "phone_last4": {"type": "string", "pattern": "^[0-9]{4}$"}}))},
        "/api/rooms/{account_id}": {"delete": _op("Unbind one room", _ok(_obj({"status": {"enum": ["unbound"]}}),
                                                                         "Unbound", "200", "404"),
                                                  params=[_q("account_id", ID, where="path")])},
        "/api/balance": {"get": _op("Balance per account or meter, with days left",
                                    _ok(_list("balances", "Balance")))},
        "/api/usage": {"get": _op("Usage over a span with cost and TOU split", _ok(_list("usage", "Usage")),
                                  params=[_q("span", {"enum": ["today", "month", "last_month"]})])},
        "/api/usage/series": {"get": _op("Daily usage and cost of one room", _ok(_obj({
            "account_id": {"type": "integer"}, "days": {"type": "integer"},
            "points": {"type": "array", "items": _obj({"date": {"type": "string", "format": "date"},
                                                       "utility": {"enum": ["electricity", "water"]},
                                                       "quantity": {"type": "integer"}, "unit": {"enum": ["Wh", "L"]},
                                                       **_money("cost")})}}), "OK", "200", "404"),
            params=[_q("account_id", ID, True), _q("days", {"type": "integer", "minimum": 1, "maximum": 366})])},
        "/api/orders": {"get": _op("Newest orders first", _ok(_list("orders", "Order")),
                                   params=[_q("limit", {"type": "integer", "minimum": 1, "maximum": 100})])},
        "/api/orders/{order_no}": {"get": _op("One order (poll it after paying)", _ok(_ref("Order"), "OK", "200",
                                                                                        "404"),
                                              params=[_q("order_no", {"type": "string", "maxLength": 64},
                                                         where="path")])},
        "/api/bills": {"get": _op("Postpaid and fee bills", _ok(_list("bills", "Bill")))},
        "/api/payments": {"post": _op("Start a recharge (account_id + amount), or pay a bill (bill_no, amount "
                                      "optional: all that is outstanding); answers jsapi_params (WeChat Pay) or "
                                      "pay_url (Alipay)",
                                      _ok({"type": "object", "required": ["out_trade_no", "channel", "amount"],
                                           "properties": {"out_trade_no": {"type": "string"},
                                                          "channel": {"enum": CHANNELS}, **_money("amount"),
                                                          "bill_no": {"type": "string"},
                                                          "jsapi_params": {"type": "object"},
                                                          "pay_url": {"type": "string"}}},
                                          "Payment started", "201", "404", "409"),
                                      body={"anyOf": [
                                          _obj({"account_id": ID, "amount": AMOUNT, "channel": {"enum": CHANNELS}},
                                               ["account_id", "amount"]),
                                          _obj({"bill_no": {"type": "string", "minLength": 1, "maxLength": 60},
                                                "amount": AMOUNT, "channel": {"enum": CHANNELS}}, ["bill_no"])]})},
    }


def document(server_url: str) -> dict[str, Any]:
    """The whole document; `server_url` is the public base the mini-program calls."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "meterpay tenant API", "version": "1.0.0",
                 "description": "Balances, usage, orders, bills and recharges for bound WeChat users. "
                                "Money is given twice: integer fen (`*_fen`) and a yuan string."},
        "servers": [{"url": server_url}],
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "responses": {"Error": {"description": "Refused, with a message",
                                    "content": {"application/json": {"schema": _ref("Error")}}}},
            "securitySchemes": {"session": {"type": "http", "scheme": "bearer",
                                            "description": "The token from POST /api/login"}},
        },
    }
