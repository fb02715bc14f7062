"""Power sessions against the real schema: who may start one, and how a session
moves as its volunteer's line, its calls and its outcomes change.

The worker's side is played by calling the service as the worker does
(``leg_changed``, ``dial_next``, ``refresh``) and by ending calls in the
database as the worker's store would; tests/pbx/test_power.py plays it all
on the real Asterisk.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.compliance import CallRefused, RefusalCode
from dialer.domain.ports import SessionLegUpdate
from dialer.domain.vocabulary import (
    CallOutcome,
    CallState,
    DialingMode,
    PowerNextCall,
    PowerSessionState,
)
from dialer.services.common import NotAllowed
from dialer.services.power import PowerService
from dialer.store.models import (
    AuditEntry,
    CallAttempt,
    CallingListEntry,
    Campaign,
    PowerSession,
)
from tests.integration.world import World, build_world

Sessions = async_sessionmaker[AsyncSession]
S = PowerSessionState


@pytest.fixture
async def world(sessions: Sessions) -> World:
    world = await build_world(sessions)
    async with sessions.begin() as session:
        await session.execute(
            update(Campaign)
            .where(Campaign.id == world.campaign_id)
            .values(dialing_mode=DialingMode.POWER)
        )
    return world


def power(world: World) -> PowerService:
    return PowerService(world.sessions, world.service(), world.lists(), clock=world.clock)


async def _row(world: World, session_id: int) -> PowerSession:
    async with world.sessions() as session:
        row = await session.get(PowerSession, session_id)
    assert row is not None
    return row


async def _on_the_line(world: World, service: PowerService, volunteer: str = "alice") -> int:
    row = await service.start(world.users[volunteer], world.campaign_id)
    assert row.state is S.CONNECTING
    [claimed] = await service.claim_new("default")
    assert claimed.id == row.id
    world.clock.now += timedelta(seconds=3)
    await service.leg_changed(
        SessionLegUpdate(row.id, up=True, at=world.clock.now, channel="PJSIP/1001-00000001")
    )
    assert (await _row(world, row.id)).state is S.WAITING
    world.clock.now += timedelta(seconds=2)  # waiting for the first contact
    return row.id


async def _end_call(world: World, call_id: str, *, answered: bool) -> None:
    now = world.clock.now
    async with world.sessions.begin() as session:
        await session.execute(
            update(CallAttempt)
            .where(CallAttempt.call_id == call_id)
            .values(
                state=CallState.ENDED,
                outcome=CallOutcome.COMPLETED if answered else CallOutcome.CONTACT_BUSY,
                volunteer_answered_at=now,
                contact_answered_at=now if answered else None,
                ended_at=now,
            )
        )


async def test_a_click_campaign_has_no_power_sessions(world: World) -> None:
    service = power(world)
    with pytest.raises(CallRefused) as refused:
        await service.start(world.users["alice"], world.other_campaign_id)
    # Another team's campaign is not in view at all.
    assert refused.value.refusal.code is RefusalCode.NOT_IN_TEAM
    async with world.sessions.begin() as session:
        await session.execute(
            update(Campaign)
            .where(Campaign.id == world.campaign_id)
            .values(dialing_mode=DialingMode.CLICK)
        )
    with pytest.raises(CallRefused) as refused:
        await service.start(world.users["alice"], world.campaign_id)
    assert refused.value.refusal.code is RefusalCode.NOT_POWER_MODE


async def test_a_volunteer_without_a_phone_cannot_start(world: World) -> None:
    with pytest.raises(CallRefused) as refused:
        await power(world).start(world.users["dave"], world.campaign_id)
    assert refused.value.refusal.code is RefusalCode.NO_EXTENSION


async def test_one_session_at_a_time_and_no_click_of_ones_own_meanwhile(world: World) -> None:
    service = power(world)
    row = await service.start(world.users["alice"], world.campaign_id)
    with pytest.raises(CallRefused) as refused:
        await service.start(world.users["alice"], world.campaign_id)
    assert refused.value.refusal.code is RefusalCode.IN_POWER_SESSION
    with pytest.raises(CallRefused) as refused:
        await world.service().start_call(
            volunteer_id=world.users["alice"],
            contact_id=world.contacts["montreal"],
            campaign_id=world.campaign_id,
        )
    assert refused.value.refusal.code is RefusalCode.IN_POWER_SESSION
    # Bob, beside her, is not in one.
    await world.service().start_call(
        volunteer_id=world.users["bob"],
        contact_id=world.contacts["bob_contact"],
        campaign_id=world.campaign_id,
    )
    async with world.sessions() as session:
        audited = await session.scalar(
            select(AuditEntry).where(
                AuditEntry.action == "power.start", AuditEntry.entity_id == str(row.id)
            )
        )
    assert audited is not None and audited.actor_id == world.users["alice"]


async def test_a_session_dials_waits_for_the_outcome_and_dials_again(world: World) -> None:
    service = power(world)
    session_id = await _on_the_line(world, service)

    first = await service.dial_next(session_id)
    assert first.call_id is not None
    row = await _row(world, session_id)
    assert (row.state, row.calls) == (S.DIALING, 1)
    async with world.sessions() as session:
        call = await session.scalar(select(CallAttempt).where(CallAttempt.call_id == first.call_id))
    assert call is not None and call.power_session_id == session_id
    # Only one contact at a time: dialing again while one is up does nothing.
    assert (await service.dial_next(session_id)).call_id is None

    # Answered, then over: the outcome is owed before anyone else is dialed.
    world.clock.now += timedelta(seconds=40)
    await _end_call(world, first.call_id, answered=True)
    await service.refresh({session_id})
    assert (await _row(world, session_id)).state is S.WRAP_UP
    assert (await service.dial_next(session_id)).call_id is None
    view = await service.current(world.users["alice"])
    assert view is not None and view.call is not None and view.call.call_id == first.call_id

    await world.outcomes().skip_outcome(world.users["alice"], first.call_id, reason="call_cut_off")
    await service.refresh({session_id})
    assert (await _row(world, session_id)).state is S.WAITING
    second = await service.dial_next(session_id)
    assert second.call_id not in (None, first.call_id)

    # Not answered: the next one at once, nothing owed.
    await _end_call(world, str(second.call_id), answered=False)
    await service.refresh({session_id})
    row = await _row(world, session_id)
    assert row.state is S.WAITING and row.calls == 2
    assert row.waited_seconds == 2.0


async def test_pause_resume_and_a_last_call(world: World) -> None:
    service = power(world)
    session_id = await _on_the_line(world, service)
    alice = world.users["alice"]
    paused = await service.pause(alice, "  coffee\nbreak ")
    assert (paused.state, paused.pause_reason) == (S.PAUSED, "coffee break")
    assert (await service.dial_next(session_id)).call_id is None
    resumed = await service.resume(alice)
    assert resumed.state is S.WAITING and resumed.pause_reason is None

    call = await service.dial_next(session_id)
    assert call.call_id is not None
    await service.last_call(alice)
    # The current call goes on; nothing is asked of the worker yet.
    assert await service.to_hang_up("default") == []
    await _end_call(world, call.call_id, answered=False)
    await service.refresh({session_id})
    assert await service.to_hang_up("default") == [session_id]
    row = await _row(world, session_id)
    assert row.end_reason == "last_call" and row.ended_at is None
    # The worker hangs the line up; its end closes the session.
    await service.leg_changed(SessionLegUpdate(session_id, up=False, at=world.clock.now))
    row = await _row(world, session_id)
    assert (row.state, row.end_reason) == (S.ENDED, "last_call")


async def test_the_line_dropping_ends_the_session_and_names_its_call(world: World) -> None:
    service = power(world)
    session_id = await _on_the_line(world, service)
    call = await service.dial_next(session_id)
    hang_up = await service.leg_changed(
        SessionLegUpdate(session_id, up=False, at=world.clock.now, reason="Normal Clearing")
    )
    assert hang_up == [call.call_id]
    row = await _row(world, session_id)
    assert (row.state, row.end_reason) == (S.ENDED, "volunteer_hung_up")
    with pytest.raises(NotAllowed):
        await service.pause(world.users["alice"], "late")
    # Once the worker has hung that call up, a new session may start.
    await _end_call(world, str(call.call_id), answered=False)
    await service.start(world.users["alice"], world.campaign_id)


async def test_leaving_before_the_worker_called_ends_at_once(world: World) -> None:
    service = power(world)
    row = await service.start(world.users["alice"], world.campaign_id)
    left = await service.leave(world.users["alice"])
    assert (left.state, left.end_reason) == (S.ENDED, "left")
    assert await service.claim_new("default") == []
    assert row.id == left.id


async def test_a_phone_that_never_answers_ends_the_session(world: World) -> None:
    service = power(world)
    row = await service.start(world.users["alice"], world.campaign_id)
    await service.claim_new("default")
    await service.leg_changed(
        SessionLegUpdate(row.id, up=False, at=world.clock.now, reason="the phone was busy")
    )
    ended = await _row(world, row.id)
    assert ended.end_reason == "phone_not_answered: the phone was busy"


async def test_a_list_with_nobody_left_ends_the_session(world: World) -> None:
    service = power(world)
    session_id = await _on_the_line(world, service, volunteer="bob")
    call = await service.dial_next(session_id)
    assert call.call_id is not None
    await _end_call(world, call.call_id, answered=False)
    async with world.sessions.begin() as session:
        # Bob's only contact is done for the campaign.
        await session.execute(
            update(CallingListEntry)
            .where(CallingListEntry.volunteer_id == world.users["bob"])
            .values(done=True)
        )
    await service.refresh({session_id})
    result = await service.dial_next(session_id)
    assert result.ended and result.call_id is None
    row = await _row(world, session_id)
    assert row.end_reason == "list_done" and row.leave_requested_at is not None


async def test_a_session_no_worker_took_in_time_is_ended_not_called_late(world: World) -> None:
    service = power(world)
    row = await service.start(world.users["alice"], world.campaign_id)
    world.clock.now += timedelta(minutes=5)
    assert await service.claim_new("default", expiry=timedelta(seconds=60)) == []
    ended = await _row(world, row.id)
    assert (ended.state, ended.end_reason) == (S.ENDED, "pbx_unavailable")


async def test_a_campaign_may_dial_the_next_contact_as_a_call_ends(world: World) -> None:
    async with world.sessions.begin() as session:
        await session.execute(
            update(Campaign)
            .where(Campaign.id == world.campaign_id)
            .values(power_next_call=PowerNextCall.AT_CALL_END)
        )
    service = power(world)
    session_id = await _on_the_line(world, service)
    first = await service.dial_next(session_id)
    assert first.call_id is not None
    await _end_call(world, first.call_id, answered=True)
    await service.refresh({session_id})
    # One outcome owed: the next contact is dialed while it is recorded.
    assert (await _row(world, session_id)).state is S.WAITING
    second = await service.dial_next(session_id)
    assert second.call_id is not None
    view = await service.current(world.users["alice"])
    assert view is not None and view.call is not None and view.next_call is not None
    assert (view.call.call_id, view.next_call.call_id) == (first.call_id, second.call_id)
    # Two owed would be one too many: the session waits for the first.
    await _end_call(world, second.call_id, answered=True)
    await service.refresh({session_id})
    assert (await _row(world, session_id)).state is S.WRAP_UP
    assert (await service.dial_next(session_id)).call_id is None
    await world.outcomes().skip_outcome(world.users["alice"], first.call_id, reason="call_cut_off")
    await service.refresh({session_id})
    assert (await _row(world, session_id)).state is S.WAITING
    view = await service.current(world.users["alice"])
    assert view is not None and view.call is not None and view.call.call_id == second.call_id
