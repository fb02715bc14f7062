"""Who belongs where: the team lookups every visibility rule starts from."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dialer.domain.vocabulary import Role
from dialer.store.models import TeamMember

# Who reaches the organizer pages, sees drafts and edits contacts outside a
# call.  Not a visibility rule: what anyone sees stops at their teams, except
# for administrators (dialer.services.access).
STAFF_ROLES = frozenset({Role.ORGANIZER, Role.ADMIN})


async def team_ids(session: AsyncSession, user_id: int) -> set[int]:
    rows = await session.scalars(select(TeamMember.team_id).where(TeamMember.user_id == user_id))
    return set(rows)


async def teams_of_users(session: AsyncSession, user_ids: Iterable[int]) -> dict[int, set[int]]:
    wanted = set(user_ids)
    found: dict[int, set[int]] = {user_id: set() for user_id in wanted}
    if wanted:
        for user_id, team_id in await session.execute(
            select(TeamMember.user_id, TeamMember.team_id).where(TeamMember.user_id.in_(wanted))
        ):
            found[user_id].add(team_id)
    return found
