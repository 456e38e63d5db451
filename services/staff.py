"""Property staff: argon2 passwords, sign-in with lock-out, roles and per-site scoping."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, TypeVar

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services import audit
from services.errors import Conflict, NotFound, ServiceError
from services.uow import in_transaction
from store.models import Site, User, UserSite
from store.types import utcnow

ROLES = ("owner", "operator", "cashier", "viewer")
# What each role may do; "view" is implied for every role.
PERMISSIONS: dict[str, frozenset[str]] = {
    "view": frozenset(ROLES),
    "recharge": frozenset({"owner", "operator", "cashier"}),
    "refund": frozenset({"owner", "operator", "cashier"}),
    "account": frozenset({"owner", "operator"}),
    "tariff": frozenset({"owner", "operator"}),
    "relay": frozenset({"owner", "operator"}),
    "users": frozenset({"owner"}),
}
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
MIN_PASSWORD = 5
T = TypeVar("T")


def fast_hash_wanted() -> bool:
    """Tests and demos may ask for the cheapest argon2 profile (read at call time, never at import)."""
    return os.environ.get("METERPAY_FAST_HASH", "") == "1"


def hasher(fast: bool | None = None) -> PasswordHasher:
    fast = fast_hash_wanted() if fast is None else fast
    return PasswordHasher.from_parameters(profiles.CHEAPEST if fast else profiles.RFC_9106_LOW_MEMORY)


def can(role: str, permission: str) -> bool:
    return role in PERMISSIONS.get(permission, frozenset())


@dataclass(frozen=True)
class Staff:
    """A signed-in user as views see it: no password hash, the sites they may see."""

    id: int
    username: str
    role: str
    site_ids: tuple[int, ...]
    locale: str = "zh-CN"

    def can(self, permission: str) -> bool:
        return can(self.role, permission)


async def site_ids_of(session: AsyncSession, user_id: int) -> tuple[int, ...]:
    rows = await session.scalars(select(UserSite.site_id).where(UserSite.user_id == user_id).order_by(UserSite.site_id))
    return tuple(rows)


async def load_staff(session: AsyncSession, user_id: int) -> Staff | None:
    user = await session.get(User, user_id)
    if user is None or not user.active:
        return None
    return Staff(user.id, user.username, user.role, await site_ids_of(session, user.id), user.locale)


async def add_user(session: AsyncSession, username: str, password: str, role: str, site_ids: Iterable[int],
                   actor: str = "system", fast: bool | None = None) -> User:
    """Create a user in `session` (audited); the password is hashed here and never kept."""
    username, sites = username.strip(), sorted(set(site_ids))
    if role not in ROLES:
        raise ServiceError(f"unknown role {role!r}")
    if not username or len(password) < MIN_PASSWORD:
        raise ServiceError(f"a username and a password of at least {MIN_PASSWORD} characters are needed")
    if not sites:
        raise ServiceError("a user needs at least one site")
    if await session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} exists")
    found = set(await session.scalars(select(Site.id).where(Site.id.in_(sites))))
    if found != set(sites):
        raise NotFound("unknown site")
    user = User(username=username, password_hash=hasher(fast).hash(password), role=role)
    session.add(user)
    await session.flush()
    session.add_all([UserSite(user_id=user.id, site_id=s) for s in sites])
    await audit.record(session, actor, "user.create", "user", user.id, None,
                       {"username": username, "role": role, "sites": sites}, site_id=sites[0])
    return user


async def create_user(sessions: async_sessionmaker[AsyncSession], username: str, password: str, role: str,
                      site_ids: Iterable[int], *, fast: bool | None = None) -> int:
    """Bootstrap helper (CLI, demo): create a user in its own transaction; returns the id."""
    sites = list(site_ids)

    async def run(s: AsyncSession) -> int:
        return (await add_user(s, username, password, role, sites, fast=fast)).id

    return await in_transaction(sessions, run)


class SignInRefused(ServiceError):
    """Wrong name or password, or locked out: one message for all, so names cannot be probed."""

    status = 401


_DUMMY: dict[bool, str] = {}


def _dummy_hash(fast: bool) -> str:
    if fast not in _DUMMY:
        _DUMMY[fast] = hasher(fast).hash("not-a-password")
    return _DUMMY[fast]


async def authenticate(session: AsyncSession, username: str, password: str, now: datetime | None = None,
                       fast: bool | None = None) -> Staff:
    """Check a password; count failures, lock after MAX_FAILED_LOGINS for LOCKOUT. Caller commits."""
    now = now or utcnow()
    fast = fast_hash_wanted() if fast is None else fast
    user = await session.scalar(select(User).where(User.username == username.strip()).with_for_update())
    if user is None or not user.active:
        _verify(_dummy_hash(fast), password, fast)  # same work as a real check
        raise SignInRefused("sign-in refused")
    if user.locked_until is not None and user.locked_until > now:
        raise SignInRefused("sign-in refused")
    if not _verify(user.password_hash, password, fast):
        user.failed_logins += 1
        if user.failed_logins >= MAX_FAILED_LOGINS:
            user.locked_until, user.failed_logins = now + LOCKOUT, 0
            await audit.record(session, user.username, "user.locked", "user", user.id, reason="too many failed sign-ins")
        raise SignInRefused("sign-in refused")
    user.failed_logins, user.locked_until = 0, None
    if hasher(fast).check_needs_rehash(user.password_hash):
        user.password_hash = hasher(fast).hash(password)
    return Staff(user.id, user.username, user.role, await site_ids_of(session, user.id), user.locale)


def _verify(hashed: str, password: str, fast: bool) -> bool:
    try:
        return hasher(fast).verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def in_scope(staff: Staff, site_id: int | None) -> bool:
    return site_id is not None and site_id in staff.site_ids


async def scoped(session: AsyncSession, model: type[T], object_id: Any, staff: Staff) -> T:
    """Load an object with a `site_id` the user may see; anything else is NotFound (never Forbidden)."""
    try:
        key = int(object_id)
    except (TypeError, ValueError):
        raise NotFound("not found") from None
    obj = await session.get(model, key)
    if obj is None or not in_scope(staff, getattr(obj, "site_id", None)):
        raise NotFound("not found")
    return obj
