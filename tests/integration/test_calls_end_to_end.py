"""Every call outcome end to end: service -> outbox -> AMI over TCP -> simulator
-> events -> tracker -> persisted row, against the real PostgreSQL schema."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ami_bridge.simulator import AmiSimulator, VolunteerBehaviour, VolunteerOutcome
from dialer.domain.outcomes import parse_submission
from dialer.domain.vocabulary import CallOutcome, CallState, DispositionOutcome
from dialer.store import calls as call_rows
from dialer.store.models import CallingListEntry, Disposition
from tests.integration.pbx_harness import Harness, running_worker
from tests.integration.test_dashboard_counters import Snapshot
from tests.integration.world import build_world

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def harness(sessions: Sessions, simulator: AmiSimulator) -> AsyncIterator[Harness]:
    world = await build_world(sessions)
    async with running_worker(world, simulator) as running:
        yield running


@pytest.mark.parametrize(
    ("contact", "outcome", "dial_status"),
    [
        ("explicit_zone", CallOutcome.COMPLETED, "ANSWER"),  # ...7: answers, talks, hangs up
        ("vancouver", CallOutcome.CONTACT_BUSY, "BUSY"),  # ...1
        ("no_answer", CallOutcome.CONTACT_NO_ANSWER, "NOANSWER"),  # ...2
        ("congestion", CallOutcome.CONTACT_CONGESTION, "CONGESTION"),  # ...3
        ("bob_contact", CallOutcome.CONTACT_REJECTED, None),  # ...5
        ("unreachable", CallOutcome.CONTACT_UNREACHABLE, None),  # ...6: no Dial status seen
    ],
)
async def test_contact_outcomes(
    harness: Harness, contact: str, outcome: CallOutcome, dial_status: str | None
) -> None:
    if contact == "bob_contact":
        call_id = await harness.call(contact, volunteer="bob")
    else:
        # explicit_zone lives in Paris time: fine at 17:30 UTC.
        call_id = await harness.call(contact)
    call = await harness.wait_for(call_id, CallState.ENDED)
    assert call.state is CallState.ENDED, call
    assert call.outcome is outcome, (call.outcome, call.failure_reason)
    if dial_status is not None:
        assert call.dial_status == dial_status
    assert call.volunteer_uniqueid == f"{call_id}-v"
    assert call.volunteer_channel is not None and call.volunteer_channel.startswith("PJSIP/100")
    assert call.originate_sent_at is not None and call.ended_at is not None
    assert harness.simulator.action_counts["Originate"] == 1
    if outcome is CallOutcome.COMPLETED:
        assert call.contact_answered_at is not None
        assert call.contact_channel is not None


async def test_busy_call_gets_absent_and_a_retry(harness: Harness) -> None:
    call_id = await harness.call("vancouver")
    await harness.wait_for(call_id, CallState.ENDED)
    async with harness.world.sessions() as session:
        disposition = await session.scalar(select(Disposition))
        entry = await session.scalar(
            select(CallingListEntry).where(
                CallingListEntry.contact_id == harness.world.contacts["vancouver"]
            )
        )
    assert disposition is not None and disposition.outcome is DispositionOutcome.ABSENT
    assert entry is not None and entry.attempts == 1 and entry.next_attempt_at is not None


@pytest.mark.parametrize(
    ("behaviour", "outcome"),
    [
        (VolunteerBehaviour(VolunteerOutcome.UNREACHABLE), CallOutcome.VOLUNTEER_UNREACHABLE),
        (VolunteerBehaviour(VolunteerOutcome.NO_ANSWER), CallOutcome.VOLUNTEER_NO_ANSWER),
        (VolunteerBehaviour(VolunteerOutcome.BUSY), CallOutcome.VOLUNTEER_BUSY),
    ],
)
async def test_volunteer_outcomes(
    harness: Harness, behaviour: VolunteerBehaviour, outcome: CallOutcome
) -> None:
    harness.simulator.script_volunteer("1001", behaviour)
    call_id = await harness.call("montreal")
    call = await harness.wait_for(call_id, CallState.ENDED)
    assert call.outcome is outcome, (call.outcome, call.failure_reason)
    async with harness.world.sessions() as session:
        entry = await session.scalar(
            select(CallingListEntry).where(
                CallingListEntry.contact_id == harness.world.contacts["montreal"]
            )
        )
    assert entry is not None and entry.attempts == 0  # the contact was never dialed


async def test_hangup_by_the_volunteer_during_talk(harness: Harness) -> None:
    call_id = await harness.call("montreal")  # ...4: answers and stays
    talking = await harness.wait_for(call_id, CallState.TALKING)
    assert talking.state is CallState.TALKING
    await harness.service.hang_up(harness.world.users["alice"], call_id)
    call = await harness.wait_for(call_id, CallState.ENDED)
    assert call.outcome is CallOutcome.COMPLETED
    hangups = [m for m in harness.simulator.actions if m.action == "Hangup"]
    assert [m["Channel"] for m in hangups] == [call.contact_channel]


async def test_hangup_by_an_organizer_while_ringing(harness: Harness) -> None:
    # The simulator scales the Originate timeout too: ring for 6 s (scaled),
    # answering only after 4 s, so the hang-up lands while it rings.
    harness.worker.originate_timeout_ms = 300_000
    harness.simulator.script_volunteer(
        "1001", VolunteerBehaviour(VolunteerOutcome.ANSWER, answer_after=200.0)
    )
    call_id = await harness.call("montreal")
    await harness.wait_for(call_id, CallState.RINGING_VOLUNTEER)
    await harness.service.hang_up(harness.world.users["olivia"], call_id)
    call = await harness.wait_for(call_id, CallState.ENDED)
    assert call.outcome is CallOutcome.HUNG_UP_BY_OPERATOR


async def test_volunteer_hangs_up_while_the_contact_rings(harness: Harness) -> None:
    call_id = await harness.call("no_answer")  # ...2: rings until the dial times out
    await harness.wait_for(call_id, CallState.RINGING_CONTACT)
    await harness.service.hang_up(harness.world.users["alice"], call_id)
    call = await harness.wait_for(call_id, CallState.ENDED)
    assert call.outcome is CallOutcome.HUNG_UP_BY_VOLUNTEER
    # The contact's phone rang: that counts as an attempt on them.
    async with harness.world.sessions() as session:
        entry = await session.scalar(
            select(CallingListEntry).where(
                CallingListEntry.contact_id == harness.world.contacts["no_answer"]
            )
        )
    assert entry is not None and entry.attempts == 1


async def test_live_state_is_published_after_it_is_stored(harness: Harness) -> None:
    subscription = harness.service.broadcaster.subscribe()
    call_id = await harness.call("explicit_zone")
    states = []
    async for event in subscription:
        if event.kind == "call" and event.key == call_id:
            states.append(event.payload["state"])
            stored = await harness.row(call_id)
            # What the screens see is never ahead of the database.
            assert list(CallState).index(stored.state) >= list(CallState).index(
                CallState(event.payload["state"])
            )
            if event.payload["state"] == "ended":
                break
    assert states[0] == "requested"
    assert states[-1] == "ended"
    assert "talking" in states


async def test_nothing_is_dialed_twice_by_two_workers(
    sessions: Sessions, simulator: AmiSimulator
) -> None:
    world = await build_world(sessions)
    async with running_worker(world, simulator) as first, running_worker(world, simulator):
        call_ids = [await first.call("explicit_zone"), await first.call("vancouver", "bob")]
        for call_id in call_ids:
            await first.wait_for(call_id, CallState.ENDED)
    assert simulator.action_counts["Originate"] == 2
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Disposition)) == 1


async def test_another_workers_stale_batch_never_reopens_an_ended_call(
    harness: Harness, sessions: Sessions
) -> None:
    """Two workers on one PBX both follow a call.  One stores its end (and
    the automatic "absent" of a busy contact); the other, whose batch read
    the row unlocked a moment before, writes the state it had seen: the
    ended row stays ended, and storing the end again is a no-op, not a
    unique-key refusal at every retry."""
    call_id = await harness.call("vancouver", "bob")  # busy: an automatic "absent"
    ended = await harness.wait_for(call_id, CallState.ENDED)
    assert ended.state is CallState.ENDED
    stale = await harness.row(call_id)
    stale.state, stale.outcome, stale.ended_at = CallState.RINGING_CONTACT, None, None
    async with sessions.begin() as session:
        await call_rows.store_calls(session, [stale])
    kept = await harness.row(call_id)
    assert (kept.state, kept.outcome) == (CallState.ENDED, ended.outcome)
    assert kept.ended_at == ended.ended_at
    assert ended.ended_at is not None
    again = Snapshot(
        call_id=call_id,
        at=ended.ended_at,
        state=CallState.ENDED,
        outcome=ended.outcome,
        contact_answered_at=None,
        ended_at=ended.ended_at,
        dial_status=ended.dial_status,
    )
    assert await harness.worker.apply([again]) == []
    async with sessions() as session:
        count = select(func.count()).select_from(Disposition)
        assert await session.scalar(count.where(Disposition.call_attempt_id == ended.id)) == 1


@pytest.mark.parametrize("writers", [1, 2])
async def test_every_update_is_stored_whatever_the_writer_count(
    harness: Harness, writers: int
) -> None:
    # One update per transaction and few writers: the slowest way through,
    # which must still store every change, including the last ones.
    harness.worker.writers, harness.worker.max_batch = writers, 1
    call_ids = [await harness.call("explicit_zone"), await harness.call("vancouver", "bob")]
    for call_id in call_ids:
        ended = await harness.wait_for(call_id, CallState.ENDED)
        assert ended.state is CallState.ENDED


async def test_campaign_counters_follow_calls_and_outcomes(harness: Harness) -> None:
    subscription = harness.service.broadcaster.subscribe()
    call_id = await harness.call("vancouver")  # busy: an automatic "absent"
    await harness.wait_for(call_id, CallState.ENDED)
    key = str(harness.world.campaign_id)
    async with asyncio.timeout(5):
        async for event in subscription:
            if event.kind == "campaign" and event.key == key:
                break
    assert event.payload == {
        "campaign_id": harness.world.campaign_id,
        "dials": 1,
        "reached": 0,
        "contact_rate": 0.0,
        "live_calls": 0,
        "call_outcomes": {"contact_busy": 1},
        "outcomes": {"absent": 1},
    }
    answered = await harness.call("explicit_zone")
    await harness.wait_for(answered, CallState.ENDED)
    await harness.world.outcomes(harness.service.publisher).record_outcome(
        harness.world.users["alice"],
        parse_submission(
            {
                "submission_id": "counter-01",
                "call_id": answered,
                "contact_id": harness.world.contacts["explicit_zone"],
                "outcome": "answered",
                "consent": True,
                "survey_answers": {"vote": "yes"},
            }
        ),
    )
    [latest] = harness.service.broadcaster.snapshot("campaign")
    assert latest.payload["dials"] == 2 and latest.payload["reached"] == 1
    assert latest.payload["contact_rate"] == 0.5
    assert latest.payload["outcomes"] == {"absent": 1, "answered": 1}
