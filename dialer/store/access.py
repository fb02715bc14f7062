"""Who belongs where: the team lookups every visibility rule starts from."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dialer.domain.vocabulary import Role
from dialer.store.models import TeamMember

# Organizers and admins see every campaign and contact; volunteers only
# their teams' campaigns and those campaigns' contacts.
STAFF_ROLES = frozenset({Role.ORGANIZER, Role.ADMIN})


async def team_ids(session: AsyncSession, user_id: int) -> set[int]:
    rows = await session.scalars(select(TeamMember.team_id).where(TeamMember.user_id == user_id))
    return set(rows)
