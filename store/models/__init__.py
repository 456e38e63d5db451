"""All tables, importable from one place (alembic autogenerate and create_all need them all)."""

from store.models.base import Base
from store.models.meters import Gateway, Meter, MeterCommand, Reading, Tariff, TariffVersion
from store.models.money import LedgerAccount, LedgerTransaction, Order, Outbox, Posting
from store.models.site import Account, Building, Company, Floor, Room, Site, Tenant
from store.models.staff import AuditEntry, User, UserSite

__all__ = [
    "Account", "AuditEntry", "Base", "Building", "Company", "Floor", "Gateway", "LedgerAccount",
    "LedgerTransaction", "Meter", "MeterCommand", "Order", "Outbox", "Posting", "Reading", "Room",
    "Site", "Tariff", "TariffVersion", "Tenant", "User", "UserSite",
]
