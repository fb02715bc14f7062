"""The one-live-call claims (per volunteer, per contact) refuse a second call
with a clear reason on PostgreSQL and on SQLite (the demo), sequential or raced."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.compliance import CallRefused, RefusalCode
from dialer.domain.vocabulary import CallState
from dialer.store import calls
from dialer.store.models import CallAttempt
from tests.integration.world import World, build_world

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def world(either_database: Sessions) -> World:
    """On PostgreSQL, then on SQLite."""
    return await build_world(either_database)


async def start(world: World, volunteer: str, contact: str) -> CallAttempt:
    return await world.service().start_call(
        volunteer_id=world.users[volunteer],
        contact_id=world.contacts[contact],
        campaign_id=world.campaign_id,
    )


async def refusal_of(world: World, volunteer: str, contact: str) -> RefusalCode:
    with pytest.raises(CallRefused) as caught:
        await start(world, volunteer, contact)
    return caught.value.refusal.code


async def test_a_second_tab_is_told_the_volunteer_is_already_on_a_call(world: World) -> None:
    await start(world, "alice", "montreal")
    assert await refusal_of(world, "alice", "vancouver") is RefusalCode.VOLUNTEER_BUSY


async def test_a_contact_on_a_call_is_refused_to_another_volunteer(world: World) -> None:
    await start(world, "bob", "montreal")
    assert await refusal_of(world, "alice", "montreal") is RefusalCode.CONTACT_BEING_CALLED


async def test_a_double_click_is_told_the_volunteer_is_already_on_a_call(world: World) -> None:
    # Both claims refuse this one; the database names whichever index it
    # checked first (PostgreSQL and SQLite differ), the volunteer hears the true one.
    await start(world, "alice", "montreal")
    assert await refusal_of(world, "alice", "montreal") is RefusalCode.VOLUNTEER_BUSY


async def codes_of_a_race(world: World, *attempts: tuple[str, str]) -> list[str]:
    # Separate services share nothing but the database, like two web processes.
    results = await asyncio.gather(
        *(start(world, volunteer, contact) for volunteer, contact in attempts),
        return_exceptions=True,
    )
    return sorted(
        "placed"
        if isinstance(result, CallAttempt)
        else result.refusal.code.value
        if isinstance(result, CallRefused)
        else repr(result)
        for result in results
    )


async def test_two_tabs_racing_place_one_call(world: World) -> None:
    codes = await codes_of_a_race(world, ("alice", "montreal"), ("alice", "vancouver"))
    assert codes == ["placed", RefusalCode.VOLUNTEER_BUSY.value]


async def test_two_volunteers_racing_for_one_contact_place_one_call(world: World) -> None:
    codes = await codes_of_a_race(world, ("alice", "montreal"), ("bob", "montreal"))
    assert codes == [RefusalCode.CONTACT_BEING_CALLED.value, "placed"]


def ended_call(world: World, call_id: str) -> CallAttempt:
    return CallAttempt(
        call_id=call_id,
        contact_id=world.contacts["montreal"],
        number_e164="+15145550184",
        volunteer_id=world.users["alice"],
        caller_id="+15145550000",
        pbx="default",
        state=CallState.ENDED,
        requested_at=world.clock(),
    )


async def test_another_unique_violation_is_not_taken_for_a_claim(world: World) -> None:
    async with world.sessions.begin() as session:
        await calls.add_request(session, ended_call(world, "c-same"))
    with pytest.raises(IntegrityError) as caught:
        async with world.sessions.begin() as session:
            await calls.add_request(session, ended_call(world, "c-same"))
    assert calls.live_claim_conflict(caught.value) is None
