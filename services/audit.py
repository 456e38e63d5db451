"""The audit log: one call that records who did what to which object, inside the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from store.models import AuditEntry
from store.types import utcnow


def _jsonable(value: Any) -> Any:
    """Plain JSON for the before/after snapshots (dates and Money become strings)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    return str(value)


async def record(session: AsyncSession, actor: str, action: str, object_type: str, object_id: object,
                 before: dict[str, Any] | None = None, after: dict[str, Any] | None = None,
                 reason: str | None = None, site_id: int | None = None) -> AuditEntry:
    """Add an audit entry to `session`; it commits or rolls back with the action it describes."""
    entry = AuditEntry(at=utcnow(), actor=actor[:100], action=action[:60], object_type=object_type[:40],
                       object_id=str(object_id)[:60], before=_jsonable(before), after=_jsonable(after),
                       reason=(reason or None) and reason[:300], site_id=site_id)
    session.add(entry)
    await session.flush()
    return entry
