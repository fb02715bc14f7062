"""A small, realistic world for service tests: a team, volunteers, a campaign
with a survey, and contacts in Montreal, Vancouver and Paris."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.compliance import DialingPolicy
from dialer.domain.vocabulary import CampaignStatus, Role
from dialer.live.broadcaster import Broadcaster
from dialer.services.calling import CallService
from dialer.services.lists import CallingLists
from dialer.services.live_calls import CallPublisher
from dialer.services.outcomes import OutcomeService
from dialer.store.models import (
    CallingListEntry,
    Campaign,
    Contact,
    ContactPhone,
    Team,
    TeamMember,
    User,
)

# Tuesday 2026-11-24 17:30 UTC: 12:30 in Montreal, 09:30 in Vancouver, 18:30 in Paris.
TUESDAY_AFTERNOON = datetime(2026, 11, 24, 17, 30, tzinfo=UTC)
CALLER_ID = "+15145550000"
SURVEY: dict[str, Any] = {
    "questions": [
        {
            "id": "vote",
            "label": "Will you vote?",
            "type": "single_choice",
            "required": True,
            "choices": [{"value": "yes", "label": "Yes"}, {"value": "no", "label": "No"}],
        },
        {"id": "volunteer", "label": "Would you volunteer?", "type": "yes_no"},
    ]
}

POLICY = DialingPolicy.parse(["CA", "+33"], ["+1900", "+1976"])


@dataclass
class Clock:
    now: datetime = TUESDAY_AFTERNOON

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    team_id: int = 0
    other_team_id: int = 0
    campaign_id: int = 0
    other_campaign_id: int = 0
    users: dict[str, int] = field(default_factory=dict)
    contacts: dict[str, int] = field(default_factory=dict)

    def service(self, **overrides: Any) -> CallService:
        options: dict[str, Any] = {
            "policy": POLICY,
            "volunteer_channel": "PJSIP/{extension}",
            "outbound_context": "dialer-outbound",
            "default_caller_id": CALLER_ID,
            "clock": self.clock,
        }
        options.update(overrides)
        return CallService(self.sessions, **options)

    def outcomes(self, publisher: CallPublisher | None = None) -> OutcomeService:
        return OutcomeService(
            self.sessions,
            region="CA",
            publisher=publisher or CallPublisher(self.sessions, Broadcaster(), self.clock),
            clock=self.clock,
        )

    def lists(self) -> CallingLists:
        return CallingLists(self.sessions, policy=POLICY, clock=self.clock)


async def build_world(sessions: async_sessionmaker[AsyncSession]) -> World:
    world = World(sessions, Clock())
    async with sessions.begin() as session:
        team, other_team = Team(name="Montreal"), Team(name="Elsewhere")
        session.add_all([team, other_team])
        await session.flush()
        people = {
            "alice": (Role.VOLUNTEER, "1001", team),
            "bob": (Role.VOLUNTEER, "1002", team),
            "carol": (Role.VOLUNTEER, "1003", other_team),
            "dave": (Role.VOLUNTEER, None, team),
            "olivia": (Role.ORGANIZER, None, team),
        }
        for username, (role, extension, member_of) in people.items():
            user = User(
                username=username,
                display_name=username.title(),
                role=role,
                password_hash="x",
                sip_extension=extension,
            )
            session.add(user)
            await session.flush()
            session.add(TeamMember(team_id=member_of.id, user_id=user.id))
            world.users[username] = user.id
        campaign = Campaign(
            title="GOTV",
            status=CampaignStatus.ACTIVE,
            team_id=team.id,
            allowed_caller_ids=[CALLER_ID, "+15145550001"],
            max_attempts=2,
            retry_delay_minutes=60,
            survey=SURVEY,
        )
        other = Campaign(title="Other", status=CampaignStatus.ACTIVE, team_id=other_team.id)
        session.add_all([campaign, other])
        await session.flush()
        world.team_id, world.other_team_id = team.id, other_team.id
        world.campaign_id, world.other_campaign_id = campaign.id, other.id
        contacts = {
            "montreal": ("Ada", "+15145550184", None, "alice", campaign),
            "vancouver": ("Tommy", "+16045550111", None, "alice", campaign),
            "paris": ("Marie", "+33142685300", None, "alice", campaign),
            "bob_contact": ("Grace", "+15145550185", None, "bob", campaign),
            "other_team": ("Alan", "+15145550186", None, "carol", other),
            "explicit_zone": ("Zoe", "+15145550187", "Europe/Paris", "alice", campaign),
            "premium": ("Prem", "+19005550100", None, "alice", campaign),
            "no_answer": ("Nora", "+15145550172", None, "alice", campaign),
            "congestion": ("Cong", "+15145550173", None, "alice", campaign),
            "unreachable": ("Una", "+15145550176", None, "alice", campaign),
        }
        for key, (name, number, zone, owner, on_campaign) in contacts.items():
            contact = Contact(first_name=name, last_name="Test", timezone=zone)
            contact.phones = [ContactPhone(e164=number)]
            session.add(contact)
            await session.flush()
            session.add(
                CallingListEntry(
                    campaign_id=on_campaign.id,
                    contact_id=contact.id,
                    volunteer_id=world.users[owner],
                )
            )
            world.contacts[key] = contact.id
    return world
