"""Follow-up tasks: what is still open for whom."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dialer.domain.vocabulary import TaskStatus
from dialer.store.models import Contact, FollowUpTask


async def open_tasks_for(session: AsyncSession, user_id: int) -> list[tuple[FollowUpTask, Contact]]:
    rows = await session.execute(
        select(FollowUpTask, Contact)
        .join(Contact, Contact.id == FollowUpTask.contact_id)
        .where(FollowUpTask.assignee_id == user_id, FollowUpTask.status == TaskStatus.OPEN)
        .order_by(FollowUpTask.due_on.is_(None), FollowUpTask.due_on, FollowUpTask.id)
        .limit(100)
    )
    return list(rows)
