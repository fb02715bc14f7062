"""Writes ``audit_log``; nothing else does (triggers make it append-only)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dialer.store.models import AuditEntry


async def record(
    session: AsyncSession,
    *,
    action: str,
    entity_type: str,
    entity_id: str | int | None = None,
    changes: dict[str, Any] | None = None,
    actor_id: int | None = None,
    actor_label: str = "",
) -> AuditEntry:
    """Add an entry to the caller's transaction, so it commits with the change."""
    entry = AuditEntry(
        action=action,
        entity_type=entity_type,
        entity_id=None if entity_id is None else str(entity_id),
        changes=changes or {},
        actor_id=actor_id,
        actor_label=actor_label,
    )
    session.add(entry)
    await session.flush()
    return entry
