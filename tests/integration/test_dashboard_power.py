"""The dashboard's power mode vs click-to-call numbers (dialer.services.dashboard.mode_comparison),
on PostgreSQL and on SQLite, from rows whose answer is worked out by hand below."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.vocabulary import CallOutcome, CallState, PowerSessionState, VolunteerPhone
from dialer.services.dashboard import mode_comparison
from dialer.store.models import CallAttempt, PowerSession
from tests.integration.world import World, build_world

Sessions = async_sessionmaker[AsyncSession]
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)


@pytest.fixture
async def world(either_database: Sessions) -> World:
    """On PostgreSQL, then on SQLite."""
    return await build_world(either_database)


class Rows:
    """Adds sessions and calls to the world's campaign, numbering the calls."""

    def __init__(self, world: World, session: AsyncSession) -> None:
        self.world = world
        self.session = session
        self.count = 0

    async def power_session(
        self,
        volunteer: str,
        *,
        answered: datetime | None,
        ended: datetime | None,
        calls: int,
        waited: float,
        state: PowerSessionState = PowerSessionState.ENDED,
        since: datetime | None = None,
        campaign_id: int | None = None,
    ) -> int:
        requested = (answered or ended or self.world.clock.now) - MINUTE
        row = PowerSession(
            volunteer_id=self.world.users[volunteer],
            campaign_id=campaign_id or self.world.campaign_id,
            phone=VolunteerPhone.DESK,
            state=state,
            state_since=since or ended or requested,
            requested_at=requested,
            leg_answered_at=answered,
            ended_at=ended,
            calls=calls,
            waited_seconds=waited,
        )
        self.session.add(row)
        await self.session.flush()
        return row.id

    def call(
        self,
        volunteer: str,
        at: datetime,
        length: timedelta | None,
        *,
        session_id: int | None = None,
        campaign_id: int | None = None,
    ) -> None:
        self.count += 1
        self.session.add(
            CallAttempt(
                call_id=f"mode-{self.count}",
                campaign_id=campaign_id or self.world.campaign_id,
                contact_id=self.world.contacts["montreal"],
                volunteer_id=self.world.users[volunteer],
                number_e164="+15145550184",
                state=CallState.ENDED if length is not None else CallState.TALKING,
                outcome=CallOutcome.CONTACT_NO_ANSWER if length is not None else None,
                requested_at=at,
                contact_answered_at=None if length is not None else at + 5 * timedelta(seconds=1),
                ended_at=at + length if length is not None else None,
                power_session_id=session_id,
            )
        )


async def test_calls_per_volunteer_hour_and_the_wait_in_each_mode(world: World) -> None:
    now = world.clock.now
    async with world.sessions.begin() as session:
        rows = Rows(world, session)
        # Alice: one hour of power mode, ten calls, ten minutes waited.
        first = await rows.power_session(
            "alice", answered=now - 2 * HOUR, ended=now - HOUR, calls=10, waited=600
        )
        for n in range(10):
            rows.call("alice", now - 2 * HOUR + n * 5 * MINUTE, 40 * MINUTE / 60, session_id=first)
        # Bob, on the line for half an hour, waiting for two minutes now.
        live = await rows.power_session(
            "bob",
            answered=now - 30 * MINUTE,
            ended=None,
            calls=5,
            waited=300,
            state=PowerSessionState.WAITING,
            since=now - 2 * MINUTE,
        )
        for n in range(5):
            rows.call("bob", now - 28 * MINUTE + n * 5 * MINUTE, MINUTE, session_id=live)
        # Bob again, from 13 hours ago to 11: only its last hour is in the
        # period, with the four calls made in it; its wait counts whole.
        straddling = await rows.power_session(
            "bob", answered=now - 13 * HOUR, ended=now - 11 * HOUR, calls=8, waited=400
        )
        for n in range(8):
            rows.call(
                "bob", now - 13 * HOUR + n * 15 * MINUTE + MINUTE, MINUTE, session_id=straddling
            )
        # Left out: a phone that never answered, a session before the
        # period, and another campaign's.
        await rows.power_session("alice", answered=None, ended=now - 3 * HOUR, calls=0, waited=0)
        before = await rows.power_session(
            "alice", answered=now - 20 * HOUR, ended=now - 13 * HOUR, calls=3, waited=90
        )
        rows.call("alice", now - 14 * HOUR, MINUTE, session_id=before)
        await rows.power_session(
            "carol",
            answered=now - 3 * HOUR,
            ended=now - 2 * HOUR,
            calls=4,
            waited=100,
            campaign_id=world.other_campaign_id,
        )

        # Click-to-call.  Alice: six two-minute calls five minutes apart
        # (one stretch of 27 minutes), then a 20-minute break, then one more
        # (a stretch of 2 minutes).
        start = now - 5 * HOUR
        for n in range(6):
            rows.call("alice", start + n * 5 * MINUTE, 2 * MINUTE)
        rows.call("alice", start + 47 * MINUTE, 2 * MINUTE)
        # Bob: two one-minute calls exactly 15 minutes apart (still one
        # stretch: 17 minutes), and a call going on for 3 minutes now.
        rows.call("bob", now - 4 * HOUR, MINUTE)
        rows.call("bob", now - 4 * HOUR + 16 * MINUTE, MINUTE)
        rows.call("bob", now - 3 * MINUTE, None)
        # Left out: before the period, and another campaign's.
        rows.call("alice", now - 13 * HOUR, MINUTE)
        rows.call("carol", now - HOUR, MINUTE, campaign_id=world.other_campaign_id)

    async with world.sessions() as session:
        got = await mode_comparison(session, world.campaign_id, now=now, hours=12)

    assert got.since == now - 12 * HOUR and got.until == now
    assert got.sessions == 3
    assert got.power.calls == 10 + 5 + 4
    assert got.power.seconds == pytest.approx((60 + 30 + 60) * 60)
    assert got.power.volunteers == 2
    assert got.power.calls_per_hour == pytest.approx(19 / 2.5)
    # Waits of the three sessions whole, Bob's two minutes going on included.
    assert got.session_calls == 10 + 5 + 8
    assert got.waited_seconds == pytest.approx(600 + 300 + 120 + 400)
    assert got.average_wait == pytest.approx(1420 / 23)

    assert got.click.calls == 7 + 3
    assert got.click.seconds == pytest.approx((27 + 2 + 17 + 3) * 60, abs=0.01)
    assert got.click.volunteers == 2
    assert got.click.calls_per_hour == pytest.approx(10 / (49 / 60), rel=1e-5)


async def test_a_campaign_without_calls_has_no_rates(world: World) -> None:
    async with world.sessions() as session:
        got = await mode_comparison(session, world.campaign_id, now=world.clock.now, hours=168)
    assert (got.power.calls, got.click.calls, got.sessions) == (0, 0, 0)
    assert got.power.calls_per_hour is None and got.click.calls_per_hour is None
    assert got.average_wait is None


async def test_the_period_decides_which_calls_count(world: World) -> None:
    now = world.clock.now
    async with world.sessions.begin() as session:
        rows = Rows(world, session)
        # Two days ago: outside the chart's 12 hours, inside the week.
        rows.call("alice", now - 48 * HOUR, 10 * MINUTE)
        old = await rows.power_session(
            "bob", answered=now - 50 * HOUR, ended=now - 49 * HOUR, calls=6, waited=120
        )
        for n in range(6):
            rows.call("bob", now - 50 * HOUR + n * 8 * MINUTE, MINUTE, session_id=old)
    async with world.sessions() as session:
        day = await mode_comparison(session, world.campaign_id, now=now, hours=12)
        week = await mode_comparison(session, world.campaign_id, now=now, hours=168)
    assert (day.power.calls, day.click.calls) == (0, 0)
    assert (week.power.calls, week.click.calls) == (6, 1)
    assert week.power.calls_per_hour == pytest.approx(6.0)
    assert week.click.calls_per_hour == pytest.approx(6.0)
    assert week.average_wait == pytest.approx(20.0)
