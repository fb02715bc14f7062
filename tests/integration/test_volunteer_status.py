"""The volunteer's live status around an outcome: wrapping up after an answered
call, available again once its outcome is saved, through the real worker, the
simulator and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ami_bridge.simulator import AmiSimulator
from dialer.domain.outcomes import parse_submission
from dialer.domain.vocabulary import CallOutcome, CallState
from dialer.live.broadcaster import Broadcaster
from dialer.services.live_calls import CallPublisher, volunteer_status
from dialer.store import calls
from dialer.store.models import CallAttempt, utcnow
from tests.integration.pbx_harness import Harness, running_worker
from tests.integration.world import build_world

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def harness(sessions: Sessions, simulator: AmiSimulator) -> AsyncIterator[Harness]:
    world = await build_world(sessions)
    async with running_worker(world, simulator) as running:
        yield running


def shown_status(broadcaster: Broadcaster, volunteer_id: int) -> dict[str, Any]:
    """What a live panel opened now shows for the volunteer (its snapshot)."""
    event = broadcaster.current("volunteer", str(volunteer_id))
    assert event is not None
    return event.payload


async def record_answered(harness: Harness, call_id: str, submission_id: str) -> None:
    await harness.world.outcomes(harness.service.publisher).record_outcome(
        harness.world.users["alice"],
        parse_submission(
            {
                "submission_id": submission_id,
                "call_id": call_id,
                "contact_id": harness.world.contacts["explicit_zone"],
                "outcome": "answered",
                "consent": True,
                "survey_answers": {"vote": "yes"},
            }
        ),
    )


async def test_saving_the_outcome_makes_the_volunteer_available(harness: Harness) -> None:
    broadcaster = harness.service.broadcaster
    alice = harness.world.users["alice"]
    call_id = await harness.call("explicit_zone")  # answers, talks, hangs up
    ended = await harness.wait_for(call_id, CallState.ENDED)
    assert ended.outcome is CallOutcome.COMPLETED
    assert shown_status(broadcaster, alice)["status"] == "wrap_up"
    subscription = broadcaster.subscribe()

    await record_answered(harness, call_id, "status-01")

    assert shown_status(broadcaster, alice) | {"since": None} == {
        "volunteer_id": alice,
        "status": "idle",
        "call_id": call_id,
        "since": None,
    }
    # Streams following the panel (and the MQTT publisher) get it as an event.
    statuses = [e.payload["status"] for e in subscription.take(100) if e.kind == "volunteer"]
    assert statuses == ["idle"]


async def test_a_second_copy_of_the_outcome_publishes_nothing(harness: Harness) -> None:
    call_id = await harness.call("explicit_zone")
    await harness.wait_for(call_id, CallState.ENDED)
    await record_answered(harness, call_id, "status-02")
    subscription = harness.service.broadcaster.subscribe()
    await record_answered(harness, call_id, "status-02")
    assert [e for e in subscription.take(100) if e.kind == "volunteer"] == []


async def test_a_call_that_reached_no_one_leaves_the_volunteer_available(
    harness: Harness,
) -> None:
    # Busy: its automatic "absent" is its outcome, so there is nothing to wrap up.
    call_id = await harness.call("vancouver")
    ended = await harness.wait_for(call_id, CallState.ENDED)
    assert ended.outcome is CallOutcome.CONTACT_BUSY
    status = shown_status(harness.service.broadcaster, harness.world.users["alice"])
    assert (status["status"], status["call_id"]) == ("idle", call_id)


def answered_call(call_id: str, volunteer_id: int, state: CallState) -> CallAttempt:
    ended = state is CallState.ENDED
    return CallAttempt(
        call_id=call_id,
        state=state,
        outcome=CallOutcome.COMPLETED if ended else None,
        contact_answered_at=utcnow(),
        volunteer_id=volunteer_id,
        contact_id=1,
        number_e164="+15145550184",
    )


async def test_a_late_end_of_the_call_does_not_bring_wrap_up_back(sessions: Sessions) -> None:
    # The outcome saved while the call was still up (or its end announced
    # after the outcome): the end must leave the volunteer available.
    publisher = CallPublisher(sessions, Broadcaster())
    publisher.publish_call(answered_call("c1", 7, CallState.TALKING), names={})
    publisher.publish_outcome_recorded(7, "c1", ended=False)
    assert shown_status(publisher.broadcaster, 7)["status"] == "on_call"

    publisher.publish_call(answered_call("c1", 7, CallState.ENDED), names={})
    assert shown_status(publisher.broadcaster, 7)["status"] == "idle"


async def test_an_old_calls_outcome_leaves_a_new_call_shown(sessions: Sessions) -> None:
    publisher = CallPublisher(sessions, Broadcaster())
    publisher.publish_call(answered_call("old", 7, CallState.ENDED), names={})
    publisher.publish_call(answered_call("new", 7, CallState.RINGING_VOLUNTEER), names={})
    publisher.publish_outcome_recorded(7, "old", ended=True)
    status = shown_status(publisher.broadcaster, 7)
    assert (status["status"], status["call_id"]) == ("ringing", "new")


async def test_a_talk_an_organizer_hung_up_leaves_the_volunteer_wrapping_up(
    harness: Harness,
) -> None:
    # Montreal answers and stays on the line; an organizer hangs up from the
    # live panel.  The contact talked and no automatic outcome covers it:
    # Alice wraps up, and owes the outcome, until she records it.
    broadcaster = harness.service.broadcaster
    alice = harness.world.users["alice"]
    call_id = await harness.call("montreal")
    await harness.wait_for(call_id, CallState.TALKING)
    await harness.service.hang_up(harness.world.users["olivia"], call_id)
    ended = await harness.wait_for(call_id, CallState.ENDED)
    assert ended.outcome is CallOutcome.HUNG_UP_BY_OPERATOR
    assert ended.contact_answered_at is not None
    assert (shown_status(broadcaster, alice)["status"], ended.call_id) == ("wrap_up", call_id)
    async with harness.world.sessions() as session:
        pending = await calls.pending_outcome(session, alice)
    assert pending is not None and pending.call_id == call_id

    await harness.world.outcomes(harness.service.publisher).record_outcome(
        alice,
        parse_submission(
            {
                "submission_id": "status-hungup",
                "call_id": call_id,
                "contact_id": harness.world.contacts["montreal"],
                "outcome": "refused",
            }
        ),
    )
    assert shown_status(broadcaster, alice)["status"] == "idle"


def test_only_a_conversation_that_ended_leaves_wrap_up() -> None:
    ended = CallState.ENDED
    for outcome in (CallOutcome.COMPLETED, CallOutcome.HUNG_UP_BY_OPERATOR):
        assert volunteer_status(ended, outcome, contact_answered=True) == "wrap_up"
    # Lost to a PBX crash, or cut short before anyone answered: nothing to wrap up.
    assert volunteer_status(ended, CallOutcome.LOST, contact_answered=True) == "idle"
    assert volunteer_status(ended, CallOutcome.FAILED, contact_answered=True) == "idle"
    assert volunteer_status(ended, CallOutcome.HUNG_UP_BY_OPERATOR, contact_answered=False) == (
        "idle"
    )
