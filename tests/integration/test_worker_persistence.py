"""How the worker stores a batch of call updates, against the real schema.

A batch is one transaction: the calls' rows in one executemany, then the
bookkeeping of the calls that ended (attempts, retry, automatic "absent")
in set-based statements.  These tests feed snapshots straight to
``CallWorker.apply``, as the consumer loop does, several calls per batch.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ami_bridge.simulator import AmiSimulator
from dialer.domain.ports import CallPbx
from dialer.domain.vocabulary import CallOutcome, CallState, DispositionOutcome
from dialer.services.call_endings import record_call_endings
from dialer.store.models import CallAttempt, CallingListEntry, Disposition
from dialer.worker.call_worker import CallWorker, _StoreConnections
from tests.integration.pbx_harness import running_worker
from tests.integration.world import World, build_world

Sessions = async_sessionmaker[AsyncSession]


@dataclass(frozen=True)
class Snapshot:
    """What the PBX link reports (``ami_bridge``'s CallUpdate), reduced to the port."""

    call_id: str
    state: CallState
    at: datetime
    outcome: CallOutcome | None = None
    failure_reason: str | None = None
    discovered: bool = False
    volunteer_channel: str | None = None
    volunteer_uniqueid: str | None = None
    contact_channel: str | None = None
    contact_uniqueid: str | None = None
    linkedid: str | None = None
    volunteer_answered_at: datetime | None = None
    contact_answered_at: datetime | None = None
    ended_at: datetime | None = None
    dial_status: str | None = None
    volunteer_hangup_cause: int | None = None
    contact_hangup_cause: int | None = None


@pytest.fixture
async def world(sessions: Sessions) -> World:
    return await build_world(sessions)


def worker_for(world: World) -> CallWorker:
    # apply() never touches the PBX link.
    return CallWorker(world.service(), cast(CallPbx, object()), originate_timeout_ms=1000)


async def live_call(world: World, call_id: str, contact: str, volunteer: str) -> None:
    async with world.sessions.begin() as session:
        session.add(
            CallAttempt(
                call_id=call_id,
                campaign_id=world.campaign_id,
                contact_id=world.contacts[contact],
                number_e164="+15145550184",
                volunteer_id=world.users[volunteer],
                state=CallState.REQUESTED,
                requested_at=world.clock.now,
                originate_sent_at=world.clock.now,
            )
        )


def dialed(call_id: str, at: datetime, n: int) -> list[Snapshot]:
    """The volunteer answers and the contact's phone rings."""
    channels: dict[str, Any] = {
        "volunteer_channel": f"PJSIP/100{n}-0000000{n}",
        "volunteer_uniqueid": f"v{n}",
        "linkedid": f"v{n}",
    }
    return [
        Snapshot(call_id, CallState.RINGING_VOLUNTEER, at, **channels),
        Snapshot(call_id, CallState.VOLUNTEER_ANSWERED, at, volunteer_answered_at=at, **channels),
        Snapshot(
            call_id,
            CallState.RINGING_CONTACT,
            at,
            volunteer_answered_at=at,
            contact_channel=f"Local/{n}@dialer-outbound-0000;1",
            contact_uniqueid=f"c{n}",
            **channels,
        ),
    ]


def ended(call_id: str, at: datetime, outcome: CallOutcome, dial_status: str | None) -> Snapshot:
    return Snapshot(
        call_id,
        CallState.ENDED,
        at,
        outcome=outcome,
        ended_at=at,
        dial_status=dial_status,
        volunteer_hangup_cause=16,
        contact_hangup_cause=17 if outcome is CallOutcome.CONTACT_BUSY else 16,
    )


async def entry_of(world: World, contact: str) -> CallingListEntry:
    async with world.sessions() as session:
        entry = await session.scalar(
            select(CallingListEntry).where(
                CallingListEntry.campaign_id == world.campaign_id,
                CallingListEntry.contact_id == world.contacts[contact],
            )
        )
    assert entry is not None
    return entry


async def row(world: World, call_id: str) -> CallAttempt:
    async with world.sessions() as session:
        call = await session.scalar(select(CallAttempt).where(CallAttempt.call_id == call_id))
    assert call is not None
    return call


async def dispositions(world: World) -> list[Disposition]:
    async with world.sessions() as session:
        return list(await session.scalars(select(Disposition).order_by(Disposition.id)))


async def test_calls_ending_in_one_batch_get_their_bookkeeping_exactly_once(world: World) -> None:
    now = world.clock.now
    later = now + timedelta(seconds=30)
    calls = {
        "busy": ("montreal", "alice"),
        "no-answer": ("bob_contact", "bob"),
        "talked": ("vancouver", "dave"),
        "volunteer-away": ("no_answer", "olivia"),
    }
    for call_id, (contact, volunteer) in calls.items():
        await live_call(world, call_id, contact, volunteer)
    batch = [
        *dialed("busy", now, 1),
        *dialed("no-answer", now, 2),
        *dialed("talked", now, 3),
        Snapshot(
            "talked",
            CallState.TALKING,
            now,
            contact_answered_at=now,
            dial_status="ANSWER",
        ),
        Snapshot("volunteer-away", CallState.RINGING_VOLUNTEER, now, volunteer_channel="PJSIP/x"),
        ended("busy", later, CallOutcome.CONTACT_BUSY, "BUSY"),
        ended("no-answer", later, CallOutcome.CONTACT_NO_ANSWER, "NOANSWER"),
        ended("talked", later, CallOutcome.COMPLETED, "ANSWER"),
        ended("volunteer-away", later, CallOutcome.VOLUNTEER_NO_ANSWER, None),
        # The end reported twice in the same batch: still one end.
        ended("busy", later, CallOutcome.CONTACT_BUSY, "BUSY"),
    ]
    worker = worker_for(world)
    stored = await worker.apply(batch)
    assert {call.call_id for call in stored} == set(calls)
    # A batch retried after a commit whose answer was lost changes nothing.
    assert await worker.apply(batch) == []

    automatic = await dispositions(world)
    assert [(d.submission_id, d.outcome, d.comments) for d in automatic] == [
        ("auto-busy", DispositionOutcome.ABSENT, "automatic: contact_busy"),
        ("auto-no-answer", DispositionOutcome.ABSENT, "automatic: contact_no_answer"),
    ]
    busy = await row(world, "busy")
    assert automatic[0].call_attempt_id == busy.id
    assert automatic[0].volunteer_id == world.users["alice"]
    assert automatic[0].campaign_id == world.campaign_id
    assert automatic[0].created_at == later
    for contact in ("montreal", "bob_contact", "vancouver"):
        entry = await entry_of(world, contact)
        assert entry.attempts == 1, contact
        assert entry.last_attempt_at == later
        assert entry.next_attempt_at == later + timedelta(minutes=60)  # the campaign's delay
        assert not entry.done  # 1 of 2 attempts
    # The volunteer never answered: the contact was not dialed, no attempt.
    untouched = await entry_of(world, "no_answer")
    assert (untouched.attempts, untouched.last_attempt_at, untouched.done) == (0, None, False)


async def test_two_workers_storing_the_same_end_at_once_count_it_once(world: World) -> None:
    """Two workers that both saw the call end (one on each connection to
    the PBX, or one resyncing it) store the end together: one stores it,
    the other finds it stored, neither fails."""
    now = world.clock.now
    later = now + timedelta(seconds=30)
    for call_id, contact, volunteer in (
        ("busy", "montreal", "alice"),
        ("other", "vancouver", "dave"),
    ):
        await live_call(world, call_id, contact, volunteer)
    ending = [
        *dialed("busy", now, 1),
        *dialed("other", now, 3),
        ended("busy", later, CallOutcome.CONTACT_BUSY, "BUSY"),
        ended("other", later, CallOutcome.CONTACT_NO_ANSWER, "NOANSWER"),
    ]
    first, second = worker_for(world), worker_for(world)
    # Reversed in the second: its rows are locked in the other order.
    stored = await asyncio.gather(first.apply(ending), second.apply(ending[::-1]))
    assert sorted(call.call_id for batch in stored for call in batch) == ["busy", "other"]
    assert sorted(d.submission_id for d in await dispositions(world)) == [
        "auto-busy",
        "auto-other",
    ]
    for contact in ("montreal", "vancouver"):
        assert (await entry_of(world, contact)).attempts == 1, contact


async def test_each_row_gets_what_its_snapshots_said(world: World) -> None:
    now = world.clock.now
    later = now + timedelta(seconds=5)
    await live_call(world, "talked", "vancouver", "alice")
    await live_call(world, "lost", "montreal", "bob")
    worker = worker_for(world)
    await worker.apply(
        [
            *dialed("talked", now, 1),
            Snapshot("talked", CallState.TALKING, later, contact_answered_at=later),
            # Older news arriving late never moves a call backwards...
            Snapshot("talked", CallState.RINGING_CONTACT, later, dial_status="STALE"),
            Snapshot(
                "lost", CallState.ENDED, later, outcome=CallOutcome.LOST, failure_reason="x" * 600
            ),
            # ...and an ended call stays as it ended.
            Snapshot("lost", CallState.TALKING, later, contact_channel="Local/late"),
        ]
    )
    talked = await row(world, "talked")
    assert talked.state is CallState.TALKING
    assert talked.volunteer_channel == "PJSIP/1001-00000001"
    assert talked.contact_channel == "Local/1@dialer-outbound-0000;1"
    assert (talked.volunteer_answered_at, talked.contact_answered_at) == (now, later)
    assert talked.dial_status is None
    assert talked.outcome is None and talked.ended_at is None
    lost = await row(world, "lost")
    assert (lost.state, lost.outcome, lost.needs_review) == (
        CallState.ENDED,
        CallOutcome.LOST,
        True,
    )
    assert lost.failure_reason == "x" * 500
    assert lost.contact_channel is None
    # A later batch carries on from what is stored.
    await worker.apply([ended("talked", later, CallOutcome.COMPLETED, "ANSWER")])
    talked = await row(world, "talked")
    assert (talked.state, talked.outcome, talked.dial_status) == (
        CallState.ENDED,
        CallOutcome.COMPLETED,
        "ANSWER",
    )
    assert talked.volunteer_channel == "PJSIP/1001-00000001"  # kept, not cleared


async def test_a_stored_answer_time_is_never_replaced_by_a_later_one(world: World) -> None:
    # A restarted worker's resync reports the call again with its own times:
    # what was stored as it happened stands.
    now = world.clock.now
    resync = now + timedelta(seconds=11)
    await live_call(world, "resumed", "vancouver", "alice")
    worker = worker_for(world)
    await worker.apply(
        [
            *dialed("resumed", now, 1),
            Snapshot("resumed", CallState.TALKING, now, contact_answered_at=now),
        ]
    )
    restarted = worker_for(world)
    await restarted.apply(
        [
            Snapshot(
                "resumed",
                CallState.TALKING,
                resync,
                volunteer_answered_at=resync,
                contact_answered_at=resync,
            ),
            ended("resumed", resync + timedelta(seconds=1), CallOutcome.COMPLETED, "ANSWER"),
            ended("resumed", resync + timedelta(seconds=9), CallOutcome.COMPLETED, "ANSWER"),
        ]
    )
    resumed = await row(world, "resumed")
    assert (resumed.volunteer_answered_at, resumed.contact_answered_at) == (now, now)
    assert resumed.ended_at == resync + timedelta(seconds=1)


async def test_the_last_allowed_attempt_closes_the_entry_and_a_due_callback_is_made(
    world: World,
) -> None:
    now = world.clock.now
    later = now + timedelta(minutes=1)
    async with world.sessions.begin() as session:
        await session.execute(
            update(CallingListEntry)
            .where(CallingListEntry.contact_id == world.contacts["montreal"])
            .values(attempts=1, callback_at=now)  # a call-back due now
        )
        await session.execute(
            update(CallingListEntry)
            .where(CallingListEntry.contact_id == world.contacts["vancouver"])
            .values(callback_at=now + timedelta(days=1))  # one for tomorrow
        )
    await live_call(world, "last", "montreal", "alice")
    await live_call(world, "early", "vancouver", "bob")
    await worker_for(world).apply(
        [
            *dialed("last", now, 1),
            *dialed("early", now, 2),
            ended("last", later, CallOutcome.CONTACT_BUSY, "BUSY"),
            ended("early", later, CallOutcome.COMPLETED, "ANSWER"),
        ]
    )
    last = await entry_of(world, "montreal")
    assert (last.attempts, last.done, last.callback_at) == (2, True, None)
    early = await entry_of(world, "vancouver")
    assert (early.attempts, early.done) == (1, False)
    assert early.callback_at == now + timedelta(days=1)


async def test_two_ended_calls_on_one_entry_count_as_two_attempts_in_order(
    world: World,
) -> None:
    """Bookkeeping given two ends for the same contact at once: as if one after the other."""
    now = world.clock.now
    first_end, second_end = now + timedelta(minutes=1), now + timedelta(minutes=2)
    async with world.sessions.begin() as session:
        calls = [
            CallAttempt(
                call_id=call_id,
                campaign_id=world.campaign_id,
                contact_id=world.contacts["montreal"],
                number_e164="+15145550184",
                volunteer_id=world.users["alice"],
                state=CallState.ENDED,
                outcome=outcome,
                contact_channel="Local/1",
                requested_at=now,
                ended_at=end,
            )
            for call_id, outcome, end in (
                ("first", CallOutcome.CONTACT_NO_ANSWER, first_end),
                ("second", CallOutcome.COMPLETED, second_end),
            )
        ]
        session.add_all(calls)
        await session.flush()
        await record_call_endings(session, calls, world.clock.now)
    entry = await entry_of(world, "montreal")
    assert entry.attempts == 2
    assert entry.last_attempt_at == second_end
    assert entry.next_attempt_at == second_end + timedelta(minutes=60)
    # "done" as the absent call left it (1 attempt of 2), not re-judged by the completed one.
    assert not entry.done
    assert [d.submission_id for d in await dispositions(world)] == ["auto-first"]


async def test_calls_outside_campaigns_or_lists_are_stored_without_bookkeeping(
    world: World,
) -> None:
    now = world.clock.now
    await live_call(world, "off-list", "paris", "alice")
    async with world.sessions.begin() as session:
        await session.execute(
            update(CallAttempt).where(CallAttempt.call_id == "off-list").values(campaign_id=None)
        )
    stored = await worker_for(world).apply(
        [*dialed("off-list", now, 1), ended("off-list", now, CallOutcome.CONTACT_BUSY, "BUSY")]
    )
    assert [call.call_id for call in stored] == ["off-list"]
    assert (await row(world, "off-list")).state is CallState.ENDED
    assert await dispositions(world) == []
    assert (await entry_of(world, "paris")).attempts == 0


async def test_the_consumer_gives_its_connections_back_when_it_stops(
    sessions: Sessions, simulator: AmiSimulator
) -> None:
    world = await build_world(sessions)
    engine = world.service().sessions.kw["bind"]
    before = engine.pool.checkedout()
    async with running_worker(world, simulator) as harness:
        call_id = await harness.call("explicit_zone")
        ended_row = await harness.wait_for(call_id, CallState.ENDED)
        assert ended_row.outcome is CallOutcome.COMPLETED
        assert engine.pool.checkedout() > before  # kept between batches
    await asyncio.sleep(0)
    assert engine.pool.checkedout() == before


async def test_a_kept_connection_idle_too_long_is_not_trusted(world: World) -> None:
    """The server (or a proxy) may close an idle connection: after a pause, check out anew."""
    store = _StoreConnections(fresh_for=0.05)
    store.keep = True
    try:
        async with store.transaction(world.sessions, atomic=False) as session:
            backend = await session.scalar(text("SELECT pg_backend_pid()"))
        async with world.sessions() as session:
            await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        await asyncio.sleep(0.1)
        async with store.transaction(world.sessions, atomic=False) as session:
            assert await session.scalar(text("SELECT pg_backend_pid()")) != backend
        async with store.transaction(world.sessions, atomic=True) as session:
            assert await session.scalar(text("SELECT 1")) == 1
    finally:
        store.keep = False
        await store.close()
