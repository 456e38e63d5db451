"""Custom fee items: configuring them, and charging a period's fees to the rooms' occupants.

Charges come from billing.fees (proration by occupied days, due dates, keys
``fee:<item>:<room>:<account>:<item-period>``). Items collected by **deduct** post
``wallet -> revenue:fee:<item code>`` under that key through the bulk ledger writer, so a
re-run finds the key and charges nothing; items collected by **bill** become lines of the
account's bill for the period (services.postpaid), carrying the same key. A postpaid account
has no prepaid wallet to deduct from: all its fees are billed. A deduction that leaves a prepaid
account below its overdraft triggers the usual cut-off (services.relay.apply_credit_rules).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from billing import fees as pure
from billing.ledger import Transaction, transfer
from billing.money import Money
from billing.periods import Period
from services.errors import Conflict, NotFound, ServiceError
from services import relay
from services.bulk import among, core_rows, is_pg, parts, post_many
from services.occupancy import Tenancy, site_zone, tenancies
from store.models import Account, AuditEntry, FeeItem, LedgerAccount, Room

SCOPES = ("site", "building", "rooms")


def revenue_for_fee(code: str) -> str:
    return f"revenue:fee:{code}"


def to_pure(row: FeeItem) -> pure.FeeItem:
    """The billing-core view of a stored fee item."""
    return pure.FeeItem(
        row.code, row.name, pure.Basis(row.basis), pure.Recurrence(row.recurrence), row.starts_on,
        amount=Money(row.amount_fen), rate_per_m2=Decimal(row.rate_per_m2 or 0),
        day_of_period=row.day_of_period, ends_on=row.ends_on, collection=pure.Collection(row.collection),
        prorate=row.prorate)


def _rate(value: object) -> Decimal:
    if isinstance(value, float):
        raise ServiceError("rate_per_m2 must be a decimal string, not a float")
    try:
        return Decimal(str(value))
    except InvalidOperation as ex:
        raise ServiceError(f"not a rate: {value!r}") from ex


async def create_fee_item(session: AsyncSession, site_id: int, spec: dict[str, Any], actor: str) -> FeeItem:
    """Add a fee item from a JSON-like spec (amount in fen, rate as a decimal string, ISO dates)."""
    try:
        starts = date.fromisoformat(str(spec["starts_on"]))
        ends = date.fromisoformat(str(spec["ends_on"])) if spec.get("ends_on") else None
        row = FeeItem(site_id=site_id, code=str(spec["code"]), name=str(spec["name"]), basis=spec["basis"],
                      amount_fen=int(spec.get("amount_fen", 0)), rate_per_m2=_rate(spec.get("rate_per_m2", "0")),
                      recurrence=spec["recurrence"], day_of_period=int(spec.get("day_of_period", 1)),
                      starts_on=starts, ends_on=ends, collection=spec.get("collection", "deduct"),
                      prorate=bool(spec.get("prorate", True)), scope=spec.get("scope", "site"),
                      building_id=spec.get("building_id"), room_ids=spec.get("room_ids"), active=True)
        to_pure(row)
    except (KeyError, ValueError, TypeError) as ex:
        raise ServiceError(f"invalid fee item: {ex}") from ex
    if row.scope not in SCOPES or (row.scope == "building" and row.building_id is None) \
            or (row.scope == "rooms" and not row.room_ids):
        raise ServiceError("scope must be site, building (with building_id) or rooms (with room_ids)")
    if await session.scalar(select(FeeItem.id).where(FeeItem.site_id == site_id, FeeItem.code == row.code)):
        raise Conflict(f"fee item {row.code} already exists")
    session.add(row)
    await session.flush()
    session.add(AuditEntry(actor=actor, site_id=site_id, action="fee_item.create", object_type="fee_item",
                           object_id=str(row.id), after=fee_item_json(row)))
    return row


async def set_fee_item_active(session: AsyncSession, item_id: int, active: bool, actor: str) -> FeeItem:
    """Stop (or resume) charging an item; past charges stay in the ledger."""
    row = await session.get(FeeItem, item_id)
    if row is None:
        raise NotFound(f"fee item {item_id} not found")
    before = fee_item_json(row)
    row.active = active
    session.add(AuditEntry(actor=actor, site_id=row.site_id, action="fee_item.active", object_type="fee_item",
                           object_id=str(row.id), before=before, after=fee_item_json(row)))
    return row


def fee_item_json(row: FeeItem) -> dict[str, Any]:
    return dict(id=row.id, code=row.code, name=row.name, basis=row.basis, amount_fen=row.amount_fen,
                rate_per_m2=str(row.rate_per_m2), recurrence=row.recurrence, day_of_period=row.day_of_period,
                starts_on=row.starts_on.isoformat(), ends_on=row.ends_on.isoformat() if row.ends_on else None,
                collection=row.collection, prorate=row.prorate, scope=row.scope, building_id=row.building_id,
                room_ids=row.room_ids, active=row.active)


async def list_fee_items(session: AsyncSession, site_id: int) -> list[dict[str, Any]]:
    rows = await session.scalars(select(FeeItem).where(FeeItem.site_id == site_id).order_by(FeeItem.code))
    return [fee_item_json(r) for r in rows]


@dataclass(frozen=True, slots=True)
class ChargeFor:
    """A pure fee charge with the tenancy it falls on."""

    charge: pure.FeeCharge
    tenancy: Tenancy

    @property
    def billed(self) -> bool:
        """Collected on a bill: so configured, or the account is postpaid."""
        return self.charge.collection is pure.Collection.BILL or self.tenancy.payment_mode == "postpaid"


def _in_scope(item: FeeItem, room: tuple[int, int]) -> bool:
    room_id, building_id = room
    if item.scope == "building":
        return building_id == item.building_id
    if item.scope == "rooms":
        return room_id in set(item.room_ids or ())
    return True


async def period_charges(session: AsyncSession, site_id: int, period: Period,
                         found: list[Tenancy] | None = None) -> list[ChargeFor]:
    """Every fee charge the run for `period` raises at a site, deducted or billed."""
    items = list(await session.scalars(select(FeeItem).where(FeeItem.site_id == site_id, FeeItem.active.is_(True))))
    if not items:
        return []
    if found is None:
        found = await tenancies(session, site_id, period, await site_zone(session, site_id))
    rooms = {i: (b, a) for i, b, a in await core_rows(session,
        select(Room.id, Room.building_id, Room.area_m2).where(Room.site_id == site_id))}
    out: list[ChargeFor] = []
    for row in items:
        item, memo = to_pure(row), _Memo()
        for t in found:
            building, area = rooms.get(t.room_id, (None, None))
            if building is None or not _in_scope(row, (t.room_id, building)):
                continue
            area_m2 = Decimal(area) if area is not None else None
            out += [ChargeFor(c, t) for c in memo.charges(item, area_m2, t, period)]
    return out


class _Memo:
    """Charges depend on the item, the area and the dates only: most rooms share them, so the pure
    rule runs once per distinct (area, move-in, move-out) and the key is re-addressed per room."""

    def __init__(self) -> None:
        self._seen: dict[tuple[Decimal | None, date, date | None], list[pure.FeeCharge]] = {}

    def charges(self, item: pure.FeeItem, area: Decimal | None, t: Tenancy, period: Period) -> list[pure.FeeCharge]:
        key = (area, t.move_in, t.move_out)
        if key not in self._seen:
            self._seen[key] = pure.charges_for_period(item, area, pure.Occupancy("A", "R", t.move_in, t.move_out), period)
        cut, real = len(f"fee:{item.code}:R:A:"), f"fee:{item.code}:{t.room_id}:{t.account_id}:"
        account, room = str(t.account_id), str(t.room_id)
        # the constructor, not dataclasses.replace: same fields, a fifth of the cost at 100,000 rooms
        return [pure.FeeCharge(real + c.key[cut:], c.item_code, account, room, c.period, c.due_on, c.amount,
                               c.days_charged, c.days_in_period, c.collection, c.description)
                for c in self._seen[key]]


@dataclass(frozen=True, slots=True)
class FeeRun:
    deducted: int
    deducted_fen: int
    skipped: int
    billed: int


def deduction(c: ChargeFor) -> Transaction:
    """A deducted fee as a ledger transaction keyed by the charge."""
    ch = c.charge
    return transfer(ch.key, "fee", c.tenancy.wallet(), revenue_for_fee(ch.item_code), ch.amount,
                    memo=ch.description)


async def deduct_fees(session: AsyncSession, site_id: int, period: Period, actor: str = "system",
                      found: list[Tenancy] | None = None, charges: list[ChargeFor] | None = None) -> FeeRun:
    """Post the period's deducted fees (each key at most once); bill-collected ones are counted only."""
    if charges is None:
        charges = await period_charges(session, site_id, period, found)
    deduct = [c for c in charges if not c.billed]
    owners = {c.tenancy.wallet(): c.tenancy.account_id for c in deduct}
    posted = set(await post_many(session, site_id, [deduction(c) for c in deduct], owners, actor))
    await cut_off_exhausted(session, {c.tenancy.account_id for c in deduct if c.charge.key in posted})
    fen = sum(c.charge.amount.fen for c in deduct if c.charge.key in posted)
    return FeeRun(len(posted), fen, len(deduct) - len(posted), len(charges) - len(deduct))


async def cut_off_exhausted(session: AsyncSession, account_ids: set[int]) -> int:
    """Queue cut-offs for prepaid accounts a deduction left below their overdraft; returns how many."""
    if not account_ids:
        return 0
    low, pg = 0, await is_pg(session)
    for part in parts(sorted(account_ids), pg):
        rows = await session.execute(
            select(Account, func.sum(LedgerAccount.balance_fen))
            .join(LedgerAccount, LedgerAccount.account_id == Account.id)
            .where(among(Account.id, part, pg), LedgerAccount.code.like("wallet:%"), Account.payment_mode == "prepaid")
            .group_by(Account.id).having(func.sum(LedgerAccount.balance_fen) <= -Account.overdraft_fen))
        for acc, fen in rows:
            await relay.apply_credit_rules(session, acc, int(fen))
            low += 1
    return low
