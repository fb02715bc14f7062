"""Writes ``notifications`` and ``notification_preferences``; nothing else does.

A notification is added once per (user, key): the insert skips a key the
user already has, so a repeated trigger (a retried request, two web
processes scanning the same call-backs) adds nothing.  Callers own the
transaction; every function here sends its SQL before it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dialer.domain.notifications import NotificationKind
from dialer.store.engine import insert_on_conflict
from dialer.store.models import Notification, NotificationPreference

_NOTIFICATIONS = cast(Table, Notification.__table__)
_PREFERENCES = cast(Table, NotificationPreference.__table__)


@dataclass(frozen=True, slots=True)
class NewNotification:
    user_id: int
    kind: NotificationKind
    dedup_key: str
    campaign_id: int | None = None
    contact_id: int | None = None
    task_id: int | None = None
    params: dict[str, Any] = field(default_factory=dict)


async def add(
    session: AsyncSession, notifications: Sequence[NewNotification], *, at: datetime
) -> list[int]:
    """Add those whose key the user does not have yet; returns the new ids."""
    if not notifications:
        return []
    statement = (
        insert_on_conflict(session, _NOTIFICATIONS)
        .values(
            [
                {
                    "user_id": item.user_id,
                    "kind": item.kind,
                    "dedup_key": item.dedup_key,
                    "campaign_id": item.campaign_id,
                    "contact_id": item.contact_id,
                    "task_id": item.task_id,
                    "params": item.params,
                    "created_at": at,
                }
                for item in notifications
            ]
        )
        .on_conflict_do_nothing(index_elements=["user_id", "dedup_key"])
        .returning(_NOTIFICATIONS.c.id)
    )
    return list(await session.scalars(statement))


async def mark_read(
    session: AsyncSession, user_id: int, notification_ids: Sequence[int] | None, *, at: datetime
) -> int:
    """Mark ``user_id``'s notifications read (all of them when ids is None); returns how many."""
    statement = update(Notification).where(
        Notification.user_id == user_id, Notification.read_at.is_(None)
    )
    if notification_ids is not None:
        statement = statement.where(Notification.id.in_(notification_ids))
    result = await session.execute(
        statement.values(read_at=at).returning(Notification.id),
    )
    return len(result.all())


async def claim_undispatched(session: AsyncSession, *, at: datetime, limit: int) -> list[int]:
    """Claim up to ``limit`` notifications not yet sent out (MQTT, email), oldest first.

    One conditional UPDATE: when two processes race, the database re-checks
    ``dispatched_at IS NULL`` on each locked row, so each goes to one of them.
    """
    waiting = (
        select(Notification.id)
        .where(Notification.dispatched_at.is_(None))
        .order_by(Notification.id)
        .limit(limit)
    )
    return list(
        await session.scalars(
            update(Notification)
            .where(Notification.id.in_(waiting), Notification.dispatched_at.is_(None))
            .values(dispatched_at=at)
            .returning(Notification.id)
        )
    )


async def set_email_preference(
    session: AsyncSession, user_id: int, email: bool, *, at: datetime
) -> None:
    statement = (
        insert_on_conflict(session, _PREFERENCES)
        .values(user_id=user_id, email=email, updated_at=at)
        .on_conflict_do_update(index_elements=["user_id"], set_={"email": email, "updated_at": at})
    )
    await session.execute(statement)
