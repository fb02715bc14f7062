"""Writes ``users``, ``teams`` and ``team_members``; nothing else does.

Users are added (``add_user``) and later given an extension, a PBX and an
active flag (``update_user``), a phone (``set_phone``) and a new SIP
password for it (``renew_sip_secret``), a fresh password hash
(``set_password_hash``), a role (``set_role``), an active flag alone
(``set_active``) or an interface language (``set_language``).
Teams are added by name (``add_team``) and given the hours of their
manual calls (``set_team_calling_hours``); a user joins and leaves them
(``add_memberships``, ``remove_memberships``).  Callers own the
transaction; every function here sends its SQL before it returns.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from dialer.domain.survey import CallingHours
from dialer.domain.vocabulary import Role, VolunteerPhone
from dialer.store.models import Team, TeamMember, User


async def add_user(session: AsyncSession, user: User) -> None:
    session.add(user)
    await session.flush()


async def update_user(
    session: AsyncSession,
    user: User,
    *,
    sip_extension: str | None,
    pbx: str | None,
    is_active: bool,
) -> None:
    user.sip_extension = sip_extension
    user.pbx = pbx
    user.is_active = is_active
    await session.flush()


@dataclass(frozen=True, slots=True)
class PhoneColumns:
    """A user's phone as stored: its kind and what that kind needs."""

    phone: VolunteerPhone
    sip_extension: str | None
    sip_secret: str | None = None
    own_number: str | None = None
    own_number_approved_by_id: int | None = None
    own_number_approved_at: datetime | None = None


async def renew_sip_secret(session: AsyncSession, user_id: int, secret: str) -> None:
    """A browser phone's new SIP password (users without one keep none)."""
    await session.execute(
        update(User)
        .where(User.id == user_id, User.sip_secret.is_not(None))
        .values(sip_secret=secret)
    )


async def set_phone(session: AsyncSession, user: User, columns: PhoneColumns) -> None:
    user.phone = columns.phone
    user.sip_extension = columns.sip_extension
    user.sip_secret = columns.sip_secret
    user.own_number = columns.own_number
    user.own_number_approved_by_id = columns.own_number_approved_by_id
    user.own_number_approved_at = columns.own_number_approved_at
    await session.flush()


async def set_password_hash(session: AsyncSession, user_id: int, password_hash: str) -> None:
    await session.execute(
        update(User).where(User.id == user_id).values(password_hash=password_hash)
    )


async def set_role(session: AsyncSession, user: User, role: Role) -> None:
    user.role = role
    await session.flush()


async def set_active(session: AsyncSession, user: User, active: bool) -> None:
    user.is_active = active
    await session.flush()


async def set_language(session: AsyncSession, user_id: int, language: str) -> None:
    await session.execute(update(User).where(User.id == user_id).values(language=language))


async def add_team(session: AsyncSession, name: str) -> Team:
    team = Team(name=name)
    session.add(team)
    await session.flush()
    return team


async def set_team_calling_hours(session: AsyncSession, team: Team, hours: CallingHours) -> None:
    team.calling_hours = hours
    await session.flush()


async def add_memberships(session: AsyncSession, user_id: int, team_ids: Iterable[int]) -> None:
    session.add_all(TeamMember(team_id=team_id, user_id=user_id) for team_id in team_ids)
    await session.flush()


async def remove_memberships(
    session: AsyncSession, user_id: int, team_ids: Collection[int]
) -> None:
    for member in await session.scalars(
        select(TeamMember).where(TeamMember.user_id == user_id, TeamMember.team_id.in_(team_ids))
    ):
        await session.delete(member)
    await session.flush()
