"""Campaigns for the web pages: who sees which, attendance, the editor, list assignment.

The rules of calling live in :mod:`dialer.services.calling`; this module reads and
writes what the campaign pages show and edit, and audits every change.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.survey import CallingHours, SurveyDefinition
from dialer.domain.vocabulary import (
    CampaignStatus,
    DialingMode,
    DispositionOutcome,
    PowerNextCall,
    Role,
)
from dialer.services import notifications
from dialer.services.access import can_access_campaign, scope_of
from dialer.services.caller_ids import campaign_caller_ids
from dialer.services.tasks import open_tasks_for
from dialer.store import audit, lists
from dialer.store import campaigns as campaign_rows
from dialer.store.access import STAFF_ROLES
from dialer.store.models import (
    Attendance,
    CallingListEntry,
    Campaign,
    Contact,
    Disposition,
    FollowUpTask,
    Team,
    TeamMember,
    User,
    utcnow,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CampaignCard:
    campaign: Campaign
    attending: bool | None
    my_remaining: int
    my_total: int


@dataclass(frozen=True, slots=True)
class ListRow:
    entry: CallingListEntry
    contact: Contact
    last_outcome: DispositionOutcome | None


@dataclass(slots=True)
class VolunteerLoad:
    user: User
    total: int = 0
    done: int = 0

    @property
    def remaining(self) -> int:
        return self.total - self.done


@dataclass(slots=True)
class ListOverview:
    volunteers: list[VolunteerLoad] = field(default_factory=list)
    unassigned: int = 0
    total: int = 0


@dataclass(frozen=True, slots=True)
class CampaignChanges:
    """A validated edit from the campaign editor."""

    title: str
    brief: str
    team_id: int | None
    status: CampaignStatus
    scheduled_on: date | None
    starts_at: datetime | None
    ends_at: datetime | None
    allowed_caller_ids: list[str]
    calling_hours: CallingHours
    max_attempts: int
    retry_delay_minutes: int
    survey: SurveyDefinition
    # Click-to-call, or power sessions as well (dialer.services.power).
    dialing_mode: DialingMode = DialingMode.CLICK
    # In power mode, when the next contact is dialed after an answered call.
    power_next_call: PowerNextCall = PowerNextCall.AFTER_OUTCOME


async def visible_campaigns(session: AsyncSession, user: User) -> list[Campaign]:
    """The campaigns of ``user``'s teams (every one for an administrator); volunteers
    do not see drafts."""
    scope = await scope_of(session, user)
    statement = (
        select(Campaign)
        .where(scope.campaign_filter())
        .order_by(Campaign.scheduled_on.is_(None), Campaign.scheduled_on.desc(), Campaign.id.desc())
    )
    if user.role not in STAFF_ROLES:
        statement = statement.where(Campaign.status != CampaignStatus.DRAFT)
    return list(await session.scalars(statement))


async def campaign_cards(session: AsyncSession, user: User) -> list[CampaignCard]:
    campaigns = await visible_campaigns(session, user)
    if not campaigns:
        return []
    ids = [campaign.id for campaign in campaigns]
    attendance = {
        row.campaign_id: row.attending
        for row in await session.scalars(
            select(Attendance).where(Attendance.user_id == user.id, Attendance.campaign_id.in_(ids))
        )
    }
    counts = {
        row.campaign_id: (int(row.total), int(row.remaining or 0))
        for row in await session.execute(
            select(
                CallingListEntry.campaign_id,
                func.count().label("total"),
                func.sum(case((CallingListEntry.done.is_(False), 1), else_=0)).label("remaining"),
            )
            .where(CallingListEntry.volunteer_id == user.id, CallingListEntry.campaign_id.in_(ids))
            .group_by(CallingListEntry.campaign_id)
        )
    }
    return [
        CampaignCard(
            campaign,
            attendance.get(campaign.id),
            counts.get(campaign.id, (0, 0))[1],
            counts.get(campaign.id, (0, 0))[0],
        )
        for campaign in campaigns
    ]


async def set_attendance(
    session: AsyncSession, *, user_id: int, campaign_id: int, attending: bool
) -> None:
    await campaign_rows.mark_attendance(
        session, campaign_id=campaign_id, user_id=user_id, attending=attending, at=utcnow()
    )
    await audit.record(
        session,
        action="campaign.attendance",
        entity_type="campaign",
        entity_id=campaign_id,
        changes={"attending": attending},
        actor_id=user_id,
    )


async def attendees(session: AsyncSession, campaign_id: int) -> list[User]:
    rows = await session.scalars(
        select(User)
        .join(Attendance, Attendance.user_id == User.id)
        .where(Attendance.campaign_id == campaign_id, Attendance.attending.is_(True))
        .order_by(User.display_name)
    )
    return list(rows)


async def team_members(session: AsyncSession, team_id: int | None) -> list[User]:
    if team_id is None:
        return []
    rows = await session.scalars(
        select(User)
        .join(TeamMember, TeamMember.user_id == User.id)
        .where(TeamMember.team_id == team_id, User.is_active.is_(True))
        .order_by(User.display_name, User.username)
    )
    return list(rows)


async def colleagues(session: AsyncSession, user: User) -> list[User]:
    """People a follow-up task can go to: members of the user's teams, and administrators.

    The task shows its contact to its assignee, so it goes no further than
    the people who may see that contact anyway.
    """
    scope = await scope_of(session, user)
    statement = select(User).where(
        User.is_active.is_(True), scope.user_filter() | (User.role == Role.ADMIN)
    )
    return list(await session.scalars(statement.order_by(User.display_name, User.username)))


async def list_rows(
    session: AsyncSession, campaign_id: int, owner_id: int, *, limit: int = 200
) -> list[ListRow]:
    latest = (
        select(Disposition.contact_id, func.max(Disposition.id).label("last_id"))
        .where(Disposition.campaign_id == campaign_id)
        .group_by(Disposition.contact_id)
        .subquery()
    )
    rows = await session.execute(
        select(CallingListEntry, Contact, Disposition.outcome)
        .join(Contact, Contact.id == CallingListEntry.contact_id)
        .outerjoin(latest, latest.c.contact_id == Contact.id)
        .outerjoin(Disposition, Disposition.id == latest.c.last_id)
        .where(
            CallingListEntry.campaign_id == campaign_id, CallingListEntry.volunteer_id == owner_id
        )
        .order_by(
            CallingListEntry.done,
            CallingListEntry.callback_at.is_(None),
            CallingListEntry.callback_at,
            CallingListEntry.id,
        )
        .limit(limit)
    )
    return [ListRow(entry, contact, outcome) for entry, contact, outcome in rows]


async def list_overview(session: AsyncSession, campaign: Campaign) -> ListOverview:
    overview = ListOverview()
    members = {
        user.id: VolunteerLoad(user) for user in await team_members(session, campaign.team_id)
    }
    rows = await session.execute(
        select(CallingListEntry.volunteer_id, CallingListEntry.done, func.count())
        .where(CallingListEntry.campaign_id == campaign.id)
        .group_by(CallingListEntry.volunteer_id, CallingListEntry.done)
    )
    for volunteer_id, done, count in rows:
        overview.total += count
        if volunteer_id is None:
            if not done:
                overview.unassigned += count
            continue
        load = members.get(volunteer_id)
        if load is None:
            user = await session.get(User, volunteer_id)
            if user is None:
                continue
            load = members[volunteer_id] = VolunteerLoad(user)
        load.total += count
        if done:
            load.done += count
    overview.volunteers = sorted(members.values(), key=lambda load: load.user.display_name)
    return overview


async def assign_unassigned(
    session: AsyncSession, campaign_id: int, volunteer_ids: list[int], *, actor_id: int
) -> int:
    """Share the campaign's unassigned, open entries out among volunteers in turn."""
    if not volunteer_ids:
        return 0
    entries = list(
        await session.scalars(
            select(CallingListEntry)
            .where(
                CallingListEntry.campaign_id == campaign_id,
                CallingListEntry.volunteer_id.is_(None),
                CallingListEntry.done.is_(False),
            )
            .order_by(CallingListEntry.id)
        )
    )
    shares = [
        (entry, volunteer_ids[index % len(volunteer_ids)]) for index, entry in enumerate(entries)
    ]
    at = utcnow()
    await lists.assign(session, shares, at=at)
    await notifications.contacts_assigned(
        session, campaign_id, Counter(volunteer_id for _entry, volunteer_id in shares), at=at
    )
    await audit.record(
        session,
        action="list.assign",
        entity_type="campaign",
        entity_id=campaign_id,
        changes={"volunteers": volunteer_ids, "entries": len(entries)},
        actor_id=actor_id,
    )
    return len(entries)


async def move_open_entries(
    session: AsyncSession,
    campaign_id: int,
    from_id: int | None,
    to_id: int | None,
    *,
    actor_id: int,
) -> int:
    """Hand one volunteer's remaining contacts to another (or back to unassigned)."""
    condition = (
        CallingListEntry.volunteer_id.is_(None)
        if from_id is None
        else CallingListEntry.volunteer_id == from_id
    )
    entries = list(
        await session.scalars(
            select(CallingListEntry).where(
                CallingListEntry.campaign_id == campaign_id,
                condition,
                CallingListEntry.done.is_(False),
            )
        )
    )
    at = utcnow()
    await lists.assign(session, [(entry, to_id) for entry in entries], at=at)
    await notifications.contacts_assigned(session, campaign_id, {to_id: len(entries)}, at=at)
    await audit.record(
        session,
        action="list.move",
        entity_type="campaign",
        entity_id=campaign_id,
        changes={"from": from_id, "to": to_id, "entries": len(entries)},
        actor_id=actor_id,
    )
    return len(entries)


async def create_campaign(
    session: AsyncSession, *, title: str, team_id: int | None, actor_id: int
) -> Campaign:
    campaign = Campaign(title=title, team_id=team_id, created_by_id=actor_id)
    await campaign_rows.add_campaign(session, campaign)
    await audit.record(
        session,
        action="campaign.create",
        entity_type="campaign",
        entity_id=campaign.id,
        changes={"title": title, "team_id": team_id},
        actor_id=actor_id,
    )
    return campaign


def _jsonable(value: Any) -> Any:
    if isinstance(value, CallingHours | SurveyDefinition):
        return value.to_json()
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, CampaignStatus):
        return value.value
    return value


def lacks_caller_id(campaign: Campaign, default_caller_id: str) -> bool:
    """An active campaign every call of which is refused (``no_caller_id``).

    Activating it is still allowed: the caller ID can come later, from the
    editor or from DIALER_DEFAULT_CALLER_ID, and the pages warn until then.
    """
    return campaign.status is CampaignStatus.ACTIVE and not campaign_caller_ids(
        campaign, default_caller_id
    )


async def update_campaign(
    session: AsyncSession,
    campaign: Campaign,
    changes: CampaignChanges,
    *,
    actor_id: int,
    default_caller_id: str,
) -> dict[str, Any]:
    """Apply an edit; ``default_caller_id`` only decides whether to warn of no caller ID."""
    updates: dict[str, Any] = {}
    changed: dict[str, Any] = {}
    for name in CampaignChanges.__dataclass_fields__:
        new = getattr(changes, name)
        if _jsonable(getattr(campaign, name)) != _jsonable(new):
            updates[name] = new
            changed[name] = _jsonable(new)
    if changed:
        await campaign_rows.update_campaign(session, campaign, **updates)
        await audit.record(
            session,
            action="campaign.update",
            entity_type="campaign",
            entity_id=campaign.id,
            changes=changed,
            actor_id=actor_id,
        )
    if changed.keys() & {"status", "team_id"}:
        # Active now, or active and moved to a team: once per campaign and
        # volunteer (a pause and restart tells no one again).
        await notifications.campaign_activated(session, campaign, actor_id=actor_id, at=utcnow())
    if changed.keys() & {"status", "allowed_caller_ids"} and lacks_caller_id(
        campaign, default_caller_id
    ):
        log.warning(
            "campaign %s is active with no caller ID and no default caller ID: "
            "every call will be refused until one is set",
            campaign.id,
        )
    return changed


async def teams_in_view(session: AsyncSession, user: User) -> list[Team]:
    """The teams ``user`` works in: their own, or every team for an administrator."""
    scope = await scope_of(session, user)
    statement = select(Team).order_by(Team.name)
    if scope.teams is not None:
        statement = statement.where(Team.id.in_(scope.teams))
    return list(await session.scalars(statement))


async def _team_for_campaign(session: AsyncSession, user: User, team_id: int | None) -> int | None:
    """The team a campaign ``user`` creates or edits may go to; raises :class:`UnknownTeam`.

    An organizer's campaign stays in one of their teams (their only team when
    they name none), or it would leave their view; an administrator may pick
    any team, or none.
    """
    scope = await scope_of(session, user)
    if scope.teams is None:
        if team_id is not None and await session.get(Team, team_id) is None:
            raise UnknownTeam(team_id)
        return team_id
    if team_id is None and len(scope.teams) == 1:
        return next(iter(scope.teams))
    if team_id is None or team_id not in scope.teams:
        raise UnknownTeam(team_id)
    return team_id


async def callbacks_due(
    session: AsyncSession, campaign_id: int, owner_id: int, now: datetime
) -> int:
    found = await session.scalar(
        select(func.count())
        .select_from(CallingListEntry)
        .where(
            and_(
                CallingListEntry.campaign_id == campaign_id,
                CallingListEntry.volunteer_id == owner_id,
                CallingListEntry.done.is_(False),
                CallingListEntry.callback_at.is_not(None),
                CallingListEntry.callback_at <= now,
            )
        )
    )
    return int(found or 0)


class UnknownTeam(Exception):
    """The team chosen for a campaign does not exist, or is not one of the user's."""


class UnknownVolunteer(Exception):
    """A volunteer named for a list is not on the campaign's team."""


@dataclass(frozen=True, slots=True)
class VolunteerHome:
    cards: list[CampaignCard]
    tasks: list[tuple[FollowUpTask, Contact]]


@dataclass(frozen=True, slots=True)
class CampaignPage:
    """One volunteer's list in a campaign, and who else is on it."""

    members: list[User]
    rows: list[ListRow]
    attendees: list[User]
    callbacks_due: int


class CampaignService:
    """Campaigns as the pages show and edit them; each call is one transaction."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def visible_to(self, user: User, campaign_id: int) -> Campaign | None:
        """The campaign, when it exists and ``user`` may see it."""
        async with self._sessions() as session:
            campaign = await session.get(Campaign, campaign_id)
            if campaign is None or not await can_access_campaign(session, user, campaign):
                return None
        return campaign

    async def volunteer_home(self, user: User) -> VolunteerHome:
        async with self._sessions() as session:
            cards = await campaign_cards(session, user)
            tasks = await open_tasks_for(session, user.id)
        return VolunteerHome(cards, tasks)

    async def set_attendance(self, *, user_id: int, campaign_id: int, attending: bool) -> None:
        async with self._sessions.begin() as session:
            await set_attendance(
                session, user_id=user_id, campaign_id=campaign_id, attending=attending
            )

    async def campaign_page(
        self, campaign: Campaign, *, viewer_id: int, owner_id: int, now: datetime
    ) -> CampaignPage | None:
        """``owner_id``'s list; None when that is someone else not on the campaign's team."""
        async with self._sessions() as session:
            members = await team_members(session, campaign.team_id)
            if owner_id != viewer_id and owner_id not in {member.id for member in members}:
                return None
            rows = await list_rows(session, campaign.id, owner_id)
            going = await attendees(session, campaign.id)
            due = await callbacks_due(session, campaign.id, owner_id, now)
        return CampaignPage(members, rows, going, due)

    async def visible_campaigns(self, user: User) -> list[Campaign]:
        async with self._sessions() as session:
            return await visible_campaigns(session, user)

    async def campaigns_and_teams(self, user: User) -> tuple[list[Campaign], list[Team]]:
        async with self._sessions() as session:
            campaigns = await visible_campaigns(session, user)
            teams = await teams_in_view(session, user)
        return campaigns, teams

    async def teams_in_view(self, user: User) -> list[Team]:
        async with self._sessions() as session:
            return await teams_in_view(session, user)

    async def team_members(self, team_id: int | None) -> list[User]:
        async with self._sessions() as session:
            return await team_members(session, team_id)

    async def create(self, actor: User, *, title: str, team_id: int | None) -> Campaign:
        """A new draft; raises :class:`UnknownTeam` (nothing is written then)."""
        async with self._sessions.begin() as session:
            team_id = await _team_for_campaign(session, actor, team_id)
            return await create_campaign(session, title=title, team_id=team_id, actor_id=actor.id)

    async def update(
        self,
        campaign_id: int,
        changes: CampaignChanges,
        *,
        actor: User,
        default_caller_id: str,
    ) -> dict[str, Any]:
        """Apply an edit; raises :class:`UnknownTeam` (nothing is written then)."""
        async with self._sessions.begin() as session:
            stored = await session.get(Campaign, campaign_id)
            assert stored is not None
            if changes.team_id != stored.team_id:
                changes = dataclasses.replace(
                    changes, team_id=await _team_for_campaign(session, actor, changes.team_id)
                )
            return await update_campaign(
                session,
                stored,
                changes,
                actor_id=actor.id,
                default_caller_id=default_caller_id,
            )

    async def list_overview(self, campaign: Campaign) -> ListOverview:
        async with self._sessions() as session:
            return await list_overview(session, campaign)

    async def share_unassigned(
        self, campaign: Campaign, volunteer_ids: list[int], *, actor_id: int
    ) -> int:
        """Share the open, unassigned entries among those of ``volunteer_ids`` on the team."""
        async with self._sessions.begin() as session:
            members = {member.id for member in await team_members(session, campaign.team_id)}
            chosen = [volunteer_id for volunteer_id in volunteer_ids if volunteer_id in members]
            return await assign_unassigned(session, campaign.id, chosen, actor_id=actor_id)

    async def move_open_entries(
        self, campaign: Campaign, from_id: int | None, to_id: int | None, *, actor_id: int
    ) -> int:
        """Hand open entries on; raises :class:`UnknownVolunteer` for someone off the team."""
        async with self._sessions.begin() as session:
            members = {member.id for member in await team_members(session, campaign.team_id)}
            if (from_id is not None and from_id not in members) or (
                to_id is not None and to_id not in members
            ):
                raise UnknownVolunteer()
            if from_id == to_id:
                return 0
            return await move_open_entries(session, campaign.id, from_id, to_id, actor_id=actor_id)
