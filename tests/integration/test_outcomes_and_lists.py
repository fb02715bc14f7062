"""Recording outcomes (validation, enrichment, idempotency) and calling-list order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from dialer.domain.outcomes import SubmissionInvalid, parse_submission
from dialer.domain.vocabulary import CallOutcome, CallState, DispositionOutcome, TaskStatus
from dialer.services.call_endings import record_call_endings
from dialer.services.common import NotAllowed
from dialer.store.models import (
    AuditEntry,
    CallAttempt,
    CallingListEntry,
    Contact,
    ContactPhone,
    Disposition,
    FollowUpTask,
)
from tests.integration.world import World, build_world

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def world(sessions: Sessions) -> World:
    return await build_world(sessions)


async def ended_call(
    world: World,
    contact: str = "montreal",
    volunteer: str = "alice",
    outcome: CallOutcome = CallOutcome.COMPLETED,
) -> str:
    call = await world.service().start_call(
        volunteer_id=world.users[volunteer],
        contact_id=world.contacts[contact],
        campaign_id=world.campaign_id,
    )
    async with world.sessions.begin() as session:
        stored = await session.scalar(
            select(CallAttempt).where(CallAttempt.call_id == call.call_id)
        )
        assert stored is not None
        stored.state, stored.outcome, stored.ended_at = CallState.ENDED, outcome, world.clock.now
        await session.flush()
        await record_call_endings(session, [stored], world.clock.now)
    return call.call_id


def submission(world: World, call_id: str | None, **fields: Any) -> Any:
    return parse_submission(
        {
            "submission_id": fields.pop("submission_id", "sub-00000001"),
            "call_id": call_id,
            "contact_id": world.contacts[fields.pop("contact", "montreal")],
            "outcome": "answered",
            "consent": True,
            "survey_answers": {"vote": "yes", "volunteer": True},
            **fields,
        }
    )


async def test_a_full_outcome_is_stored_in_one_go(world: World) -> None:
    call_id = await ended_call(world)
    outcomes = world.outcomes()
    callback = world.clock.now + timedelta(days=1)
    result = await outcomes.record_outcome(
        world.users["alice"],
        submission(
            world,
            call_id,
            email="ADA@example.org",
            language="fr",
            new_numbers=[{"number": "438 555 0199", "type": "mobile"}],
            comments="Great chat <script>alert(1)</script>",
            mobilized=True,
            support_score=5,
            task={"assignee_id": world.users["olivia"], "description": "Send the flyer"},
            callback_at=callback.isoformat(),
        ),
    )
    assert not result.duplicate
    async with world.sessions() as session:
        disposition = await session.get(Disposition, result.disposition_id)
        assert disposition is not None
        assert disposition.outcome is DispositionOutcome.ANSWERED
        assert disposition.survey_answers == {"vote": "yes", "volunteer": True}
        assert disposition.comments == "Great chat <script>alert(1)</script>"
        contact = await session.get(
            Contact, world.contacts["montreal"], options=[selectinload(Contact.phones)]
        )
        assert contact is not None
        assert (contact.email, contact.language, contact.support_score) == (
            "ada@example.org",
            "fr",
            5,
        )
        assert sorted(p.e164 for p in contact.phones) == ["+14385550199", "+15145550184"]
        task = await session.scalar(select(FollowUpTask))
        assert task is not None
        assert (task.assignee_id, task.status) == (world.users["olivia"], TaskStatus.OPEN)
        entry = await session.scalar(
            select(CallingListEntry).where(
                CallingListEntry.contact_id == world.contacts["montreal"]
            )
        )
        assert entry is not None and entry.callback_at == callback and not entry.done
        assert "outcome.record" in (await session.scalars(select(AuditEntry.action))).all()


async def test_the_same_submission_twice_is_stored_once(world: World) -> None:
    call_id = await ended_call(world)
    outcomes = world.outcomes()
    first, second = await asyncio.gather(
        outcomes.record_outcome(world.users["alice"], submission(world, call_id)),
        outcomes.record_outcome(world.users["alice"], submission(world, call_id)),
    )
    assert first.disposition_id == second.disposition_id
    assert sorted([first.duplicate, second.duplicate]) == [False, True]
    again = await outcomes.record_outcome(world.users["alice"], submission(world, call_id))
    assert again.duplicate
    async with world.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Disposition)) == 1


async def test_invalid_survey_answers_store_nothing(world: World) -> None:
    call_id = await ended_call(world)
    with pytest.raises(SubmissionInvalid) as caught:
        await world.outcomes().record_outcome(
            world.users["alice"],
            submission(world, call_id, survey_answers={"vote": "perhaps"}, email="x"),
        )
    assert caught.value.errors == {
        "survey.vote": "choose one of: no, yes",
        "email": "not a valid email address",
    }
    async with world.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Disposition)) == 0
        contact = await session.get(Contact, world.contacts["montreal"])
        assert contact is not None and contact.email is None


async def test_wrong_number_and_do_not_call(world: World) -> None:
    call_id = await ended_call(world)
    await world.outcomes().record_outcome(
        world.users["alice"],
        submission(world, call_id, outcome="wrong_number", consent=None, survey_answers={}),
    )
    call_2 = await ended_call(world, contact="vancouver")
    await world.outcomes().record_outcome(
        world.users["alice"],
        submission(
            world,
            call_2,
            submission_id="sub-00000002",
            contact="vancouver",
            outcome="refused",
            consent=None,
            survey_answers={},
            do_not_call=True,
        ),
    )
    async with world.sessions() as session:
        montreal = await session.get(
            Contact, world.contacts["montreal"], options=[selectinload(Contact.phones)]
        )
        vancouver = await session.get(Contact, world.contacts["vancouver"])
        assert montreal is not None and vancouver is not None
        assert montreal.phones[0].wrong_number
        assert vancouver.do_not_call and vancouver.dnc_reason == "asked not to be called again"
        done = (
            await session.scalars(
                select(CallingListEntry.done).where(
                    CallingListEntry.contact_id.in_([montreal.id, vancouver.id])
                )
            )
        ).all()
    assert done == [True, True]


async def test_volunteers_cannot_record_for_others(world: World) -> None:
    call_id = await ended_call(world)
    with pytest.raises(NotAllowed):
        await world.outcomes().record_outcome(world.users["carol"], submission(world, call_id))
    with pytest.raises(NotAllowed):
        await world.outcomes().record_outcome(world.users["bob"], submission(world, call_id))


async def test_busy_calls_get_an_automatic_absent_and_a_retry(world: World) -> None:
    call_id = await ended_call(world, outcome=CallOutcome.CONTACT_BUSY)
    async with world.sessions() as session:
        auto = await session.scalar(select(Disposition))
        entry = await session.scalar(
            select(CallingListEntry).where(
                CallingListEntry.contact_id == world.contacts["montreal"]
            )
        )
    assert auto is not None and auto.outcome is DispositionOutcome.ABSENT
    assert auto.submission_id == f"auto-{call_id}"
    assert entry is not None and entry.attempts == 1
    assert entry.next_attempt_at == world.clock.now + timedelta(minutes=60)
    # The volunteer can still say what happened; it replaces the automatic one.
    await world.outcomes().record_outcome(
        world.users["alice"],
        submission(
            world, call_id, outcome="other", consent=None, survey_answers={}, comments="voicemail"
        ),
    )
    async with world.sessions() as session:
        [only] = (await session.scalars(select(Disposition))).all()
    assert (only.outcome, only.comments) == (DispositionOutcome.OTHER, "voicemail")


async def test_volunteer_side_failures_do_not_count_as_attempts(world: World) -> None:
    await ended_call(world, outcome=CallOutcome.VOLUNTEER_NO_ANSWER)
    async with world.sessions() as session:
        entry = await session.scalar(
            select(CallingListEntry).where(
                CallingListEntry.contact_id == world.contacts["montreal"]
            )
        )
        assert entry is not None and entry.attempts == 0
        assert await session.scalar(select(func.count()).select_from(Disposition)) == 0


async def test_list_order_callbacks_first_then_fresh_then_retries(world: World) -> None:
    lists = world.lists()
    alice = world.users["alice"]
    # Montreal, Vancouver, explicit_zone (Paris time) and Paris are Alice's
    # callable contacts at 17:30 UTC (premium is never callable).
    first = await lists.next_contact(alice, world.campaign_id)
    assert first.contact is not None and first.contact.id == world.contacts["montreal"]
    # Montreal called (busy): it goes behind the never-called ones.
    await ended_call(world, outcome=CallOutcome.CONTACT_BUSY)
    world.clock.now += timedelta(minutes=61)
    nxt = await lists.next_contact(alice, world.campaign_id)
    assert nxt.contact is not None and nxt.contact.id == world.contacts["vancouver"]
    # A due call-back on Paris jumps to the top.
    async with world.sessions.begin() as session:
        await session.execute(
            update(CallingListEntry)
            .where(CallingListEntry.contact_id == world.contacts["paris"])
            .values(callback_at=world.clock.now - timedelta(minutes=1))
        )
    top = await lists.next_contact(alice, world.campaign_id)
    assert top.contact is not None and top.contact.id == world.contacts["paris"]
    assert top.is_callback


async def test_empty_list_reasons(world: World) -> None:
    lists = world.lists()
    bob = world.users["bob"]
    assert (
        await lists.next_contact(world.users["olivia"], world.campaign_id)
    ).empty_reason == "empty"
    # Bob's only contact: called busy -> waiting for the retry delay.
    await ended_call(
        world, contact="bob_contact", volunteer="bob", outcome=CallOutcome.CONTACT_BUSY
    )
    waiting = await lists.next_contact(bob, world.campaign_id)
    assert waiting.empty_reason == "waiting_for_retry"
    assert waiting.available_at == world.clock.now + timedelta(minutes=60)
    # After the delay but at 03:00 in Montreal: outside hours until 09:00.
    world.clock.now = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    night = await lists.next_contact(bob, world.campaign_id)
    assert night.empty_reason == "outside_hours"
    assert night.message == "all remaining contacts are outside calling hours until 14:00 UTC"
    # Second busy attempt reaches max_attempts=2: done.
    world.clock.now = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
    await ended_call(
        world, contact="bob_contact", volunteer="bob", outcome=CallOutcome.CONTACT_BUSY
    )
    assert (await lists.next_contact(bob, world.campaign_id)).empty_reason == "all_done"


async def test_others_list_is_limited_to_the_same_campaign(world: World) -> None:
    lists = world.lists()
    helped = await lists.next_contact(
        world.users["alice"], world.campaign_id, list_owner_id=world.users["bob"]
    )
    assert helped.contact is not None and helped.contact.id == world.contacts["bob_contact"]
    with pytest.raises(NotAllowed):
        await lists.next_contact(
            world.users["alice"], world.campaign_id, list_owner_id=world.users["carol"]
        )
    with pytest.raises(NotAllowed):
        await lists.next_contact(world.users["carol"], world.campaign_id)


async def test_a_new_number_already_on_file_does_not_lose_the_outcome(world: World) -> None:
    call_id = await ended_call(world)
    # Bob's contact's number (same team) and Carol's (another team): neither
    # is attached, the outcome is stored, and the answer is the one a fresh
    # number gets.
    result = await world.outcomes().record_outcome(
        world.users["alice"],
        submission(
            world,
            call_id,
            new_numbers=[
                {"number": "514 555 0185"},
                {"number": "+15145550186"},
                {"number": "438 555 0199", "type": "mobile"},
                {"number": "+1 438-555-0199"},
            ],
        ),
    )
    assert not result.duplicate
    async with world.sessions() as session:
        montreal = await session.get(
            Contact, world.contacts["montreal"], options=[selectinload(Contact.phones)]
        )
        others = (
            await session.scalars(
                select(ContactPhone.contact_id).where(
                    ContactPhone.e164.in_(["+15145550185", "+15145550186"])
                )
            )
        ).all()
        audit = await session.scalar(
            select(AuditEntry.changes).where(AuditEntry.action == "outcome.record")
        )
    assert montreal is not None
    assert sorted(p.e164 for p in montreal.phones) == ["+14385550199", "+15145550184"]
    assert sorted(others) == sorted([world.contacts["bob_contact"], world.contacts["other_team"]])
    assert audit is not None
    assert audit["new_numbers"] == ["+14385550199"]
    # Kept, for an administrator to reconcile: nothing the volunteer said is lost.
    assert audit["new_numbers_on_another_contact"] == ["+15145550185", "+15145550186"]


async def test_two_outcomes_giving_one_new_number_at_once_are_both_stored(world: World) -> None:
    first = await ended_call(world)
    # Another volunteer's: Alice cannot call again before the first outcome is saved.
    second = await ended_call(world, contact="vancouver", volunteer="bob")
    outcomes = world.outcomes()
    results = await asyncio.gather(
        outcomes.record_outcome(
            world.users["alice"],
            submission(world, first, new_numbers=[{"number": "438 555 0177"}]),
        ),
        outcomes.record_outcome(
            world.users["bob"],
            submission(
                world,
                second,
                submission_id="sub-00000002",
                contact="vancouver",
                new_numbers=[{"number": "438 555 0177"}],
            ),
        ),
    )
    assert [r.duplicate for r in results] == [False, False]
    async with world.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Disposition)) == 2
        owners = (
            await session.scalars(
                select(ContactPhone.contact_id).where(ContactPhone.e164 == "+14385550177")
            )
        ).all()
    assert len(owners) == 1


async def test_a_bare_outcome_cannot_change_the_contact(world: World) -> None:
    bare: dict[str, Any] = {
        "outcome": "other",
        "consent": None,
        "survey_answers": {},
        "campaign_id": None,
    }
    with pytest.raises(SubmissionInvalid) as caught:
        await world.outcomes().record_outcome(
            world.users["alice"],
            submission(
                world,
                None,
                contact="bob_contact",
                do_not_call=True,
                email="grace@example.org",
                support_score=1,
                language="fr",
                new_numbers=[{"number": "438 555 0188"}],
                **bare,
            ),
        )
    message = "only the outcome of your own call can change the contact's details"
    assert caught.value.errors == dict.fromkeys(
        ["email", "language", "support_score", "do_not_call", "new_numbers"], message
    )
    async with world.sessions() as session:
        grace = await session.get(
            Contact, world.contacts["bob_contact"], options=[selectinload(Contact.phones)]
        )
        assert grace is not None
        assert (grace.do_not_call, grace.email, grace.support_score, grace.language) == (
            False,
            None,
            None,
            None,
        )
        assert [p.e164 for p in grace.phones] == ["+15145550185"]
        assert await session.scalar(select(func.count()).select_from(Disposition)) == 0
    # The same outcome without the details is stored (a note of what happened).
    stored = await world.outcomes().record_outcome(
        world.users["alice"],
        submission(world, None, contact="bob_contact", comments="met at the door", **bare),
    )
    assert not stored.duplicate
    # An organizer edits contacts anyway: their bare outcome may.
    await world.outcomes().record_outcome(
        world.users["olivia"],
        submission(
            world,
            None,
            submission_id="sub-00000003",
            contact="bob_contact",
            do_not_call=True,
            **bare,
        ),
    )
    async with world.sessions() as session:
        grace = await session.get(Contact, world.contacts["bob_contact"])
        assert grace is not None and grace.do_not_call


async def test_the_outcome_of_ones_own_call_may_change_the_contact(world: World) -> None:
    call_id = await ended_call(world, contact="bob_contact", volunteer="alice")
    await world.outcomes().record_outcome(
        world.users["alice"],
        submission(
            world,
            call_id,
            contact="bob_contact",
            outcome="refused",
            consent=None,
            survey_answers={},
            do_not_call=True,
            support_score=1,
        ),
    )
    async with world.sessions() as session:
        grace = await session.get(Contact, world.contacts["bob_contact"])
        assert grace is not None and grace.do_not_call and grace.support_score == 1
