"""The panel's URL table: one place that lists every page and action."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from admin import views_auth, views_manage, views_monitor, views_money, views_room
from admin import views_charges, views_deliveries, views_sites


def add_routes(app: web.Application, static_dir: Path) -> None:
    r = app.router
    r.add_get("/", views_auth.index, name="admin.index")
    r.add_route("*", "/login", views_auth.login, name="admin.login")
    r.add_post("/logout", views_auth.logout, name="admin.logout")
    r.add_post("/lang", views_auth.set_lang, name="admin.lang")
    r.add_get("/sites/{site_id}/rooms", views_monitor.monitor, name="admin.monitor")
    r.add_get("/sites/{site_id}/rooms/stream", views_monitor.stream, name="admin.stream")
    r.add_get("/rooms/{room_id}", views_room.room, name="admin.room")
    r.add_post("/rooms/{room_id}/open-account", views_room.open_account, name="admin.open_account")
    r.add_post("/accounts/{account_id}/recharge", views_room.recharge, name="admin.recharge")
    r.add_post("/accounts/{account_id}/refund", views_room.refund, name="admin.refund")
    r.add_post("/accounts/{account_id}/close", views_room.close, name="admin.close_account")
    r.add_post("/meters/{meter_id}/tariff", views_room.set_tariff, name="admin.set_tariff")
    r.add_get("/meters/{meter_id}/relay", views_room.relay_confirm, name="admin.relay_confirm")
    r.add_post("/meters/{meter_id}/relay", views_room.relay_switch, name="admin.relay")
    r.add_get("/audit", views_manage.audit_log, name="admin.audit")
    r.add_get("/users", views_manage.users, name="admin.users")
    r.add_post("/users", views_manage.user_create, name="admin.user_create")
    r.add_post("/users/{user_id}/unlock", views_manage.user_unlock, name="admin.user_unlock")
    r.add_get("/sites/{site_id}/tariffs", views_manage.tariffs, name="admin.tariffs")
    r.add_post("/sites/{site_id}/tariffs", views_manage.tariff_create, name="admin.tariff_create")
    r.add_post("/tariffs/{tariff_id}/versions", views_manage.version_add, name="admin.version_add")
    r.add_get("/sites/{site_id}/orders", views_money.orders, name="admin.orders")
    r.add_get("/sites/{site_id}/orders.xlsx", views_money.orders_xlsx, name="admin.orders_xlsx")
    r.add_get("/orders/{order_id}/receipt", views_money.receipt, name="admin.receipt")
    r.add_static("/static", static_dir, name="admin.static")
    r.add_get("/sites/{site_id}/deliveries", views_deliveries.deliveries, name="admin.deliveries")
    r.add_get("/sites/{site_id}/fees", views_charges.fees, name="admin.fees")
    r.add_post("/sites/{site_id}/fees", views_charges.fee_create, name="admin.fee_create")
    r.add_post("/fees/{fee_id}/active", views_charges.fee_active, name="admin.fee_active")
    r.add_get("/sites/{site_id}/apportion", views_charges.apportion, name="admin.apportion")
    r.add_post("/sites/{site_id}/apportion", views_charges.apportion_create, name="admin.apportion_create")
    r.add_post("/sites/{site_id}/monthend", views_charges.monthend, name="admin.monthend")
    r.add_get("/sites/{site_id}/bills", views_charges.bills, name="admin.bills")
    r.add_get("/sites/{site_id}/bills.xlsx", views_charges.bills_export, name="admin.bills_xlsx")
    r.add_get("/bills/{bill_id}", views_charges.bill, name="admin.bill")
    for action in ("confirm", "reopen", "issue", "void"):
        r.add_post(f"/bills/{{bill_id}}/{action}", views_charges.bill_action, name=f"admin.bill_{action}")
    r.add_get("/sites/{site_id}/arrears", views_charges.arrears_page, name="admin.arrears")
    r.add_get("/sites/{site_id}/arrears.xlsx", views_charges.arrears_export, name="admin.arrears_xlsx")
    r.add_get("/sites", views_sites.sites, name="admin.sites")
    r.add_post("/sites", views_sites.site_create, name="admin.site_create")
    r.add_get("/sites/{site_id}/places", views_sites.places, name="admin.places")
    r.add_post("/sites/{site_id}/buildings", views_sites.building_create, name="admin.building_create")
    r.add_post("/sites/{site_id}/floors", views_sites.floor_create, name="admin.floor_create")
    r.add_post("/sites/{site_id}/places/rooms", views_sites.room_create, name="admin.room_create")
    r.add_post("/sites/{site_id}/places/rooms/import", views_sites.rooms_import, name="admin.rooms_import")
    r.add_get("/sites/{site_id}/devices", views_sites.devices, name="admin.devices")
    r.add_post("/sites/{site_id}/gateways", views_sites.gateway_create, name="admin.gateway_create")
    r.add_post("/sites/{site_id}/meters", views_sites.meter_create, name="admin.meter_create")
    r.add_post("/sites/{site_id}/meters/import", views_sites.meters_import, name="admin.meters_import")
