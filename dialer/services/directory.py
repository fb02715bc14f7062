"""Names and the volunteer roster, for the live panel."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.vocabulary import Role
from dialer.services.access import scope_of
from dialer.services.accounts import users_seen_since
from dialer.store.access import teams_of_users
from dialer.store.models import Campaign, Contact, User


@dataclass(slots=True)
class Names:
    """Display names by id; an id the database does not know is left out."""

    users: dict[int, str] = field(default_factory=dict)
    contacts: dict[int, str] = field(default_factory=dict)
    campaigns: dict[int, str] = field(default_factory=dict)
    # Who may see what on the panel: the teams of each user asked about, and
    # the team of each campaign (None: no team, administrators only).
    user_teams: dict[int, frozenset[int]] = field(default_factory=dict)
    campaign_teams: dict[int, int | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RosterEntry:
    volunteer_id: int
    volunteer_name: str
    extension: str | None
    online: bool
    teams: frozenset[int] = frozenset()


class Directory:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def names(
        self, *, users: Collection[int], contacts: Collection[int], campaigns: Collection[int]
    ) -> Names:
        found = Names()
        async with self._sessions() as session:
            if users:
                for user_id, display, username in await session.execute(
                    select(User.id, User.display_name, User.username).where(User.id.in_(users))
                ):
                    found.users[user_id] = display or username
                found.user_teams = {
                    user_id: frozenset(teams)
                    for user_id, teams in (await teams_of_users(session, found.users)).items()
                }
            if contacts:
                for contact_id, first, last in await session.execute(
                    select(Contact.id, Contact.first_name, Contact.last_name).where(
                        Contact.id.in_(contacts)
                    )
                ):
                    found.contacts[contact_id] = f"{first} {last}".strip()
            if campaigns:
                for campaign_id, title, team_id in await session.execute(
                    select(Campaign.id, Campaign.title, Campaign.team_id).where(
                        Campaign.id.in_(campaigns)
                    )
                ):
                    found.campaigns[campaign_id] = title
                    found.campaign_teams[campaign_id] = team_id
        return found

    async def roster(self, *, online_since: datetime) -> list[RosterEntry]:
        """Every active volunteer, online when they used a session since ``online_since``."""
        async with self._sessions() as session:
            online = await users_seen_since(session, online_since)
            rows = await session.execute(
                select(User.id, User.display_name, User.username, User.sip_extension)
                .where(User.is_active.is_(True), User.role == Role.VOLUNTEER)
                .order_by(User.display_name, User.username)
            )
            people = list(rows)
            teams = await teams_of_users(session, [row[0] for row in people])
            return [
                RosterEntry(
                    user_id,
                    display or username,
                    extension,
                    user_id in online,
                    frozenset(teams[user_id]),
                )
                for user_id, display, username, extension in people
            ]

    async def scope(self, user: User) -> frozenset[int] | None:
        """The teams whose calls ``user`` sees on the panel; None: all of them."""
        async with self._sessions() as session:
            return (await scope_of(session, user)).teams
