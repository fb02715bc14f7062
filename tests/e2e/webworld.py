"""A small world for the web tests: people in every role, a campaign, contacts,
and the app built on a real Runtime (PostgreSQL; optionally the AMI simulator)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from functools import cache
from typing import Any

from aiohttp import web
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.notifications import NotificationKind, dedup_key
from dialer.domain.passwords import hash_password
from dialer.domain.survey import CallingHours, TimeWindow
from dialer.domain.vocabulary import CallOutcome, CallState, CampaignStatus, Role, TaskStatus
from dialer.runtime.bootstrap import Runtime, build_runtime, web_app
from dialer.runtime.settings import Settings
from dialer.store.models import (
    CallAttempt,
    CallingListEntry,
    Campaign,
    Contact,
    ContactPhone,
    FollowUpTask,
    ImportJob,
    ImportJobRow,
    Notification,
    Team,
    TeamMember,
    User,
)
from web.config import WebConfig

PASSWORD = "correct horse battery staple"
CALLER_ID = "+15145550000"
AMI_SECRET = "web-test-secret"
ALL_DAY = CallingHours(
    weekday=TimeWindow(start=time(0), end=time(23, 59, 59, 999999)),
    weekend=TimeWindow(start=time(0), end=time(23, 59, 59, 999999)),
)
SURVEY: dict[str, Any] = {
    "questions": [
        {
            "id": "vote",
            "label": "Will you vote on Sunday?",
            "type": "single_choice",
            "required": True,
            "choices": [
                {"value": "yes", "label": "Yes, for sure"},
                {"value": "maybe", "label": "Maybe"},
                {"value": "no", "label": "No"},
            ],
        },
        {"id": "volunteer", "label": "Would you volunteer with us?", "type": "yes_no"},
        {
            "id": "issues",
            "label": "Which issues matter most?",
            "type": "multiple_choice",
            "choices": [
                {"value": "housing", "label": "Housing"},
                {"value": "transit", "label": "Transit"},
            ],
        },
    ]
}


@cache
def password_hash() -> str:
    return hash_password(PASSWORD)


def midday_zone(now: datetime | None = None) -> str:
    """An Etc/GMT zone where it is about 1 p.m. now, inside default calling hours."""
    hour = (now or datetime.now(UTC)).hour
    offset = 13 - hour  # hours ahead of UTC
    if offset == 0:
        return "Etc/GMT"
    # Etc/GMT zones have inverted signs: Etc/GMT-5 is UTC+5.
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


@dataclass
class WebWorld:
    sessions: async_sessionmaker[AsyncSession]
    users: dict[str, int] = field(default_factory=dict)
    contacts: dict[str, int] = field(default_factory=dict)
    phones: dict[str, int] = field(default_factory=dict)
    campaign_id: int = 0
    other_campaign_id: int = 0
    team_id: int = 0
    other_team_id: int = 0


# Contacts: key -> (first, last, number, owner, on the main campaign?, language)
CONTACTS: dict[str, tuple[str, str, str, str, bool, str | None]] = {
    # Last digit 7: the simulator answers after 1 s and talks 3 s (scaled).
    "ada": ("Ada", "Lovelace", "+15145550187", "alice", True, "en"),
    # Last digit 4: answers and stays on the line until someone hangs up.
    "marie": ("Marie", "Curie", "+15145550194", "alice", True, "fr"),
    "grace": ("Grace", "Hopper", "+15145550168", "bob", True, "en"),
    "gustave": ("Gustave", "Eiffel", "+15145550174", "bob", True, "fr"),
    "alan": ("Alan", "Turing", "+15145550158", "carol", False, "en"),
}


async def build_web_world(sessions: async_sessionmaker[AsyncSession]) -> WebWorld:
    world = WebWorld(sessions)
    zone = midday_zone()
    async with sessions.begin() as session:
        team, other_team = Team(name="Montreal"), Team(name="Quebec")
        session.add_all([team, other_team])
        await session.flush()
        people = {
            "alice": (Role.VOLUNTEER, "1001", team, "Alice Martin", "en"),
            "bob": (Role.VOLUNTEER, "1002", team, "Bob Tremblay", "fr"),
            "carol": (Role.VOLUNTEER, "1003", other_team, "Carol Roy", None),
            "olivia": (Role.ORGANIZER, None, team, "Olivia Organizer", "en"),
            "oscar": (Role.ORGANIZER, "1009", other_team, "Oscar Organizer", "fr"),
            "adam": (Role.ADMIN, None, None, "Adam Admin", None),
        }
        for username, (role, extension, member_of, name, language) in people.items():
            user = User(
                username=username,
                display_name=name,
                role=role,
                password_hash=password_hash(),
                sip_extension=extension,
                language=language,
            )
            session.add(user)
            await session.flush()
            if member_of is not None:
                session.add(TeamMember(team_id=member_of.id, user_id=user.id))
            world.users[username] = user.id
        campaign = Campaign(
            title="Get out the vote",
            brief="Remind people the vote is on Sunday.\nBe kind; thank them.",
            status=CampaignStatus.ACTIVE,
            team_id=team.id,
            allowed_caller_ids=[CALLER_ID, "+15145550001"],
            calling_hours=ALL_DAY,
            max_attempts=3,
            retry_delay_minutes=0,
            survey=SURVEY,
        )
        other = Campaign(
            title="Quebec canvass",
            status=CampaignStatus.ACTIVE,
            team_id=other_team.id,
            calling_hours=ALL_DAY,
        )
        session.add_all([campaign, other])
        await session.flush()
        world.campaign_id, world.other_campaign_id, world.team_id = campaign.id, other.id, team.id
        world.other_team_id = other_team.id
        for key, (first, last, number, owner, main, language) in CONTACTS.items():
            contact = Contact(
                first_name=first,
                last_name=last,
                language=language,
                timezone=zone,
                tags=["voter"] if key in ("ada", "grace") else ["member"],
                support_score=4 if key == "ada" else None,
            )
            contact.phones = [ContactPhone(e164=number)]
            session.add(contact)
            await session.flush()
            session.add(
                CallingListEntry(
                    campaign_id=campaign.id if main else other.id,
                    contact_id=contact.id,
                    volunteer_id=world.users[owner],
                )
            )
            world.contacts[key] = contact.id
            world.phones[key] = contact.phones[0].id
    return world


# -- more rows, for the tests that need them -------------------------------------------


async def add_task(
    world: WebWorld,
    assignee: str,
    *,
    contact: str = "ada",
    author: str = "alice",
    main: bool = True,
    done: bool = False,
    description: str = "Call back about the vote",
) -> int:
    """A follow-up task about ``contact`` for the main (or the other) campaign."""
    async with world.sessions.begin() as session:
        task = FollowUpTask(
            contact_id=world.contacts[contact],
            assignee_id=world.users[assignee],
            created_by_id=world.users[author],
            campaign_id=world.campaign_id if main else world.other_campaign_id,
            description=description,
            status=TaskStatus.DONE if done else TaskStatus.OPEN,
            completed_at=datetime.now(UTC) if done else None,
        )
        session.add(task)
        await session.flush()
        return task.id


async def add_notification(world: WebWorld, username: str, *, main: bool = True) -> int:
    """An unread "new campaign" notification for ``username`` about the main
    (or the other) campaign."""
    campaign_id = world.campaign_id if main else world.other_campaign_id
    async with world.sessions.begin() as session:
        notification = Notification(
            user_id=world.users[username],
            kind=NotificationKind.NEW_CAMPAIGN,
            dedup_key=dedup_key(NotificationKind.NEW_CAMPAIGN, campaign_id),
            campaign_id=campaign_id,
        )
        session.add(notification)
        await session.flush()
        return notification.id


async def add_import_job(world: WebWorld, *, main: bool = True) -> int:
    """A finished import of the main (or the other) campaign with one rejected row."""
    async with world.sessions.begin() as session:
        job = ImportJob(
            campaign_id=world.campaign_id if main else world.other_campaign_id,
            file_name="members.csv",
            state="done",
            finished_at=datetime.now(UTC),
        )
        session.add(job)
        await session.flush()
        session.add(
            ImportJobRow(
                job_id=job.id,
                kind="rejected",
                line=2,
                data={"cells": ["Nobody", "not a number"], "reason": "no valid phone number"},
            )
        )
        return job.id


async def add_answered_call(
    world: WebWorld, volunteer: str, contact: str, *, main: bool = True
) -> str:
    """An ended call that ``contact`` answered, its outcome still owed; for the
    main campaign, or (``main=False``) a manual call outside any campaign."""
    now = datetime.now(UTC)
    call_id = f"answered-{volunteer}-{contact}"
    async with world.sessions.begin() as session:
        session.add(
            CallAttempt(
                call_id=call_id,
                campaign_id=world.campaign_id if main else None,
                contact_id=world.contacts[contact],
                phone_id=world.phones[contact],
                number_e164=CONTACTS[contact][2],
                volunteer_id=world.users[volunteer],
                caller_id=CALLER_ID,
                state=CallState.ENDED,
                outcome=CallOutcome.COMPLETED,
                requested_at=now,
                volunteer_answered_at=now,
                contact_answered_at=now,
                ended_at=now,
            )
        )
    return call_id


def test_settings(pg_url: str, *, ami_port: int = 0) -> Settings:
    return Settings(
        _env_file=None,
        database_url=SecretStr(pg_url),
        default_caller_id=CALLER_ID,
        allowed_destinations="CA,+33",
        ami_host="127.0.0.1",
        ami_port=ami_port or 5038,
        ami_secret=SecretStr(AMI_SECRET),
        ami_ping_interval=1.0,
        ami_ping_timeout=0.5,
        ami_reconnect_max_delay=0.5,
        originate_timeout_ms=5000,
    )


def web_config(**overrides: Any) -> WebConfig:
    values: dict[str, Any] = {
        "public_url": "http://127.0.0.1",
        "default_language": "en",
        "default_timezone": "America/Toronto",
    }
    values.update(overrides)
    return WebConfig(_env_file=None, **values)


@dataclass
class Served:
    runtime: Runtime
    app: web.Application
    runner: web.AppRunner
    url: str
    extras: dict[str, Any] = field(default_factory=dict)


async def wait_until_connected(pbx: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not pbx.connected:
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def serve(
    pg_url: str, *, with_simulator: bool = False, time_scale: float = 0.25, **config: Any
) -> AsyncIterator[Served]:
    """The app on a real port; with the AMI simulator and a worker when asked."""
    simulator = None
    pbx = None
    worker_task: asyncio.Task[None] | None = None
    if with_simulator:
        from ami_bridge.client import AmiClient
        from ami_bridge.pbx import AmiPbx
        from ami_bridge.simulator import AmiSimulator

        simulator = AmiSimulator(secret=AMI_SECRET, time_scale=time_scale)
        await simulator.start()
        settings = test_settings(pg_url, ami_port=simulator.port)
        client = AmiClient(
            "127.0.0.1",
            simulator.port,
            "dialer",
            SecretStr(AMI_SECRET),
            action_timeout=2.0,
            ping_interval=1.0,
            ping_timeout=0.5,
            reconnect_initial_delay=0.05,
            reconnect_max_delay=0.2,
        )
        pbx = AmiPbx(client)
        runtime = build_runtime(settings, pbx)
        assert runtime.worker is not None
        runtime.worker.poll_interval = 0.05
        # The worker starts the PBX link itself (after following calls left in flight).
        worker_task = asyncio.create_task(runtime.worker.run(), name="test-worker")
        await wait_until_connected(pbx)
    else:
        runtime = build_runtime(test_settings(pg_url))
    app = web_app(runtime, web_config(**config))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    served = Served(runtime, app, runner, f"http://127.0.0.1:{port}")
    if simulator is not None:
        served.extras["simulator"] = simulator
    try:
        yield served
    finally:
        await runner.cleanup()
        if worker_task is not None:
            worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker_task
        if pbx is not None:
            await pbx.close()
        if simulator is not None:
            await simulator.stop()
        await runtime.close()
