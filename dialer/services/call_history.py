"""Calls as the pages read them back: one call by its id, a user's call in
progress, the answered call whose outcome they still owe, and the survey
answers of the outcomes a contact's history shows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from dialer.domain.survey import QuestionType, SurveyDefinition
from dialer.domain.vocabulary import LIVE_CALL_STATES
from dialer.services.access import can_oversee_call
from dialer.store import calls
from dialer.store.models import CallAttempt, Campaign, Contact, Disposition, User


@dataclass(frozen=True, slots=True)
class CallView:
    call: CallAttempt
    contact_name: str


async def call_view(session: AsyncSession, call_id: str) -> CallView | None:
    row = (
        await session.execute(
            select(CallAttempt, Contact.first_name, Contact.last_name)
            .join(Contact, Contact.id == CallAttempt.contact_id)
            .where(CallAttempt.call_id == call_id)
        )
    ).first()
    if row is None:
        return None
    call, first, last = row
    return CallView(call, f"{first} {last}".strip())


async def live_call_between(
    session: AsyncSession, *, volunteer_id: int, contact_id: int
) -> CallAttempt | None:
    """The volunteer's call to the contact that has not ended yet, if any."""
    return await session.scalar(
        select(CallAttempt).where(
            CallAttempt.volunteer_id == volunteer_id,
            CallAttempt.contact_id == contact_id,
            CallAttempt.state.in_([state.value for state in LIVE_CALL_STATES]),
        )
    )


@dataclass(frozen=True, slots=True)
class PendingOutcome:
    """An answered call of the user's with neither an outcome nor a skip."""

    call: CallAttempt
    contact: Contact


@dataclass(frozen=True, slots=True)
class SurveyLine:
    """One survey answer as the history shows it: the question's label and the
    answer, with choices by their labels; ``yes_no`` for a yes/no question of
    a survey that names no language (the page says "yes" or "no" in the
    reader's language)."""

    question: str
    answer: str
    yes_no: bool | None = None


def survey_lines(survey: SurveyDefinition, answers: dict[str, Any]) -> list[SurveyLine]:
    """The answers in the survey's order; answers to questions it no longer has
    come last, under their ids, rather than vanish."""
    lines: list[SurveyLine] = []
    known: set[str] = set()
    for question in survey.questions:
        known.add(question.id)
        if question.id not in answers:
            continue
        value = answers[question.id]
        labels = {choice.value: choice.label for choice in question.choices}
        if question.type is QuestionType.YES_NO and isinstance(value, bool):
            if survey.language is None:
                lines.append(SurveyLine(question.label, "", value))
            else:
                # Next to questions written in one language, yes and no in that
                # language too, as the call screen shows them.
                yes, no = survey.yes_no_labels()
                lines.append(SurveyLine(question.label, yes if value else no))
        elif isinstance(value, list):
            chosen = ", ".join(labels.get(str(item), str(item)) for item in value)
            lines.append(SurveyLine(question.label, chosen))
        else:
            lines.append(SurveyLine(question.label, labels.get(str(value), str(value))))
    for key, value in answers.items():
        if key not in known:
            shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            lines.append(SurveyLine(key, shown))
    return lines


class CallHistory:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def call(self, viewer: User, call_id: str) -> CallView | None:
        """The call with this id and its contact's name, when ``viewer`` may oversee it
        (:func:`dialer.services.access.can_oversee_call`)."""
        async with self._sessions() as session:
            found = await call_view(session, call_id)
            if found is None or not await can_oversee_call(session, viewer, found.call):
                return None
            return found

    async def pending_outcome(self, user: User) -> PendingOutcome | None:
        """The answered call whose outcome ``user`` has neither recorded nor skipped."""
        async with self._sessions() as session:
            call = await calls.pending_outcome(session, user.id)
            if call is None:
                return None
            contact = await session.get(
                Contact, call.contact_id, options=[selectinload(Contact.phones)]
            )
            if contact is None:
                return None
            return PendingOutcome(call, contact)

    async def survey_answers(
        self, dispositions: Iterable[Disposition]
    ) -> dict[int, list[SurveyLine]]:
        """Each disposition's survey answers, labelled by its campaign's survey.

        The dispositions are the ones a history already shows its viewer.
        """
        wanted = [d for d in dispositions if d.survey_answers]
        campaign_ids = {d.campaign_id for d in wanted if d.campaign_id is not None}
        surveys: dict[int, SurveyDefinition] = {}
        if campaign_ids:
            async with self._sessions() as session:
                rows = await session.execute(
                    select(Campaign.id, Campaign.survey).where(Campaign.id.in_(campaign_ids))
                )
                surveys = {campaign_id: survey for campaign_id, survey in rows}
        empty = SurveyDefinition()
        return {
            d.id: survey_lines(surveys.get(d.campaign_id or 0, empty), d.survey_answers)
            for d in wanted
        }
