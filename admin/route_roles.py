"""Who may call each HTTP route of the whole application: the security sweep's table, written out by hand.

Kinds of access:
- `public`: anyone (health, sign-in page, static files, the OpenAPI document, OAuth/login exchanges);
- `signature`: only a caller holding the provider's or WeChat's key (checked before anything else);
- `link`: only a holder of an HMAC-signed pay link (a tenant's own account);
- `tenant`: only a tenant with a session token from /api/login;
- `staff`: a signed-in staff member whose role is in `roles` (services.staff.PERMISSIONS, spelled out).

tests/security walks every route of meterpay.web.init_app against this table as anonymous, as each
staff role and (for the tenant API) with a tenant token; a route missing here fails that test.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL_STAFF = frozenset({"owner", "operator", "cashier", "viewer"})
MONEY = frozenset({"owner", "operator", "cashier"})
MANAGE = frozenset({"owner", "operator"})
OWNER = frozenset({"owner"})
NOBODY: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Access:
    kind: str  # public | signature | link | tenant | staff
    roles: frozenset[str] = NOBODY  # staff roles allowed (kind "staff")
    why: str = ""

    def allows(self, identity: str) -> bool:
        """Whether `identity` (anonymous, tenant, or a staff role) may use the route without a signature/link."""
        if self.kind == "public":
            return True
        if self.kind == "tenant":
            return identity == "tenant"
        if self.kind == "staff":
            return identity in self.roles
        return False


PUBLIC = Access("public")
SIGNED = Access("signature")
LINK = Access("link")
TENANT = Access("tenant")


def staff(roles: frozenset[str], why: str) -> Access:
    return Access("staff", roles, why)


VIEW = staff(ALL_STAFF, "view")

ROUTES: dict[tuple[str, str], Access] = {
    ("GET", "/healthz"): PUBLIC,
    ("POST", "/payments/{provider}/notify"): SIGNED,
    ("GET", "/wechat"): SIGNED,
    ("POST", "/wechat"): SIGNED,
    # tenant API and pay page
    ("GET", "/api/openapi.json"): PUBLIC,
    ("POST", "/api/login"): PUBLIC,  # exchanges a WeChat login code for a token
    ("GET", "/api/rooms"): TENANT,
    ("POST", "/api/rooms/bind/phone"): TENANT,
    ("POST", "/api/rooms/bind/code"): TENANT,
    ("POST", "/api/rooms/bind/room"): TENANT,
    ("DELETE", "/api/rooms/{account_id}"): TENANT,
    ("GET", "/api/balance"): TENANT,
    ("GET", "/api/usage"): TENANT,
    ("GET", "/api/usage/series"): TENANT,
    ("GET", "/api/orders"): TENANT,
    ("GET", "/api/orders/{order_no}"): TENANT,
    ("GET", "/api/bills"): TENANT,
    ("POST", "/api/payments"): TENANT,
    ("GET", "/pay/"): LINK,
    ("POST", "/pay/"): LINK,
    ("GET", "/pay/result"): LINK,
    ("GET", "/pay/status"): LINK,
    ("GET", "/pay/oauth"): PUBLIC,  # WeChat's OAuth redirect back to the pay page
    # staff panel
    ("GET", "/admin"): staff(ALL_STAFF, "view: the panel's index, behind the sign-in"),
    ("GET", "/admin/login"): PUBLIC,
    ("POST", "/admin/login"): PUBLIC,
    ("GET", "/admin/static"): PUBLIC,
    ("POST", "/admin/logout"): VIEW,
    ("POST", "/admin/lang"): VIEW,
    ("GET", "/admin/"): VIEW,
    ("GET", "/admin/sites/{site_id}/rooms"): VIEW,
    ("GET", "/admin/sites/{site_id}/rooms/stream"): VIEW,
    ("GET", "/admin/rooms/{room_id}"): VIEW,
    ("POST", "/admin/rooms/{room_id}/open-account"): staff(MANAGE, "account"),
    ("POST", "/admin/accounts/{account_id}/recharge"): staff(MONEY, "recharge"),
    ("POST", "/admin/accounts/{account_id}/refund"): staff(MONEY, "refund"),
    ("POST", "/admin/accounts/{account_id}/close"): staff(MANAGE, "account"),
    ("POST", "/admin/meters/{meter_id}/tariff"): staff(MANAGE, "tariff"),
    ("GET", "/admin/meters/{meter_id}/relay"): staff(MANAGE, "relay"),
    ("POST", "/admin/meters/{meter_id}/relay"): staff(MANAGE, "relay"),
    ("GET", "/admin/audit"): VIEW,
    ("GET", "/admin/users"): staff(OWNER, "users"),
    ("POST", "/admin/users"): staff(OWNER, "users"),
    ("POST", "/admin/users/{user_id}/unlock"): staff(OWNER, "users"),
    ("GET", "/admin/sites/{site_id}/tariffs"): VIEW,
    ("POST", "/admin/sites/{site_id}/tariffs"): staff(MANAGE, "tariff"),
    ("POST", "/admin/tariffs/{tariff_id}/versions"): staff(MANAGE, "tariff"),
    ("GET", "/admin/sites/{site_id}/orders"): VIEW,
    ("GET", "/admin/sites/{site_id}/orders.xlsx"): VIEW,
    ("GET", "/admin/orders/{order_id}/receipt"): VIEW,
    ("GET", "/admin/sites/{site_id}/finance"): VIEW,
    ("GET", "/admin/sites/{site_id}/finance.xlsx"): VIEW,
    ("GET", "/admin/sites/{site_id}/finance/entries"): VIEW,
    ("GET", "/admin/sites/{site_id}/finance/cash"): VIEW,
    ("GET", "/admin/sites/{site_id}/reports"): VIEW,
    ("GET", "/admin/sites/{site_id}/reports/monthly"): VIEW,
    ("GET", "/admin/sites/{site_id}/reports/monthly.xlsx"): VIEW,
    ("GET", "/admin/meters/{meter_id}/energy"): VIEW,
    ("GET", "/admin/meters/{meter_id}/energy.xlsx"): VIEW,
    ("GET", "/admin/sites/{site_id}/batches"): VIEW,
    ("POST", "/admin/sites/{site_id}/batches"): staff(MONEY, "the batch action's permission (recharge here)"),
    ("GET", "/admin/batches/{task_id}"): VIEW,
    ("GET", "/admin/batches/{task_id}/progress.json"): VIEW,
    ("POST", "/admin/batches/{task_id}/retry"): staff(MONEY, "the batch action's permission (recharge here)"),
    ("POST", "/admin/batches/{task_id}/cancel"): staff(MONEY, "the batch action's permission (recharge here)"),
    ("GET", "/admin/sites/{site_id}/deliveries"): VIEW,
    ("GET", "/admin/sites/{site_id}/fees"): VIEW,
    ("POST", "/admin/sites/{site_id}/fees"): staff(MANAGE, "account"),
    ("POST", "/admin/fees/{fee_id}/active"): staff(MANAGE, "account"),
    ("GET", "/admin/sites/{site_id}/apportion"): VIEW,
    ("POST", "/admin/sites/{site_id}/apportion"): staff(MANAGE, "account"),
    ("POST", "/admin/sites/{site_id}/monthend"): staff(MANAGE, "account"),
    ("GET", "/admin/sites/{site_id}/bills"): VIEW,
    ("GET", "/admin/sites/{site_id}/bills.xlsx"): VIEW,
    ("GET", "/admin/bills/{bill_id}"): VIEW,
    ("POST", "/admin/bills/{bill_id}/confirm"): staff(MANAGE, "account"),
    ("POST", "/admin/bills/{bill_id}/reopen"): staff(MANAGE, "account"),
    ("POST", "/admin/bills/{bill_id}/issue"): staff(MANAGE, "account"),
    ("POST", "/admin/bills/{bill_id}/void"): staff(MANAGE, "account"),
    ("GET", "/admin/sites/{site_id}/arrears"): VIEW,
    ("GET", "/admin/sites/{site_id}/arrears.xlsx"): VIEW,
    ("GET", "/admin/sites"): VIEW,
    ("POST", "/admin/sites"): staff(OWNER, "users"),
    ("GET", "/admin/sites/{site_id}/places"): VIEW,
    ("POST", "/admin/sites/{site_id}/buildings"): staff(MANAGE, "account"),
    ("POST", "/admin/sites/{site_id}/floors"): staff(MANAGE, "account"),
    ("POST", "/admin/sites/{site_id}/places/rooms"): staff(MANAGE, "account"),
    ("POST", "/admin/sites/{site_id}/places/rooms/import"): staff(MANAGE, "account"),
    ("GET", "/admin/sites/{site_id}/devices"): VIEW,
    ("POST", "/admin/sites/{site_id}/gateways"): staff(MANAGE, "account"),
    ("POST", "/admin/sites/{site_id}/meters"): staff(MANAGE, "account"),
    ("POST", "/admin/sites/{site_id}/meters/import"): staff(MANAGE, "account"),
}


def table_markdown() -> str:
    """The table as Markdown, for README / the security review."""
    lines = ["| method | path | access | roles |", "|---|---|---|---|"]
    for (method, path), a in ROUTES.items():
        roles = ", ".join(r for r in ("owner", "operator", "cashier", "viewer") if r in a.roles) or "-"
        lines.append(f"| {method} | `{path}` | {a.kind}{f' ({a.why})' if a.why else ''} | {roles} |")
    return "\n".join(lines)
