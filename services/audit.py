"""The audit log: one call that records who did what to which object, inside the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import AuditEntry
from store.types import utcnow

_NEW_ENTRY = insert(AuditEntry.__table__)


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
                 reason: str | None = None, site_id: int | None = None) -> None:
    """Add an audit entry in `session`'s transaction; it commits or rolls back with the action it describes.

    One prebuilt Core insert (the session autoflushes before it, as adding an ORM entry and
    flushing did): every payment writes an entry, and the ORM unit of work cost more than the insert."""
    await session.execute(_NEW_ENTRY, dict(
        at=utcnow(), actor=actor[:100], action=action[:60], object_type=object_type[:40],
        object_id=str(object_id)[:60], before=_jsonable(before), after=_jsonable(after),
        reason=(reason or None) and reason[:300], site_id=site_id))
