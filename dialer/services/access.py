"""Who may see what: the visibility rules every use case checks.

Teams are the walls.  A volunteer and an organizer both see their teams'
campaigns, those campaigns' contacts and the calls made for them; an
organizer additionally runs those campaigns and manages the people of those
teams.  Administrators alone see across teams.  A call outside any campaign
belongs to the teams of the volunteer who made it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from dialer.domain.vocabulary import Role
from dialer.store.access import team_ids
from dialer.store.models import CallAttempt, CallingListEntry, Campaign, Contact, TeamMember, User


@dataclass(frozen=True, slots=True)
class Scope:
    """The teams one user's view covers; ``teams`` is None for an administrator (all)."""

    user_id: int
    teams: frozenset[int] | None

    @property
    def everything(self) -> bool:
        return self.teams is None

    def covers(self, team_id: int | None) -> bool:
        return self.teams is None or (team_id is not None and team_id in self.teams)

    def covers_any(self, teams: Iterable[int]) -> bool:
        return self.teams is None or not self.teams.isdisjoint(teams)

    def campaign_filter(self) -> ColumnElement[bool]:
        """A WHERE clause on :class:`Campaign` for the campaigns in view."""
        if self.teams is None:
            return true()
        if not self.teams:
            return false()
        return Campaign.team_id.in_(self.teams)

    def contact_filter(self, campaign_id: int | None = None) -> ColumnElement[bool]:
        """A WHERE clause on :class:`Contact`: on a list of a campaign in view
        (of ``campaign_id`` only, when given)."""
        if self.teams is None and campaign_id is None:
            return true()
        conditions: list[ColumnElement[bool]] = [
            CallingListEntry.contact_id == Contact.id,
            CallingListEntry.campaign_id == Campaign.id,
            self.campaign_filter(),
        ]
        if campaign_id is not None:
            conditions.append(Campaign.id == campaign_id)
        return exists().where(*conditions)

    def work_filter(
        self, campaign_id: InstrumentedAttribute[Any], author_id: InstrumentedAttribute[Any]
    ) -> ColumnElement[bool]:
        """A WHERE clause on a call, an outcome or a task: done for a campaign in
        view, or outside any campaign by someone of a team in view."""
        if self.teams is None:
            return true()
        return or_(
            campaign_id.in_(select(Campaign.id).where(self.campaign_filter())),
            and_(campaign_id.is_(None), author_id.in_(select(User.id).where(self.user_filter()))),
        )

    def user_filter(self) -> ColumnElement[bool]:
        """A WHERE clause on :class:`User`: members of a team in view."""
        if self.teams is None:
            return true()
        if not self.teams:
            return User.id == self.user_id
        return (User.id == self.user_id) | User.id.in_(
            select(TeamMember.user_id).where(TeamMember.team_id.in_(self.teams))
        )


async def scope_of(session: AsyncSession, user: User) -> Scope:
    if user.role is Role.ADMIN:
        return Scope(user.id, None)
    return Scope(user.id, frozenset(await team_ids(session, user.id)))


async def can_access_campaign(
    session: AsyncSession, user: User, campaign: Campaign, teams: set[int] | None = None
) -> bool:
    if user.role is Role.ADMIN:
        return True
    if teams is None:
        teams = await team_ids(session, user.id)
    return campaign.team_id is not None and campaign.team_id in teams


async def can_access_contact(
    session: AsyncSession, user: User, contact_id: int, teams: set[int] | None = None
) -> bool:
    """A contact is in view when it is on a list of a campaign in view."""
    if user.role is Role.ADMIN:
        return True
    if teams is None:
        teams = await team_ids(session, user.id)
    scope = Scope(user.id, frozenset(teams))
    found = await session.scalar(
        select(exists().where(Contact.id == contact_id, scope.contact_filter()))
    )
    return bool(found)


async def call_teams(session: AsyncSession, call: CallAttempt) -> set[int]:
    """The teams a call belongs to: its campaign's, or else its volunteer's."""
    if call.campaign_id is not None:
        team_id = await session.scalar(
            select(Campaign.team_id).where(Campaign.id == call.campaign_id)
        )
        return {team_id} if team_id is not None else set()
    return await team_ids(session, call.volunteer_id)


async def can_oversee_call(session: AsyncSession, user: User, call: CallAttempt) -> bool:
    """Whether ``user`` may act on someone's call: hang it up, record its outcome.

    Its volunteer may; so may an organizer of a team the call belongs to, and
    an administrator.
    """
    if call.volunteer_id == user.id or user.role is Role.ADMIN:
        return True
    if user.role is not Role.ORGANIZER:
        return False
    scope = await scope_of(session, user)
    return scope.covers_any(await call_teams(session, call))


async def can_manage_user(session: AsyncSession, actor: User, target: User) -> bool:
    """Organizers manage the non-administrators of their teams; administrators, everyone."""
    if actor.role is Role.ADMIN:
        return True
    if actor.role is not Role.ORGANIZER or target.role is Role.ADMIN:
        return False
    if target.id == actor.id:
        return True
    scope = await scope_of(session, actor)
    return scope.covers_any(await team_ids(session, target.id))


async def can_act_on_account(session: AsyncSession, actor: User, target: User) -> bool:
    """Whether ``actor`` may reset ``target``'s password, change their role,
    deactivate them, or change what phone their calls ring (their own number).

    These act on the whole account, in every team the person is in: an
    organizer does them only to a volunteer all of whose teams are the
    organizer's own, else they would reach across another team's wall (a
    reset password signs in as an organizer of a team they don't run).
    """
    if actor.role is Role.ADMIN:
        return True
    if actor.role is not Role.ORGANIZER or target.role is not Role.VOLUNTEER:
        return False
    teams = await team_ids(session, target.id)
    scope = await scope_of(session, actor)
    return bool(teams) and all(scope.covers(team) for team in teams)


async def may_hand_task_to(
    session: AsyncSession,
    author: User,
    assignee: User,
    contact_id: int,
    campaign: Campaign | None,
) -> bool:
    """Whether ``author`` may give ``assignee`` a follow-up task about a contact.

    A task shows its contact and its text to its assignee: it goes only to
    someone who may see the contact and, for a campaign's task, that
    campaign; outside a campaign, to a teammate of its author.  An
    administrator sees everything anyway.
    """
    if assignee.role is Role.ADMIN:
        return True
    if not await can_access_contact(session, assignee, contact_id):
        return False
    if campaign is not None:
        return await can_access_campaign(session, assignee, campaign)
    scope = await scope_of(session, author)
    return scope.covers_any(await team_ids(session, assignee.id))
