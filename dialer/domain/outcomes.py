"""What a volunteer submits after a call, and the rules it must follow.

Pure validation: field-level errors keyed by a dotted path
(``survey.vote``, ``email``, ``task.assignee_id``) so a form can show each
message next to its field.  Persistence lives in the service.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dialer.domain.numbers import InvalidPhoneNumber, to_e164
from dialer.domain.survey import (
    Question,
    QuestionType,
    SurveyDefinition,
    skipped_answer_message,
)
from dialer.domain.vocabulary import DispositionOutcome, PhoneType

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_LANGUAGE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{2,8})?\Z")
MAX_TEXT_ANSWER = 2000


class NewNumber(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: Annotated[str, Field(max_length=40)]
    type: PhoneType = PhoneType.OTHER


class TaskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    assignee_id: int
    description: Annotated[str, Field(min_length=1, max_length=2000)]
    due_on: date | None = None


class OutcomeSubmission(BaseModel):
    """One submission of the outcome flow; ``submission_id`` makes it idempotent."""

    model_config = ConfigDict(extra="forbid")

    submission_id: Annotated[str, Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    call_id: Annotated[str, Field(max_length=64)] | None = None
    contact_id: int
    campaign_id: int | None = None
    outcome: DispositionOutcome
    consent: bool | None = None
    survey_answers: dict[str, Any] = Field(default_factory=dict)
    email: Annotated[str, Field(max_length=320)] | None = None
    language: Annotated[str, Field(max_length=16)] | None = None
    new_numbers: list[NewNumber] = Field(default_factory=list, max_length=5)
    comments: Annotated[str, Field(max_length=10_000)] = ""
    mobilized: bool | None = None
    support_score: Annotated[int, Field(ge=1, le=5)] | None = None
    task: TaskRequest | None = None
    callback_at: datetime | None = None
    do_not_call: bool = False
    do_not_call_reason: Annotated[str, Field(max_length=500)] | None = None


class SubmissionInvalid(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{path}: {message}" for path, message in errors.items()))
        self.errors = errors


def parse_submission(payload: dict[str, Any]) -> OutcomeSubmission:
    """Turn pydantic's errors into the same path -> message shape as ours."""
    try:
        return OutcomeSubmission.model_validate(payload)
    except ValidationError as error:
        errors: dict[str, str] = {}
        for item in error.errors():
            path = ".".join(str(part) for part in item["loc"]) or "submission"
            errors.setdefault(path, item["msg"])
        raise SubmissionInvalid(errors) from None


def _check_answer(question: Question, value: Any) -> str | None:
    kind = question.type
    if kind is QuestionType.SINGLE_CHOICE:
        allowed = {choice.value for choice in question.choices}
        if not isinstance(value, str) or value not in allowed:
            return f"choose one of: {', '.join(sorted(allowed))}"
    elif kind is QuestionType.MULTIPLE_CHOICE:
        allowed = {choice.value for choice in question.choices}
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return "expected a list of choices"
        unknown = [v for v in value if v not in allowed]
        if unknown:
            return f"unknown choice(s): {', '.join(unknown)}"
        if len(set(value)) != len(value):
            return "a choice is listed twice"
    elif kind is QuestionType.YES_NO:
        if not isinstance(value, bool):
            return "expected yes or no"
    elif kind is QuestionType.SCALE:
        if isinstance(value, bool) or not isinstance(value, int):
            return "expected a whole number"
        assert question.min is not None and question.max is not None
        if not question.min <= value <= question.max:
            return f"expected a number from {question.min} to {question.max}"
    elif kind is QuestionType.NUMBER:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            return "expected a number"
    elif kind is QuestionType.TEXT:
        if not isinstance(value, str):
            return "expected text"
        if len(value) > MAX_TEXT_ANSWER:
            return f"at most {MAX_TEXT_ANSWER} characters"
    return None


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == []


def validate_survey(survey: SurveyDefinition, answers: dict[str, Any]) -> dict[str, str]:
    """Check the answers; questions the skip logic jumped over were not asked.

    A skipped question is never required, and an answer to one is refused
    rather than dropped: it contradicts the answer that skipped it, and
    storing it silently would count it in the results.  The call screen
    clears the answers of the questions it hides, so volunteers never see this.
    """
    errors: dict[str, str] = {}
    known = {question.id for question in survey.questions}
    for key in answers:
        if key not in known:
            errors[f"survey.{key}"] = "no such question in this campaign's survey"
    skipped = survey.skipped(answers)
    for question in survey.questions:
        value = answers.get(question.id)
        if question.id in skipped:
            if not _blank(value):
                errors[f"survey.{question.id}"] = skipped_answer_message()
            continue
        if _blank(value):
            if question.required:
                errors[f"survey.{question.id}"] = "this question is required"
            continue
        problem = _check_answer(question, value)
        if problem:
            errors[f"survey.{question.id}"] = problem
    return errors


def validate_submission(
    submission: OutcomeSubmission,
    survey: SurveyDefinition,
    *,
    now: datetime,
    region: str,
) -> tuple[dict[str, Any], list[tuple[str, PhoneType]]]:
    """Check the cross-field rules; returns cleaned answers and new numbers.

    Raises :class:`SubmissionInvalid` with every problem at once, so the
    volunteer fixes the form in one go.
    """
    errors: dict[str, str] = {}
    answers = {key: value for key, value in submission.survey_answers.items() if not _blank(value)}
    if answers:
        if submission.outcome is not DispositionOutcome.ANSWERED:
            errors["survey_answers"] = "a survey is only taken when the contact answered"
        elif submission.consent is not True:
            errors["consent"] = "the survey needs the contact's consent"
    if submission.outcome is DispositionOutcome.ANSWERED and submission.consent is True:
        errors.update(validate_survey(survey, answers))
    if submission.outcome is DispositionOutcome.CALL_BACK_LATER and submission.callback_at is None:
        errors["callback_at"] = "say when to call back"
    if submission.callback_at is not None:
        if submission.callback_at.tzinfo is None:
            errors["callback_at"] = "give a time zone (or UTC offset) with the time"
        elif submission.callback_at <= now:
            errors["callback_at"] = "a call-back must be in the future"
    if submission.email is not None and submission.email.strip():
        if not _EMAIL.match(submission.email.strip()):
            errors["email"] = "not a valid email address"
    if submission.language is not None and submission.language.strip():
        if not _LANGUAGE.match(submission.language.strip().lower().replace("_", "-")):
            errors["language"] = "use a language code such as fr or en"
    numbers: list[tuple[str, PhoneType]] = []
    for index, item in enumerate(submission.new_numbers):
        try:
            numbers.append((to_e164(item.number, region), item.type))
        except InvalidPhoneNumber as error:
            errors[f"new_numbers.{index}.number"] = error.reason
    if errors:
        raise SubmissionInvalid(errors)
    return answers, numbers
