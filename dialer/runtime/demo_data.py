"""Demo data for `dialer demo`: a team, volunteers, a campaign with a survey,
and contacts whose numbers make the built-in PBX simulator produce every
kind of call outcome (the simulator's default rule keys on the last digit)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.survey import CallingHours, TimeWindow
from dialer.domain.vocabulary import CampaignStatus, PhoneType, Role
from dialer.services.users import add_user, get_or_create_team
from dialer.store import campaigns, contacts, lists, people
from dialer.store.models import Campaign, Contact, ContactPhone, Team, User

DEMO_CALLER_ID = "+15145550000"
DEMO_PASSWORDS = {"alice": "volunteer-demo", "bob": "volunteer-demo", "olivia": "organizer-demo"}
# Every hour of every day, so the demo works whenever it is started; real
# campaigns default to 09:00-21:00 on weekdays and 10:00-18:00 at weekends.
ALWAYS = CallingHours(
    weekday=TimeWindow(start=time(0), end=time(23, 59, 59)),
    weekend=TimeWindow(start=time(0), end=time(23, 59, 59)),
)
TEAM_HOURS = CallingHours(
    weekday=TimeWindow(start=time(9), end=time(21)),
    weekend=TimeWindow(start=time(10), end=time(18)),
)
# Each survey is written in its team's language; "language" shows the yes/no
# answers in it too, whatever language the volunteer's screen is in.  A "no"
# to the first question skips the certainty question (skip logic).
DEMO_SURVEY = {
    "language": "en",
    "questions": [
        {
            "id": "vote",
            "label": "Do you plan to vote on election day?",
            "type": "single_choice",
            "required": True,
            "choices": [
                {"value": "yes", "label": "Yes"},
                {"value": "no", "label": "No"},
                {"value": "unsure", "label": "Not sure yet"},
            ],
            "skip": [{"when": "no", "to": "issues"}],
        },
        {
            "id": "certainty",
            "label": "How sure are you of your choice? (1-5)",
            "type": "scale",
            "min": 1,
            "max": 5,
        },
        {
            "id": "issues",
            "label": "Which issues matter most to you?",
            "type": "multiple_choice",
            "choices": [
                {"value": "housing", "label": "Housing"},
                {"value": "transit", "label": "Public transit"},
                {"value": "climate", "label": "Climate"},
            ],
        },
        {"id": "volunteer", "label": "Would you volunteer a few hours?", "type": "yes_no"},
    ],
}
# The French-speaking team's campaign: the same questions, as its organizer wrote them.
DEMO_SURVEY_FR = {
    "language": "fr",
    "questions": [
        {
            "id": "vote",
            "label": "Comptez-vous aller voter le jour du scrutin ?",
            "type": "single_choice",
            "required": True,
            "choices": [
                {"value": "yes", "label": "Oui"},
                {"value": "no", "label": "Non"},
                {"value": "unsure", "label": "Pas encore décidé"},
            ],
            "skip": [{"when": "no", "to": "issues"}],
        },
        {
            "id": "certainty",
            "label": "Êtes-vous sûr·e de votre choix ? (1 à 5)",
            "type": "scale",
            "min": 1,
            "max": 5,
        },
        {
            "id": "issues",
            "label": "Quels enjeux comptent le plus pour vous ?",
            "type": "multiple_choice",
            "choices": [
                {"value": "housing", "label": "Logement"},
                {"value": "transit", "label": "Transport en commun"},
                {"value": "climate", "label": "Climat"},
            ],
        },
        {
            "id": "volunteer",
            "label": "Seriez-vous prêt·e à donner quelques heures de bénévolat ?",
            "type": "yes_no",
        },
    ],
}
FRENCH_TEAM = "Équipe de Québec"
# (first, last, number, language, area): the last digit picks the outcome.
DEMO_CONTACTS = [
    ("Ada", "Lovelace", "+15145550107", "en", "Montréal"),  # 7: answers, talks 3 s
    ("Émile", "Nelligan", "+15145550144", "fr", "Montréal"),  # 4: answers and stays
    ("Tommy", "Douglas", "+16045550131", "en", "Vancouver"),  # 1: busy
    ("Marie", "Curie", "+33142685302", "fr", "Paris"),  # 2: never answers
    ("Grace", "Hopper", "+14165550153", "en", "Toronto"),  # 3: congestion
    ("Louise", "Arbour", "+14185550125", "fr", "Québec"),  # 5: rejected
    ("Alan", "Turing", "+12045550136", "en", "Winnipeg"),  # 6: unreachable
    ("Fatima", "Bhutto", "+15145550170", "en", "Montréal"),  # 0: answers, hangs up after 4 s
    ("Jean", "Tremblay", "+14505550184", "fr", "Laval"),  # 4: answers and stays
    ("Wei", "Zhang", "+16135550198", "en", "Ottawa"),  # 8: answers, talks 3 s
]


@dataclass(frozen=True, slots=True)
class DemoData:
    campaign_id: int
    logins: dict[str, str]
    created: bool


async def seed_demo(sessions: async_sessionmaker[AsyncSession]) -> DemoData:
    """Create the demo world once; later runs find it and change nothing."""
    async with sessions.begin() as session:
        existing = await session.scalar(
            select(Campaign).where(Campaign.title == "Get out the vote")
        )
        if existing is not None:
            return DemoData(existing.id, DEMO_PASSWORDS, created=False)
        users: dict[str, User] = {}
        for username, role, extension in (
            ("alice", Role.VOLUNTEER, "1001"),
            ("bob", Role.VOLUNTEER, "1002"),
            # Her own desk phone: Listen, Whisper and Barge on the live panel ring it.
            ("olivia", Role.ORGANIZER, "1009"),
        ):
            users[username] = await add_user(
                session,
                username=username,
                password=DEMO_PASSWORDS[username],
                role=role,
                display_name=username.title(),
                extension=extension,
                # Bob and Olivia also work with the French-speaking team.
                teams=("Montréal team",) if username == "alice" else ("Montréal team", FRENCH_TEAM),
                actor_label="demo",
            )
        team = await get_or_create_team(session, "Montréal team")
        # Calls outside a campaign follow the team's hours: the usual legal
        # window (evenings until 9 p.m., shorter at weekends), editable on /ops/teams.
        await people.set_team_calling_hours(session, team, TEAM_HOURS)
        campaign = await _add_campaign(
            session,
            "Get out the vote",
            "Thank the person for their support, ask whether they plan to vote, and offer "
            "a ride to the polling station. Be brief and friendly.",
            team,
            DEMO_SURVEY,
            users["olivia"],
        )
        french_ids: list[int] = []
        for index, (first, last, number, language, area) in enumerate(DEMO_CONTACTS):
            contact = Contact(
                first_name=first,
                last_name=last,
                language=language,
                area=area,
                tags=["demo"],
                email=f"{first.lower()}@example.org",
            )
            contact.phones = [ContactPhone(e164=number, phone_type=PhoneType.MOBILE)]
            await contacts.add_contact(session, contact)
            if language == "fr":
                french_ids.append(contact.id)
            owner = users["alice"] if index % 2 == 0 else users["bob"]
            await lists.add_entries(
                session,
                [{"campaign_id": campaign.id, "contact_id": contact.id, "volunteer_id": owner.id}],
            )
        await _seed_french_campaign(session, users, french_ids)
        return DemoData(campaign.id, DEMO_PASSWORDS, created=True)


async def _seed_french_campaign(
    session: AsyncSession, users: dict[str, User], contact_ids: list[int]
) -> None:
    """The French-speaking team's campaign, with its survey in French; its list
    holds the French-speaking contacts, for Bob."""
    team = await get_or_create_team(session, FRENCH_TEAM)
    await people.set_team_calling_hours(session, team, TEAM_HOURS)
    campaign = await _add_campaign(
        session,
        "Sortons voter",
        "Remerciez la personne de son appui, demandez-lui si elle compte voter et "
        "proposez-lui un transport jusqu'au bureau de vote. Soyez bref et chaleureux.",
        team,
        DEMO_SURVEY_FR,
        users["olivia"],
    )
    await lists.add_entries(
        session,
        [
            {"campaign_id": campaign.id, "contact_id": contact_id, "volunteer_id": users["bob"].id}
            for contact_id in contact_ids
        ],
    )


async def _add_campaign(
    session: AsyncSession,
    title: str,
    brief: str,
    team: Team,
    survey: Mapping[str, object],
    organizer: User,
) -> Campaign:
    """An active month-long campaign, open at every hour so that the demo calls at any time."""
    today = date.today()
    campaign = Campaign(
        title=title,
        brief=brief,
        team_id=team.id,
        status=CampaignStatus.ACTIVE,
        scheduled_on=today,
        starts_at=datetime.combine(today, time(9), UTC),
        ends_at=datetime.combine(today + timedelta(days=30), time(21), UTC),
        allowed_caller_ids=[DEMO_CALLER_ID, "+15145550001"],
        calling_hours=ALWAYS,
        max_attempts=3,
        retry_delay_minutes=1,
        survey=survey,
        created_by_id=organizer.id,
    )
    await campaigns.add_campaign(session, campaign)
    return campaign
