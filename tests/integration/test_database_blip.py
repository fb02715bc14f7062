"""A database outage in the middle of an outcome submission loses nothing.

The service talks to PostgreSQL through a TCP proxy that the test cuts,
which is what a restart of the server looks like from the client: every
connection drops and new ones are refused for a while.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.outcomes import parse_submission
from dialer.domain.vocabulary import CallOutcome, CallState
from dialer.services.common import RetryableError
from dialer.store.models import CallAttempt, Disposition
from tests.integration.world import World, build_world
from tests.support.tcp_proxy import TcpProxy

Sessions = async_sessionmaker[AsyncSession]


async def _ended_call(world: World) -> str:
    call = await world.service().start_call(
        volunteer_id=world.users["alice"],
        contact_id=world.contacts["montreal"],
        campaign_id=world.campaign_id,
    )
    async with world.sessions.begin() as session:
        stored = await session.scalar(
            select(CallAttempt).where(CallAttempt.call_id == call.call_id)
        )
        assert stored is not None
        stored.state, stored.outcome = CallState.ENDED, CallOutcome.COMPLETED
    return call.call_id


async def test_submission_during_a_restart_is_retried_and_stored_once(
    sessions: Sessions, proxied: tuple[TcpProxy, Sessions]
) -> None:
    proxy, proxied_sessions = proxied
    world = await build_world(sessions)
    call_id = await _ended_call(world)
    outcomes = world.outcomes()
    outcomes.sessions = proxied_sessions
    # Warm the pool so the outage kills live connections, not just new ones.
    async with proxied_sessions() as session:
        await session.execute(select(1))
    payload = parse_submission(
        {
            "submission_id": "blip-0001",
            "call_id": call_id,
            "contact_id": world.contacts["montreal"],
            "outcome": "answered",
            "consent": True,
            "survey_answers": {"vote": "yes"},
        }
    )

    proxy.cut()
    submitting = asyncio.create_task(outcomes.record_outcome(world.users["alice"], payload))
    await asyncio.sleep(0.8)
    assert not submitting.done()  # still retrying, not failed
    proxy.restore()
    result = await asyncio.wait_for(submitting, timeout=20)
    assert not result.duplicate
    # The browser, not knowing whether it went through, sends it again.
    again = await outcomes.record_outcome(world.users["alice"], payload)
    assert again.duplicate and again.disposition_id == result.disposition_id
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Disposition)) == 1


async def test_a_long_outage_gives_a_retryable_error_and_stores_nothing(
    sessions: Sessions, proxied: tuple[TcpProxy, Sessions]
) -> None:
    proxy, proxied_sessions = proxied
    world = await build_world(sessions)
    call_id = await _ended_call(world)
    outcomes = world.outcomes()
    outcomes.sessions = proxied_sessions
    payload = parse_submission(
        {
            "submission_id": "blip-0002",
            "call_id": call_id,
            "contact_id": world.contacts["montreal"],
            "outcome": "absent",
        }
    )
    proxy.cut()
    with pytest.raises(RetryableError, match="your submission was kept, retry"):
        await outcomes.record_outcome(world.users["alice"], payload)
    proxy.restore()
    result = await outcomes.record_outcome(world.users["alice"], payload)
    assert not result.duplicate
