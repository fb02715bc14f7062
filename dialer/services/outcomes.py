"""Recording what a volunteer says after a call: the disposition, the survey
answers, the contact's new details, a follow-up task, and the calling
list's next step, all in one transaction.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from dialer.domain.outcomes import OutcomeSubmission, SubmissionInvalid, validate_submission
from dialer.domain.survey import SurveyDefinition
from dialer.domain.vocabulary import CallState, DispositionOutcome, PhoneType, TaskStatus
from dialer.services import notifications
from dialer.services.access import (
    can_access_campaign,
    can_access_contact,
    can_oversee_call,
    may_hand_task_to,
)
from dialer.services.common import Clock, NotAllowed, RetryableError, with_db_retry
from dialer.services.live_calls import CallPublisher
from dialer.store import audit, calls, contacts, lists, outcomes
from dialer.store.access import STAFF_ROLES
from dialer.store.models import (
    CallAttempt,
    CallingListEntry,
    Campaign,
    Contact,
    Disposition,
    FollowUpTask,
    User,
    utcnow,
)
from dialer.store.notify import OUTCOMES_SETTLED, notify


@dataclass(frozen=True, slots=True)
class SettledCall:
    """The call an outcome was recorded for, as it stood then."""

    call_id: str
    volunteer_id: int
    ended: bool


@dataclass(frozen=True, slots=True)
class OutcomeResult:
    disposition_id: int
    duplicate: bool
    campaign_id: int | None = None
    call: SettledCall | None = None


# Why a volunteer may leave an answered call without its outcome; "other"
# needs a few words.  The labels are web.i18n.labels.skip_reason's.
SKIP_REASONS = ("call_cut_off", "wrong_person", "no_conversation", "other")
MAX_SKIP_NOTE = 500


@dataclass(frozen=True, slots=True)
class SkipResult:
    call_id: str
    # False when the outcome had been skipped already (a second click).
    skipped: bool


class OutcomeAlreadyRecorded(Exception):
    """The call has an outcome: there is nothing left to skip."""


@dataclass(frozen=True, slots=True)
class _Skipped:
    volunteer_id: int
    skipped: bool


class _AlreadyStored(Exception):
    def __init__(self, disposition_id: int) -> None:
        super().__init__(disposition_id)
        self.disposition_id = disposition_id


# What an outcome may change on the contact, beyond the outcome itself.
CONTACT_DETAIL_FIELDS = ("email", "language", "support_score", "do_not_call", "new_numbers")
DETAILS_NEED_A_CALL = "only the outcome of your own call can change the contact's details"


def _given(value: object) -> bool:
    # A blank email or language changes nothing (see _enrich_contact).
    if isinstance(value, str):
        return bool(value.strip())
    return value not in (None, False, [])


def _refuse_details_without_a_call(submission: OutcomeSubmission) -> None:
    """A volunteer changes a contact only through the outcome of their own call.

    Without this, anyone who can see a contact could put it on the
    do-not-call list, or rewrite its email or score, with a bare outcome;
    the call is the evidence that the contact said so.  Organizers and
    administrators edit contacts anyway, so their bare outcomes may.
    """
    errors = {
        name: DETAILS_NEED_A_CALL
        for name in CONTACT_DETAIL_FIELDS
        if _given(getattr(submission, name))
    }
    if errors:
        raise SubmissionInvalid(errors)


class OutcomeService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        region: str,
        publisher: CallPublisher,
        clock: Clock = utcnow,
    ) -> None:
        self.sessions = sessions
        self.region = region
        self.publisher = publisher
        self.clock = clock

    async def record_outcome(self, user_id: int, submission: OutcomeSubmission) -> OutcomeResult:
        """Store what the volunteer recorded, once, in one transaction.

        Safe to call again with the same ``submission_id`` (a double click,
        a retry after a timeout): the second call returns the first result.
        """
        result = await with_db_retry(lambda: self._record_outcome(user_id, submission))
        if not result.duplicate and result.call is not None:
            # Published after the commit, as every live state is: what the
            # panels show is never ahead of the database.
            settled = result.call
            self.publisher.publish_outcome_recorded(
                settled.volunteer_id, settled.call_id, ended=settled.ended
            )
        if not result.duplicate and result.campaign_id is not None:
            with contextlib.suppress(SQLAlchemyError, OSError):
                # Counters are a nicety: the outcome is stored either way.
                await self.publisher.publish_campaign_counters([result.campaign_id])
        return result

    async def skip_outcome(
        self, user_id: int, call_id: str, *, reason: str, note: str = ""
    ) -> SkipResult:
        """Leave an answered call without its outcome, on purpose and saying why.

        The volunteer may then call again.  The contact follows the
        campaign's usual retry rules: the call already counted as an
        attempt, and with no outcome the list entry is not settled, so the
        contact comes back after the retry delay while attempts remain.
        """
        note = note.strip()
        errors: dict[str, str] = {}
        if reason not in SKIP_REASONS:
            errors["reason"] = "choose a reason"
        elif reason == "other" and not note:
            errors["note"] = "say why in a few words"
        if len(note) > MAX_SKIP_NOTE:
            errors["note"] = "too long"
        if errors:
            raise SubmissionInvalid(errors)
        result = await with_db_retry(lambda: self._skip_outcome(user_id, call_id, reason, note))
        if result.skipped:
            self.publisher.publish_outcome_recorded(result.volunteer_id, call_id, ended=True)
        return SkipResult(call_id, result.skipped)

    async def _skip_outcome(self, user_id: int, call_id: str, reason: str, note: str) -> _Skipped:
        async with self.sessions.begin() as session:
            user = await session.get(User, user_id)
            call = await session.scalar(select(CallAttempt).where(CallAttempt.call_id == call_id))
            if user is None or call is None or not await can_oversee_call(session, user, call):
                raise NotAllowed("no such call")
            if call.outcome_skipped_at is not None:
                return _Skipped(call.volunteer_id, skipped=False)
            if await session.scalar(
                select(Disposition.id).where(Disposition.call_attempt_id == call.id)
            ):
                raise OutcomeAlreadyRecorded(call_id)
            if call.state is not CallState.ENDED:
                raise SubmissionInvalid({"call_id": "the call is not over yet"})
            if not await calls.skip_outcome(
                session, call, reason=reason, note=note, by_id=user.id, at=self.clock()
            ):
                # Not an answered call (its automatic outcome stands), or an
                # outcome was saved in another tab meanwhile.
                raise OutcomeAlreadyRecorded(call_id)
            await audit.record(
                session,
                action="outcome.skip",
                entity_type="call",
                entity_id=call.call_id,
                changes={"contact_id": call.contact_id, "reason": reason, "note": note},
                actor_id=user.id,
            )
            await notify(session, OUTCOMES_SETTLED, call.pbx)
            return _Skipped(call.volunteer_id, skipped=True)

    async def _record_outcome(self, user_id: int, submission: OutcomeSubmission) -> OutcomeResult:
        now = self.clock()
        try:
            async with self.sessions.begin() as session:
                existing = await session.scalar(
                    select(Disposition).where(Disposition.submission_id == submission.submission_id)
                )
                if existing is not None:
                    if existing.volunteer_id != user_id:
                        raise NotAllowed("this submission belongs to someone else")
                    return OutcomeResult(existing.id, duplicate=True)
                disposition, call = await self._apply_outcome(session, user_id, submission, now)
                if call is not None:
                    # The worker of the call's PBX shows the volunteer available
                    # on every process's panel (CallPublisher.settle_wrap_ups).
                    await notify(session, OUTCOMES_SETTLED, call.pbx)
                settled = (
                    SettledCall(call.call_id, call.volunteer_id, call.state is CallState.ENDED)
                    if call is not None
                    else None
                )
                return OutcomeResult(disposition.id, False, disposition.campaign_id, settled)
        except _AlreadyStored as stored:
            return OutcomeResult(stored.disposition_id, duplicate=True)
        except IntegrityError as error:
            if "submission_id" not in str(error.orig) and "call_attempt_id" not in str(error.orig):
                raise
        # A concurrent copy of the same submission won the race.
        async with self.sessions() as session:
            existing = await session.scalar(
                select(Disposition).where(
                    or_(
                        Disposition.submission_id == submission.submission_id,
                        and_(
                            Disposition.call_attempt_id.is_not(None),
                            Disposition.call_attempt_id
                            == select(CallAttempt.id)
                            .where(CallAttempt.call_id == submission.call_id)
                            .scalar_subquery(),
                        ),
                    )
                )
            )
        if existing is None:
            raise RetryableError("the submission conflicted with another; retry")
        return OutcomeResult(existing.id, duplicate=True)

    async def _apply_outcome(
        self, session: AsyncSession, user_id: int, submission: OutcomeSubmission, now: datetime
    ) -> tuple[Disposition, CallAttempt | None]:
        user = await session.get(User, user_id)
        if user is None:
            raise NotAllowed("unknown user")
        contact = await session.get(
            Contact, submission.contact_id, options=[selectinload(Contact.phones)]
        )
        if contact is None or not await can_access_contact(session, user, contact.id):
            raise NotAllowed("no such contact")
        call: CallAttempt | None = None
        if submission.call_id is not None:
            call = await session.scalar(
                select(CallAttempt).where(CallAttempt.call_id == submission.call_id)
            )
            if call is None or call.contact_id != contact.id:
                raise SubmissionInvalid({"call_id": "no such call for this contact"})
            if not await can_oversee_call(session, user, call):
                raise NotAllowed("this call belongs to another volunteer")
            earlier = await session.scalar(
                select(Disposition).where(Disposition.call_attempt_id == call.id)
            )
            if earlier is not None:
                if earlier.submission_id == submission.submission_id:
                    # A concurrent copy of this submission committed first.
                    raise _AlreadyStored(earlier.id)
                if not earlier.submission_id.startswith("auto-"):
                    raise SubmissionInvalid(
                        {"call_id": "an outcome was already recorded for this call"}
                    )
                # The automatic "absent" gives way to what the volunteer says.
                await outcomes.withdraw_automatic(session, earlier)
        campaign_id = call.campaign_id if call is not None else submission.campaign_id
        campaign = await session.get(Campaign, campaign_id) if campaign_id is not None else None
        if campaign is not None and not await can_access_campaign(session, user, campaign):
            raise NotAllowed("you are not in this campaign's team")
        survey = campaign.survey if campaign is not None else SurveyDefinition()
        if submission.task is not None:
            assignee = await session.get(User, submission.task.assignee_id)
            # Anyone the task may not go to is "no such user", as an unknown
            # id is, so the answer does not reveal other teams' people.
            if (
                assignee is None
                or not assignee.is_active
                or not await may_hand_task_to(session, user, assignee, contact.id, campaign)
            ):
                raise SubmissionInvalid({"task.assignee_id": "no such user"})
        answers, new_numbers = validate_submission(submission, survey, now=now, region=self.region)
        if call is None and user.role not in STAFF_ROLES:
            _refuse_details_without_a_call(submission)

        disposition = Disposition(
            submission_id=submission.submission_id,
            call_attempt_id=call.id if call is not None else None,
            contact_id=contact.id,
            campaign_id=campaign.id if campaign is not None else None,
            volunteer_id=user.id,
            outcome=submission.outcome,
            consent=submission.consent,
            survey_answers=answers,
            comments=submission.comments,
            mobilized=submission.mobilized,
            support_score=submission.support_score,
            callback_at=submission.callback_at,
            created_at=now,
        )
        await outcomes.add_disposition(session, disposition)
        changes = await self._enrich_contact(session, contact, call, submission, new_numbers, now)
        if submission.task is not None:
            await outcomes.add_task(
                session,
                FollowUpTask(
                    contact_id=contact.id,
                    assignee_id=submission.task.assignee_id,
                    created_by_id=user.id,
                    campaign_id=campaign.id if campaign is not None else None,
                    disposition_id=disposition.id,
                    description=submission.task.description,
                    due_on=submission.task.due_on,
                    status=TaskStatus.OPEN,
                    created_at=now,
                ),
            )
            await notifications.tasks_handed_over(session, disposition.id, at=now)
        if campaign is not None:
            await self._update_list_after_outcome(session, campaign, contact, user, submission)
        await audit.record(
            session,
            action="outcome.record",
            entity_type="contact",
            entity_id=contact.id,
            changes={
                "submission_id": submission.submission_id,
                "call_id": submission.call_id,
                "outcome": submission.outcome.value,
                **changes,
            },
            actor_id=user.id,
        )
        return disposition, call

    async def _enrich_contact(
        self,
        session: AsyncSession,
        contact: Contact,
        call: CallAttempt | None,
        submission: OutcomeSubmission,
        new_numbers: list[tuple[str, Any]],
        now: datetime,
    ) -> dict[str, Any]:
        """Store what the volunteer learned about the contact; returns it, for the audit log."""
        changes: dict[str, Any] = {}
        updates: dict[str, Any] = {}
        if submission.email and submission.email.strip().lower() != contact.email:
            updates["email"] = changes["email"] = submission.email.strip().lower()
        if submission.language and submission.language.strip().lower() != contact.language:
            updates["language"] = changes["language"] = submission.language.strip().lower()
        if (
            submission.support_score is not None
            and submission.support_score != contact.support_score
        ):
            updates["support_score"] = changes["support_score"] = submission.support_score
        if submission.do_not_call and not contact.do_not_call:
            updates["do_not_call"] = changes["do_not_call"] = True
            updates["dnc_at"] = now
            updates["dnc_reason"] = submission.do_not_call_reason or "asked not to be called again"
        if updates:
            await contacts.update_contact(session, contact, **updates)
        wanted: dict[str, PhoneType] = {}
        known = {phone.e164 for phone in contact.phones}
        for e164, kind in new_numbers:
            if e164 not in known:
                wanted.setdefault(e164, kind)
        added = await contacts.add_phones_unless_on_file(
            session, contact, list(wanted.items()), now
        )
        if added:
            changes["new_numbers"] = added
        held = [e164 for e164 in wanted if e164 not in added]
        if held:
            # Already another contact's: a number identifies one person (the
            # import merges on it), so it is not attached here.  The answer
            # stays the same as when it is attached, so the volunteer learns
            # nothing about other contacts or teams; the number is kept in the
            # audit entry for an administrator to reconcile.
            changes["new_numbers_on_another_contact"] = held
        if submission.outcome is DispositionOutcome.WRONG_NUMBER and call is not None:
            for phone in contact.phones:
                if phone.e164 == call.number_e164:
                    await contacts.update_phone(session, phone, wrong_number=True)
                    changes["wrong_number"] = phone.e164
        return changes

    async def _update_list_after_outcome(
        self,
        session: AsyncSession,
        campaign: Campaign,
        contact: Contact,
        user: User,
        submission: OutcomeSubmission,
    ) -> None:
        entry = await session.scalar(
            select(CallingListEntry).where(
                CallingListEntry.campaign_id == campaign.id,
                CallingListEntry.contact_id == contact.id,
            )
        )
        if entry is None:
            return
        volunteer_id = entry.volunteer_id
        if submission.callback_at is not None:
            # Back at the top of the same volunteer's list when due.
            volunteer_id, done = user.id, False
        elif submission.outcome is DispositionOutcome.ABSENT:
            done = entry.attempts >= campaign.max_attempts
        else:
            done = True
        if contact.do_not_call or all(p.wrong_number or p.do_not_call for p in contact.phones):
            done = True
        await lists.settle(
            session,
            entry,
            callback_at=submission.callback_at,
            volunteer_id=volunteer_id,
            done=done,
        )
