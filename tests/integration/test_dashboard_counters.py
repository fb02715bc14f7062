"""The dashboard's counters (dialer.store.counters): the database keeps them
in the transaction of every call, outcome and list change, on PostgreSQL and
on SQLite, and the dashboard shows the same numbers as reading every row."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from sqlalchemy import case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.outcomes import parse_submission
from dialer.domain.vocabulary import CallOutcome, CallState
from dialer.services.call_endings import record_call_endings
from dialer.services.dashboard import CampaignStats, campaign_stats
from dialer.store import calls, contacts, counters, lists
from dialer.store.engine import downgrade_async, open_database, upgrade_async
from dialer.store.models import (
    CallAttempt,
    CallingListEntry,
    Campaign,
    CampaignCounter,
    CampaignCounterDelta,
    Contact,
    Disposition,
    User,
)
from tests.conftest import PG_SERVER, _dsn
from tests.integration.world import World, build_world

Sessions = async_sessionmaker[AsyncSession]
MONTREAL = ZoneInfo("America/Montreal")


@pytest.fixture
async def world(either_database: Sessions) -> World:
    """On PostgreSQL, then on SQLite."""
    return await build_world(either_database)


# -- the dashboard as it was: every row read, bucketed in Python --------------------


async def stats_from_every_row(
    session: AsyncSession, campaign_id: int, *, now: datetime, zone: tzinfo, hours: int = 12
) -> CampaignStats:
    """dialer.services.dashboard.campaign_stats before the counters, as the reference."""
    from dialer.services.dashboard import HourBucket, VolunteerStats

    stats = CampaignStats()
    names = {
        user_id: display or username
        for user_id, display, username in await session.execute(
            select(User.id, User.display_name, User.username)
        )
    }
    per_volunteer: dict[int, VolunteerStats] = {}
    local_now = now.astimezone(zone).replace(minute=0, second=0, microsecond=0)
    first_hour = local_now - timedelta(hours=hours - 1)
    buckets = [HourBucket(first_hour + timedelta(hours=offset)) for offset in range(hours)]
    for volunteer_id, requested_at, answered_at, ended_at, outcome in await session.execute(
        select(
            CallAttempt.volunteer_id,
            CallAttempt.requested_at,
            CallAttempt.contact_answered_at,
            CallAttempt.ended_at,
            CallAttempt.outcome,
        ).where(CallAttempt.campaign_id == campaign_id)
    ):
        stats.dials += 1
        volunteer = per_volunteer.setdefault(
            volunteer_id, VolunteerStats(volunteer_id, names.get(volunteer_id, "?"))
        )
        volunteer.dials += 1
        if ended_at is None:
            stats.live_calls += 1
        if outcome is not None:
            stats.call_outcomes[outcome] = stats.call_outcomes.get(outcome, 0) + 1
        if answered_at is not None:
            stats.reached += 1
            volunteer.reached += 1
            talk = max(0.0, ((ended_at or now) - answered_at).total_seconds())
            stats.talk_seconds += talk
            volunteer.talk_seconds += talk
        index = int((requested_at.astimezone(zone) - first_hour).total_seconds() // 3600)
        if 0 <= index < hours:
            buckets[index].dials += 1
            if answered_at is not None:
                buckets[index].reached += 1
    stats.hours = buckets
    for outcome, volunteer_id, count, mobilized in await session.execute(
        select(
            Disposition.outcome,
            Disposition.volunteer_id,
            func.count(),
            func.sum(case((Disposition.mobilized.is_(True), 1), else_=0)),
        )
        .where(Disposition.campaign_id == campaign_id)
        .group_by(Disposition.outcome, Disposition.volunteer_id)
    ):
        stats.outcomes[outcome] = stats.outcomes.get(outcome, 0) + count
        stats.mobilized += int(mobilized or 0)
        if volunteer_id is not None:
            per_volunteer.setdefault(
                volunteer_id, VolunteerStats(volunteer_id, names.get(volunteer_id, "?"))
            ).outcomes += count
    stats.volunteers = sorted(per_volunteer.values(), key=lambda item: (-item.dials, item.name))
    for done, callback_at in await session.execute(
        select(CallingListEntry.done, CallingListEntry.callback_at).where(
            CallingListEntry.campaign_id == campaign_id
        )
    ):
        stats.list_total += 1
        stats.list_done += int(done)
        stats.callbacks_pending += int(callback_at is not None and not done)
    return stats


def shown(stats: CampaignStats) -> dict[str, Any]:
    """What the page shows; talk to the millisecond (summed in another order)."""
    return {
        "totals": (
            stats.dials,
            stats.reached,
            round(stats.talk_seconds, 3),
            stats.live_calls,
            stats.list_total,
            stats.list_done,
            stats.callbacks_pending,
            stats.mobilized,
        ),
        "outcomes": stats.outcomes,
        "call_outcomes": stats.call_outcomes,
        "hours": [(bucket.start, bucket.dials, bucket.reached) for bucket in stats.hours],
        "volunteers": [
            (v.user_id, v.name, v.dials, v.reached, round(v.talk_seconds, 3), v.outcomes)
            for v in stats.volunteers
        ],
    }


async def assert_counted_right(world: World, *, zone: tzinfo = MONTREAL) -> None:
    """Counters equal a recount, folded or not, and the dashboard the old reading."""
    now = world.clock.now
    for campaign_id in (world.campaign_id, world.other_campaign_id):
        async with world.sessions() as session:
            recounted = await counters.recount(session, campaign_id)
            assert (await counters.read(session, campaign_id)).amounts == recounted
            expected = shown(await stats_from_every_row(session, campaign_id, now=now, zone=zone))
            assert shown(await campaign_stats(session, campaign_id, now=now, zone=zone)) == (
                expected
            )
        async with world.sessions.begin() as session:
            await counters.fold(session, campaign_id)
        async with world.sessions() as session:
            assert (await counters.read(session, campaign_id)).amounts == recounted


# -- the mix ------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """What the worker stores when a call ends (dialer.domain.ports.CallSnapshot)."""

    call_id: str
    at: datetime
    state: CallState
    outcome: CallOutcome | None
    contact_answered_at: datetime | None
    ended_at: datetime | None
    dial_status: str | None
    failure_reason: str | None = None
    discovered: bool = False
    volunteer_channel: str | None = None
    volunteer_uniqueid: str | None = None
    contact_channel: str | None = None
    contact_uniqueid: str | None = None
    linkedid: str | None = None
    volunteer_answered_at: datetime | None = None
    volunteer_hangup_cause: int | None = None
    contact_hangup_cause: int | None = None


async def start(world: World, volunteer: str, contact: str) -> CallAttempt:
    return await world.service().start_call(
        volunteer_id=world.users[volunteer],
        contact_id=world.contacts[contact],
        campaign_id=world.campaign_id,
    )


async def end(
    world: World,
    call_id: str,
    outcome: CallOutcome,
    *,
    answered_after: float | None = None,
    talk: float = 0.0,
) -> None:
    """End a call as the worker does: a snapshot stored, then the bookkeeping."""
    async with world.sessions.begin() as session:
        call = await session.scalar(select(CallAttempt).where(CallAttempt.call_id == call_id))
        assert call is not None
        session.expunge_all()
        answered = (
            call.requested_at + timedelta(seconds=answered_after)
            if answered_after is not None
            else None
        )
        ended = (answered or call.requested_at) + timedelta(seconds=talk or 7)
        calls.copy_snapshot(
            call,
            Snapshot(
                call_id=call_id,
                at=ended,
                state=CallState.ENDED,
                outcome=outcome,
                contact_answered_at=answered,
                ended_at=ended,
                dial_status="ANSWER" if answered else "NOANSWER",
            ),
        )
        await calls.store_calls(session, [call])
        await record_call_endings(session, [call], ended)


def submission(world: World, contact: str, call_id: str | None, **fields: Any) -> Any:
    outcome = fields.pop("outcome", "answered")
    return parse_submission(
        {
            "submission_id": fields.pop("submission_id", f"sub-{uuid.uuid4().hex[:12]}"),
            "call_id": call_id,
            "contact_id": world.contacts[contact],
            "campaign_id": world.campaign_id,
            "outcome": outcome,
            # A survey is only taken when the contact answered, and agreed.
            "survey_answers": {"vote": "yes"} if outcome == "answered" else {},
            "consent": True if outcome == "answered" else None,
            **fields,
        }
    )


async def test_counters_equal_a_recount_through_calls_outcomes_imports_and_list_changes(
    world: World,
) -> None:
    alice, bob, dave = world.users["alice"], world.users["bob"], world.users["dave"]
    outcomes = world.outcomes()
    await assert_counted_right(world)

    # A conversation, then what the volunteer says: mobilized, call back tomorrow.
    call = await start(world, "alice", "montreal")
    await end(world, call.call_id, CallOutcome.COMPLETED, answered_after=3.25, talk=61.5)
    await outcomes.record_outcome(
        alice,
        submission(
            world,
            "montreal",
            call.call_id,
            outcome="call_back_later",
            mobilized=True,
            callback_at=(world.clock.now + timedelta(days=1)).isoformat(),
        ),
    )
    await assert_counted_right(world)

    # No answer twice: automatic "absents", and out of attempts (max 2) the entry is done;
    # then the volunteer's own outcome replaces the first "absent".
    first = await start(world, "alice", "no_answer")
    await end(world, first.call_id, CallOutcome.CONTACT_NO_ANSWER)
    await assert_counted_right(world)
    world.clock.now += timedelta(hours=2)
    call = await start(world, "alice", "no_answer")
    await end(world, call.call_id, CallOutcome.CONTACT_BUSY)
    await assert_counted_right(world)
    await outcomes.record_outcome(
        alice, submission(world, "no_answer", first.call_id, outcome="wrong_number")
    )
    await assert_counted_right(world)

    # Cancelled before it was dialed, and one still live, talking.
    call = await start(world, "bob", "bob_contact")
    async with world.sessions.begin() as session:
        stored = await session.scalar(
            select(CallAttempt).where(CallAttempt.call_id == call.call_id)
        )
        assert stored is not None
        assert await calls.cancel_unclaimed(
            session, stored, CallOutcome.HUNG_UP_BY_VOLUNTEER, world.clock.now
        )
    live = await start(world, "bob", "bob_contact")
    async with world.sessions.begin() as session:
        await session.execute(
            update(CallAttempt)
            .where(CallAttempt.call_id == live.call_id)
            .values(
                state=CallState.TALKING,
                contact_answered_at=world.clock.now - timedelta(seconds=30),
            )
        )
    world.clock.now += timedelta(minutes=1)
    await assert_counted_right(world)

    # An import adds contacts to the list; an organizer hands them out.
    async with world.sessions.begin() as session:
        ids = await contacts.insert_contacts(
            session,
            [
                {"first_name": f"New{n}", "last_name": "Import", "tags": [], "notes": ""}
                for n in range(5)
            ],
        )
        await lists.add_entries(
            session,
            [
                {
                    "campaign_id": world.campaign_id,
                    "contact_id": contact_id,
                    "volunteer_id": None,
                    "attempts": 0,
                    "last_attempt_at": None,
                    "next_attempt_at": None,
                    "callback_at": world.clock.now if n == 0 else None,
                    "done": n == 1,
                    "assigned_at": world.clock.now,
                }
                for n, contact_id in enumerate(ids)
            ],
        )
    async with world.sessions.begin() as session:
        entries = list(
            await session.scalars(
                select(CallingListEntry).where(CallingListEntry.contact_id.in_(ids))
            )
        )
        await lists.assign(session, [(entry, dave) for entry in entries], at=world.clock.now)
    await assert_counted_right(world)

    # Rows leave: a contact erased (its calls, entries and outcomes cascade),
    # a call moved to the other campaign, an outcome's volunteer gone.
    async with world.sessions.begin() as session:
        await session.execute(delete(Contact).where(Contact.id == world.contacts["no_answer"]))
        await session.execute(
            update(CallAttempt)
            .where(CallAttempt.volunteer_id == bob, CallAttempt.ended_at.is_not(None))
            .values(campaign_id=world.other_campaign_id)
        )
        await session.execute(update(Disposition).values(volunteer_id=None))
    await assert_counted_right(world)
    await assert_counted_right(world, zone=ZoneInfo("Asia/Kathmandu"))


@pytest.mark.parametrize(
    "now",
    [
        datetime(2026, 11, 1, 12, 34, tzinfo=UTC),  # Montreal fell back at 06:00 UTC
        datetime(2026, 3, 8, 13, 2, tzinfo=UTC),  # and sprang forward at 07:00 UTC
    ],
)
async def test_calls_per_hour_follow_the_viewers_clock_across_daylight_saving(
    world: World, now: datetime
) -> None:
    volunteer, contact = world.users["alice"], world.contacts["montreal"]
    async with world.sessions.begin() as session:
        for minutes in range(-16 * 60, 60, 23):
            requested = now + timedelta(minutes=minutes, seconds=minutes % 60)
            session.add(
                CallAttempt(
                    call_id=f"h{minutes}",
                    campaign_id=world.campaign_id,
                    contact_id=contact,
                    volunteer_id=volunteer,
                    number_e164="+15145550184",
                    state=CallState.ENDED,
                    outcome=CallOutcome.COMPLETED,
                    requested_at=requested,
                    contact_answered_at=requested if minutes % 3 else None,
                    ended_at=requested + timedelta(seconds=40),
                )
            )
    world.clock.now = now
    for zone in ("America/Montreal", "Asia/Kolkata", "Australia/Lord_Howe", "UTC"):
        async with world.sessions() as session:
            expected = await stats_from_every_row(
                session, world.campaign_id, now=now, zone=ZoneInfo(zone)
            )
            got = await campaign_stats(session, world.campaign_id, now=now, zone=ZoneInfo(zone))
        assert sum(bucket.dials for bucket in got.hours) > 0, zone
        assert shown(got)["hours"] == shown(expected)["hours"], zone


async def test_deleting_a_campaign_forgets_its_counters(world: World) -> None:
    call = await start(world, "alice", "montreal")
    await end(world, call.call_id, CallOutcome.CONTACT_BUSY)
    async with world.sessions.begin() as session:
        await session.execute(delete(Campaign).where(Campaign.id == world.campaign_id))
    async with world.sessions() as session:
        for table in (CampaignCounter, CampaignCounterDelta):
            left = await session.scalar(
                select(func.count()).where(table.campaign_id == world.campaign_id)
            )
            assert left == 0, table.__tablename__
        other = world.other_campaign_id
        assert (await counters.read(session, other)).amounts == await counters.recount(
            session, other
        )


# -- PostgreSQL: no lock taken, and the migration's backfill ------------------------


async def test_counting_takes_no_lock_a_long_import_would_hold(sessions: Sessions) -> None:
    world = await build_world(sessions)
    call = await start(world, "alice", "montreal")
    await end(world, call.call_id, CallOutcome.COMPLETED, answered_after=1, talk=20)
    async with sessions() as importing:
        # An import's transaction adds an entry to the campaign's list and stays open...
        async with importing.begin():
            [contact_id] = await contacts.insert_contacts(
                importing, [{"first_name": "Late", "last_name": "Import", "tags": [], "notes": ""}]
            )
            await lists.add_entries(
                importing,
                [
                    {
                        "campaign_id": world.campaign_id,
                        "contact_id": contact_id,
                        "volunteer_id": None,
                        "attempts": 0,
                        "last_attempt_at": None,
                        "next_attempt_at": None,
                        "callback_at": None,
                        "done": False,
                        "assigned_at": world.clock.now,
                    }
                ],
            )
            # ...while a volunteer's outcome closes another entry of that list.
            await asyncio.wait_for(
                world.outcomes().record_outcome(
                    world.users["alice"],
                    submission(world, "montreal", call.call_id, outcome="refused"),
                ),
                timeout=5,
            )
    await assert_counted_right(world)


@pytest.fixture(params=["postgresql", "sqlite"])
async def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'dialer.sqlite3'}"
        await upgrade_async(url)
        yield url
        return
    name = f"dialer_counters_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(_dsn("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql+asyncpg://{PG_SERVER}/{name}"
        await upgrade_async(url)
        yield url
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_the_migration_counts_the_rows_already_there(fresh_database: str) -> None:
    # The rows are written by today's models, then the schema goes back to
    # before the counters (0011) with the rows kept, and up again.
    async with open_database(fresh_database) as before:
        world = await build_world(before)
        call = await start(world, "alice", "montreal")
        await end(world, call.call_id, CallOutcome.COMPLETED, answered_after=2, talk=33)
        await world.outcomes().record_outcome(
            world.users["alice"],
            submission(world, "montreal", call.call_id, outcome="answered", mobilized=True),
        )
        call = await start(world, "bob", "bob_contact")
        await end(world, call.call_id, CallOutcome.CONTACT_NO_ANSWER)
    await downgrade_async(fresh_database, "0011")
    async with open_database(fresh_database) as at_0011:
        async with at_0011() as session:
            assert await session.scalar(select(func.count()).select_from(CallAttempt)) == 2
    await upgrade_async(fresh_database)
    async with open_database(fresh_database) as after:
        world.sessions = after
        async with after() as session:
            counted = await session.scalar(select(func.count()).select_from(CampaignCounter))
            assert counted is not None and counted > 0
        await assert_counted_right(world)


async def test_the_counted_columns_are_the_triggers_columns(sessions: Sessions) -> None:
    """An UPDATE that changes nothing counted adds no delta (the triggers' WHEN)."""
    world = await build_world(sessions)
    call = await start(world, "alice", "montreal")
    async with sessions.begin() as session:
        before = await session.scalar(select(func.count()).select_from(CampaignCounterDelta))
        await session.execute(
            update(CallAttempt)
            .where(CallAttempt.call_id == call.call_id)
            .values(state=CallState.RINGING_VOLUNTEER, volunteer_channel="PJSIP/1001-1")
        )
        await session.execute(
            update(CallingListEntry).values(attempts=CallingListEntry.attempts + 1)
        )
        after = await session.scalar(select(func.count()).select_from(CampaignCounterDelta))
        assert after == before
