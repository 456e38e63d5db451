"""The tenant JSON API for the WeChat mini-program, under /api/ (OpenAPI at /api/openapi.json)."""

from api.context import TENANT_PORT
from api.routes import setup_tenant_routes
from api.starter import PaymentStarter

__all__ = ["TENANT_PORT", "PaymentStarter", "setup_tenant_routes"]
