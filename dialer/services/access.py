"""Who may see what: the visibility rules every use case checks."""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from dialer.store.access import STAFF_ROLES, team_ids
from dialer.store.models import CallingListEntry, Campaign, User


async def can_access_campaign(
    session: AsyncSession, user: User, campaign: Campaign, teams: set[int] | None = None
) -> bool:
    if user.role in STAFF_ROLES:
        return True
    if teams is None:
        teams = await team_ids(session, user.id)
    return campaign.team_id is not None and campaign.team_id in teams


async def can_access_contact(
    session: AsyncSession, user: User, contact_id: int, teams: set[int] | None = None
) -> bool:
    """Volunteers see contacts on their teams' campaigns, nothing else."""
    if user.role in STAFF_ROLES:
        return True
    if teams is None:
        teams = await team_ids(session, user.id)
    if not teams:
        return False
    found = await session.scalar(
        select(
            exists().where(
                CallingListEntry.contact_id == contact_id,
                CallingListEntry.campaign_id == Campaign.id,
                Campaign.team_id.in_(teams),
            )
        )
    )
    return bool(found)
