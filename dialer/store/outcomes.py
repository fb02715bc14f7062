"""Writes ``dispositions`` and ``follow_up_tasks``; nothing else does.

A disposition is what a volunteer recorded after a call, or the automatic
"absent" of a call that never reached its contact; a follow-up task is the
to-do a disposition may leave for someone.  Callers own the transaction;
every function here sends its SQL before it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from dialer.domain.vocabulary import CallOutcome, DispositionOutcome, TaskStatus
from dialer.store import calls as call_rows
from dialer.store.models import CallAttempt, Disposition, FollowUpTask

_DISPOSITIONS = cast(Table, Disposition.__table__)
AUTOMATIC_PREFIX = "auto-"


async def add_disposition(session: AsyncSession, disposition: Disposition) -> None:
    session.add(disposition)
    await session.flush()
    if disposition.call_attempt_id is not None:
        await call_rows.sync_outcome_recorded(session, [disposition.call_attempt_id])


async def withdraw_automatic(session: AsyncSession, disposition: Disposition) -> None:
    """Delete an automatic "absent": what the volunteer says takes its place."""
    await session.delete(disposition)
    await session.flush()
    if disposition.call_attempt_id is not None:
        await call_rows.sync_outcome_recorded(session, [disposition.call_attempt_id])


async def add_task(session: AsyncSession, task: FollowUpTask) -> None:
    session.add(task)
    await session.flush()


async def add_automatic_absents(
    session: AsyncSession, calls: Sequence[tuple[CallAttempt, CallOutcome, datetime]]
) -> None:
    """One "absent" per (call, why it ended, when), in one statement."""
    if not calls:
        return
    await session.execute(
        insert(_DISPOSITIONS),
        [
            {
                "submission_id": f"{AUTOMATIC_PREFIX}{call.call_id}",
                "call_attempt_id": call.id,
                "contact_id": call.contact_id,
                "campaign_id": call.campaign_id,
                "volunteer_id": call.volunteer_id,
                "outcome": DispositionOutcome.ABSENT,
                "comments": f"automatic: {outcome.value}",
                "created_at": ended,
            }
            for call, outcome, ended in calls
        ],
    )
    await call_rows.sync_outcome_recorded(session, [call.id for call, _outcome, _ended in calls])


async def set_task_status(
    session: AsyncSession, task: FollowUpTask, status: TaskStatus, *, at: datetime
) -> None:
    """Mark a task done (dated) or open again (undated)."""
    task.status = status
    task.completed_at = at if status is TaskStatus.DONE else None
    await session.flush()
