"""Team settings: the hours of manual calls, and the note the call screen shows.

A call made outside any campaign follows the calling hours of the caller's
teams.  A caller in several teams may call when *any* of them allows it
(the most permissive): each team's hours are a permission its organizers
give their members, a call outside a campaign belongs to every team of its
caller (:func:`dialer.services.access.call_teams`) and shows in each team's
history, and joining a second team should never take away hours the first
one gave.  A caller in no team (an administrator) follows the default
:class:`~dialer.domain.survey.CallingHours`.

Organizers change the hours of their own teams, administrators of any team;
each change is one audit entry with the old and new hours.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from dialer.domain.calling_windows import HoursStatus, hours_status
from dialer.domain.compliance import contact_zones
from dialer.domain.survey import CallingHours
from dialer.domain.vocabulary import CampaignStatus, Role
from dialer.services.access import can_access_contact, scope_of
from dialer.services.common import NotAllowed
from dialer.store import audit, people
from dialer.store.access import team_ids
from dialer.store.models import CallingListEntry, Campaign, Contact, Team, User


async def manual_call_hours(session: AsyncSession, teams: Collection[int]) -> list[CallingHours]:
    """The hours a manual call may be made under: each of the caller's teams'
    (any one allowing it is enough), or the default for a caller in no team."""
    if not teams:
        return [CallingHours()]
    found = list(await session.scalars(select(Team.calling_hours).where(Team.id.in_(teams))))
    return found or [CallingHours()]


@dataclass(frozen=True, slots=True)
class HoursNote:
    """The calling-hours note of a contact's Call tab."""

    status: HoursStatus
    # "campaign" (the page's campaign or the contact's campaigns), "team"
    # (the caller's teams') or "default" (a caller in no team).
    source: str


class TeamService:
    """Teams as organizers see them; each call is one transaction."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], fallback_zone: str) -> None:
        self._sessions = sessions
        self._fallback_zone = fallback_zone

    async def teams_in_view(self, actor: User) -> list[Team]:
        """Every team for an administrator; an organizer's own teams."""
        async with self._sessions() as session:
            statement = select(Team).order_by(Team.name, Team.id)
            if actor.role is not Role.ADMIN:
                statement = statement.where(Team.id.in_(await team_ids(session, actor.id)))
            return list(await session.scalars(statement))

    async def set_calling_hours(self, actor: User, team_id: int, hours: CallingHours) -> Team:
        """Raises LookupError (no such team) or NotAllowed (not one of the actor's teams)."""
        async with self._sessions.begin() as session:
            team = await session.get(Team, team_id)
            if team is None:
                raise LookupError(team_id)
            if actor.role is not Role.ADMIN and (
                actor.role is not Role.ORGANIZER or team.id not in await team_ids(session, actor.id)
            ):
                raise NotAllowed("not one of your teams")
            before = team.calling_hours
            if before == hours:
                return team
            await people.set_team_calling_hours(session, team, hours)
            await audit.record(
                session,
                action="team.calling_hours",
                entity_type="team",
                entity_id=team.id,
                changes={"calling_hours": {"old": before.to_json(), "new": hours.to_json()}},
                actor_id=actor.id,
            )
            return team

    async def hours_note(
        self, viewer: User, contact_id: int, campaign_id: int | None, *, now: datetime
    ) -> HoursNote | None:
        """When a call to the contact may start, under the rules that apply to
        ``viewer``'s call from this page; None when the contact is not in view
        or has no number.

        Under a campaign, the campaign's hours.  Without one, a call still goes
        under one of the contact's active campaigns in view when there are any
        (:meth:`dialer.services.calling.CallService.start_call`): any of them
        open is enough.  Otherwise it is a manual call, under the viewer's
        teams' hours.
        """
        async with self._sessions() as session:
            teams = await team_ids(session, viewer.id)
            if not await can_access_contact(session, viewer, contact_id, teams):
                return None
            contact = await session.get(Contact, contact_id, options=[selectinload(Contact.phones)])
            if contact is None or not contact.phones:
                return None
            usable = [p for p in contact.phones if not p.wrong_number and not p.do_not_call]
            zones = contact_zones(
                (usable or contact.phones)[0].e164, contact.timezone, self._fallback_zone
            )
            scope = await scope_of(session, viewer)
            statement = (
                select(Campaign)
                .join(CallingListEntry, CallingListEntry.campaign_id == Campaign.id)
                .where(CallingListEntry.contact_id == contact_id, scope.campaign_filter())
            )
            if campaign_id is not None:
                statement = statement.where(Campaign.id == campaign_id)
            campaigns = list(await session.scalars(statement))
            if campaign_id is None and campaigns:
                # Paused and closed campaigns refuse the call whatever the hour.
                campaigns = [c for c in campaigns if c.status is CampaignStatus.ACTIVE]
                if not campaigns:
                    return None
            if campaigns:
                options, source = [c.calling_hours for c in campaigns], "campaign"
            elif campaign_id is not None:
                return None
            else:
                # A caller in no team (an administrator) follows the default hours.
                options = await manual_call_hours(session, teams)
                source = "team" if teams else "default"
        return HoursNote(hours_status(options, zones, now), source)
