"""Crashes and restarts: nothing lost, nothing dialed twice.

A worker killed mid-call, a call that ends while no worker watches, a PBX
that crashes, a dropped AMI connection, requests left in the outbox."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ami_bridge.simulator import AmiSimulator, ContactBehaviour
from dialer.domain.vocabulary import CallOutcome, CallState
from dialer.store.models import CallAttempt, HangupRequest
from tests.integration.pbx_harness import running_worker
from tests.integration.world import World, build_world
from tests.support.tcp_proxy import TcpProxy

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def world(sessions: Sessions) -> World:
    return await build_world(sessions)


async def test_worker_killed_mid_call_reattaches_at_restart(
    world: World, simulator: AmiSimulator
) -> None:
    async with running_worker(world, simulator) as first:
        call_id = await first.call("montreal")  # answers and stays
        await first.wait_for(call_id, CallState.TALKING)
    # The first worker is gone; the call is still up on the PBX.
    assert simulator.active_calls == 1
    async with running_worker(world, simulator) as second:
        row = await second.row(call_id)
        assert row.state is CallState.TALKING
        await second.service.hang_up(world.users["alice"], call_id)
        ended = await second.wait_for(call_id, CallState.ENDED)
    assert ended.outcome is CallOutcome.COMPLETED
    assert not ended.needs_review
    assert simulator.action_counts["Originate"] == 1


async def test_a_hangup_taken_by_a_worker_that_then_died_is_done_at_restart(
    world: World, simulator: AmiSimulator
) -> None:
    async with running_worker(world, simulator) as first:
        call_id = await first.call("montreal")  # answers and stays
        await first.wait_for(call_id, CallState.TALKING)
    # The volunteer hangs up; a worker takes the request (handled_at is set)
    # and dies before the PBX has done it.
    await world.service().hang_up(world.users["alice"], call_id)
    async with world.sessions.begin() as session:
        await session.execute(
            update(HangupRequest)
            .where(HangupRequest.call_id == call_id)
            .values(handled_at=HangupRequest.requested_at)
        )
    assert simulator.active_calls == 1
    async with running_worker(world, simulator) as second:
        ended = await second.wait_for(call_id, CallState.ENDED)
    # Hung up while talking: a completed call, as when the first worker does it.
    assert ended.outcome is CallOutcome.COMPLETED
    assert simulator.active_calls == 0
    assert simulator.action_counts["Hangup"] >= 1


async def test_a_call_that_ended_unseen_is_marked_lost_for_review(
    world: World, simulator: AmiSimulator
) -> None:
    simulator.script_contact("+15145550184", ContactBehaviour.answers(after=1, hangs_up_after=10))
    async with running_worker(world, simulator) as first:
        call_id = await first.call("montreal")
        await first.wait_for(call_id, CallState.TALKING)
    while simulator.active_calls:  # the contact hangs up while no worker runs
        await asyncio.sleep(0.02)
    async with running_worker(world, simulator) as second:
        ended = await second.wait_for(call_id, CallState.ENDED)
    assert ended.outcome is CallOutcome.LOST
    assert ended.needs_review
    assert simulator.action_counts["Originate"] == 1


async def test_pbx_crash_ends_live_calls_as_lost(world: World, simulator: AmiSimulator) -> None:
    async with running_worker(world, simulator) as harness:
        call_id = await harness.call("montreal")
        await harness.wait_for(call_id, CallState.TALKING)
        await simulator.crash(down_for=0.3)
        ended = await harness.wait_for(call_id, CallState.ENDED)
        assert ended.outcome is CallOutcome.LOST and ended.needs_review
        # And the worker keeps working once the PBX is back.
        again = await harness.call("explicit_zone")
        assert (await harness.wait_for(again, CallState.ENDED)).outcome is CallOutcome.COMPLETED


async def test_dropped_connection_mid_call_keeps_the_right_outcome(
    world: World, simulator: AmiSimulator
) -> None:
    simulator.script_contact("+15145550184", ContactBehaviour.answers(after=1, hangs_up_after=20))
    async with running_worker(world, simulator) as harness:
        call_id = await harness.call("montreal")
        await harness.wait_for(call_id, CallState.TALKING)
        simulator.drop_clients()
        ended = await harness.wait_for(call_id, CallState.ENDED)
    assert ended.outcome is CallOutcome.COMPLETED
    assert harness.client.stats.reconnects >= 1
    assert simulator.action_counts["Originate"] == 1


async def test_requests_left_in_the_outbox(world: World, simulator: AmiSimulator) -> None:
    service = world.service()
    fresh = await service.start_call(
        volunteer_id=world.users["alice"],
        contact_id=world.contacts["explicit_zone"],
        campaign_id=world.campaign_id,
    )
    stale = await service.start_call(
        volunteer_id=world.users["bob"],
        contact_id=world.contacts["bob_contact"],
        campaign_id=world.campaign_id,
    )
    async with world.sessions.begin() as session:
        await session.execute(
            update(CallAttempt)
            .where(CallAttempt.call_id == stale.call_id)
            .values(requested_at=world.clock.now - timedelta(minutes=5))
        )
    async with running_worker(world, simulator) as harness:
        dialed = await harness.wait_for(fresh.call_id, CallState.ENDED)
        expired = await harness.row(stale.call_id)
    assert dialed.outcome is CallOutcome.COMPLETED
    assert (expired.state, expired.outcome) == (CallState.ENDED, CallOutcome.FAILED)
    assert expired.failure_reason == "request expired before the PBX was reachable"
    assert simulator.action_counts["Originate"] == 1


async def test_originate_in_flight_during_a_disconnect_is_not_resent(
    world: World, simulator: AmiSimulator
) -> None:
    simulator.drop_on_next("Originate", after_processing=True)
    async with running_worker(world, simulator) as harness:
        call_id = await harness.call("explicit_zone")
        ended = await harness.wait_for(call_id, CallState.ENDED, timeout=15)
        await asyncio.sleep(0.3)
    # The Originate reached the PBX and its answer was lost with the
    # connection: the call went on, was re-found by the resync, never re-sent.
    assert simulator.action_counts["Originate"] == 1
    assert ended.outcome in (CallOutcome.COMPLETED, CallOutcome.LOST)


async def test_a_database_outage_mid_call_loses_no_state(
    world: World, simulator: AmiSimulator, proxied: tuple[TcpProxy, Sessions]
) -> None:
    proxy, proxied_sessions = proxied
    simulator.script_contact("+15145550184", ContactBehaviour.answers(after=1, hangs_up_after=10))
    async with running_worker(world, simulator) as harness:
        harness.service.sessions = proxied_sessions
        call_id = await harness.call("montreal")
        await harness.wait_for(call_id, CallState.TALKING)
        proxy.cut()  # the call ends on the PBX while the database is away
        while simulator.active_calls:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        assert (await harness.row(call_id)).state is CallState.TALKING
        proxy.restore()
        ended = await harness.wait_for(call_id, CallState.ENDED)
    assert ended.outcome is CallOutcome.COMPLETED
    assert ended.ended_at is not None and ended.contact_answered_at is not None
