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
from store.models.charges import (ApportionGroup, ApportionMember, ApportionRun, ApportionShare, Bill,  # noqa: E402
                                  BillLine, BillPayment, FeeItem)
__all__ += ["ApportionGroup", "ApportionMember", "ApportionRun", "ApportionShare", "Bill", "BillLine",
            "BillPayment", "FeeItem"]
from store.models.tenant_link import BindChallenge, TenantLink  # noqa: E402
__all__ += ["BindChallenge", "TenantLink"]
from store.models.notify import Delivery, NotifyPreference, SubscribeOptIn  # noqa: E402
__all__ += ["Delivery", "NotifyPreference", "SubscribeOptIn"]
from store.models.payments import PaymentConflict, ProviderPayment, ReconciliationItem  # noqa: E402
__all__ += ["PaymentConflict", "ProviderPayment", "ReconciliationItem"]
from store.models.reports import BatchItem, BatchTask, RollupMark, UsageDaily, UsageMonthly  # noqa: E402
__all__ += ["BatchItem", "BatchTask", "RollupMark", "UsageDaily", "UsageMonthly"]
from store.models.pollers import PollerSeen  # noqa: E402
__all__ += ["PollerSeen"]
