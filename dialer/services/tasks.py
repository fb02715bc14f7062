"""Follow-up tasks: what is still open for whom, and marking them done.

A task is marked done (or opened again) by its assignee, or by an
organizer of a team the task belongs to (its campaign's team, or for a
task outside any campaign, its author's teams), or by an administrator;
each change goes to the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.vocabulary import Role, TaskStatus
from dialer.services.access import scope_of
from dialer.store import audit, outcomes
from dialer.store.models import Contact, FollowUpTask, User, utcnow

# Done tasks stay on the page this long, so a mistaken "Done" can be undone.
RECENTLY_DONE = timedelta(days=7)


async def open_tasks_for(session: AsyncSession, user_id: int) -> list[tuple[FollowUpTask, Contact]]:
    rows = await session.execute(
        select(FollowUpTask, Contact)
        .join(Contact, Contact.id == FollowUpTask.contact_id)
        .where(FollowUpTask.assignee_id == user_id, FollowUpTask.status == TaskStatus.OPEN)
        .order_by(FollowUpTask.due_on.is_(None), FollowUpTask.due_on, FollowUpTask.id)
        .limit(100)
    )
    return list(rows)


@dataclass(frozen=True, slots=True)
class TaskRow:
    task: FollowUpTask
    contact: Contact
    overdue: bool

    @property
    def done(self) -> bool:
        return self.task.status is TaskStatus.DONE


@dataclass(frozen=True, slots=True)
class TasksPage:
    open: list[TaskRow]
    done: list[TaskRow]


async def tasks_page(
    session: AsyncSession, user_id: int, *, today: date, now: datetime
) -> TasksPage:
    """``user_id``'s open tasks by due date (undated last), and those done lately."""
    open_rows = [
        TaskRow(task, contact, task.due_on is not None and task.due_on < today)
        for task, contact in await open_tasks_for(session, user_id)
    ]
    done = await session.execute(
        select(FollowUpTask, Contact)
        .join(Contact, Contact.id == FollowUpTask.contact_id)
        .where(
            FollowUpTask.assignee_id == user_id,
            FollowUpTask.status == TaskStatus.DONE,
            FollowUpTask.completed_at >= now - RECENTLY_DONE,
        )
        .order_by(FollowUpTask.completed_at.desc())
        .limit(50)
    )
    return TasksPage(open_rows, [TaskRow(task, contact, False) for task, contact in done])


async def may_settle_task(session: AsyncSession, user: User, task: FollowUpTask) -> bool:
    """The assignee, an organizer of a team the task belongs to, or an administrator."""
    if task.assignee_id == user.id or user.role is Role.ADMIN:
        return True
    if user.role is not Role.ORGANIZER:
        return False
    scope = await scope_of(session, user)
    found = await session.scalar(
        select(
            exists().where(
                FollowUpTask.id == task.id,
                scope.work_filter(FollowUpTask.campaign_id, FollowUpTask.created_by_id),
            )
        )
    )
    return bool(found)


async def set_task_done(
    session: AsyncSession, user: User, task_id: int, done: bool, *, now: datetime
) -> FollowUpTask | None:
    """Mark it done, or open again; None when ``user`` may not (or it does not exist).

    Doing what is already done changes nothing and adds no audit entry (a
    double click, a second tab).
    """
    task = await session.get(FollowUpTask, task_id)
    if task is None or task.status is TaskStatus.CANCELLED:
        return None
    if not await may_settle_task(session, user, task):
        return None
    wanted = TaskStatus.DONE if done else TaskStatus.OPEN
    if task.status is wanted:
        return task
    await outcomes.set_task_status(session, task, wanted, at=now)
    await audit.record(
        session,
        action="task.done" if done else "task.reopen",
        entity_type="task",
        entity_id=task.id,
        changes={"status": wanted.value, "contact_id": task.contact_id},
        actor_id=user.id,
    )
    return task


class TaskService:
    """The tasks page and its Done / Reopen buttons; each call is one transaction."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def page(self, user: User, *, today: date) -> TasksPage:
        async with self._sessions() as session:
            return await tasks_page(session, user.id, today=today, now=utcnow())

    async def set_done(self, user: User, task_id: int, done: bool) -> bool:
        """False when the task is not there for ``user`` to change."""
        async with self._sessions.begin() as session:
            return await set_task_done(session, user, task_id, done, now=utcnow()) is not None
