"""Writes ``campaigns`` and ``attendances``; nothing else does.

A campaign is added as built by the editor (``add_campaign``) and its fields
changed later (``update_campaign``).  An attendance is whether a volunteer
said they will come to a campaign, marked once per (campaign, volunteer)
and overwritten by every later answer (``mark_attendance``).  Callers own
the transaction; every function here sends its SQL before it returns.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dialer.store.models import Attendance, Campaign


async def add_campaign(session: AsyncSession, campaign: Campaign) -> None:
    session.add(campaign)
    await session.flush()


async def update_campaign(session: AsyncSession, campaign: Campaign, **values: Any) -> None:
    for name, value in values.items():
        setattr(campaign, name, value)
    await session.flush()


async def mark_attendance(
    session: AsyncSession, *, campaign_id: int, user_id: int, attending: bool, at: datetime
) -> None:
    row = await session.get(Attendance, (campaign_id, user_id))
    if row is None:
        session.add(
            Attendance(campaign_id=campaign_id, user_id=user_id, attending=attending, marked_at=at)
        )
    else:
        row.attending = attending
        row.marked_at = at
    await session.flush()
