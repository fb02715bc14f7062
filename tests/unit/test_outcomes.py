"""Outcome submissions: survey answers checked against the campaign's survey."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dialer.domain.outcomes import SubmissionInvalid, parse_submission, validate_submission
from dialer.domain.survey import SurveyDefinition
from dialer.domain.vocabulary import PhoneType

NOW = datetime(2026, 11, 24, 17, 0, tzinfo=UTC)
SURVEY = SurveyDefinition.model_validate(
    {
        "questions": [
            {
                "id": "vote",
                "label": "Will you vote?",
                "type": "single_choice",
                "required": True,
                "choices": [
                    {"value": "yes", "label": "Yes"},
                    {"value": "no", "label": "No"},
                    {"value": "unsure", "label": "Unsure"},
                ],
            },
            {
                "id": "issues",
                "label": "Issues",
                "type": "multiple_choice",
                "choices": [
                    {"value": "housing", "label": "Housing"},
                    {"value": "transit", "label": "Transit"},
                ],
            },
            {"id": "volunteer", "label": "Volunteer?", "type": "yes_no"},
            {"id": "certainty", "label": "How sure?", "type": "scale", "min": 1, "max": 5},
            {"id": "household", "label": "Voters at home", "type": "number"},
            {"id": "remarks", "label": "Anything else?", "type": "text"},
        ]
    }
)


def submission(**fields: Any) -> dict[str, Any]:
    return {
        "submission_id": "sub-12345678",
        "contact_id": 1,
        "outcome": "answered",
        "consent": True,
        **fields,
    }


def errors_of(payload: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SubmissionInvalid) as caught:
        validate_submission(parse_submission(payload), SURVEY, now=NOW, region="CA")
    return caught.value.errors


def test_a_complete_answer_passes() -> None:
    answers, numbers = validate_submission(
        parse_submission(
            submission(
                survey_answers={
                    "vote": "yes",
                    "issues": ["housing"],
                    "volunteer": False,
                    "certainty": 4,
                    "household": 2,
                    "remarks": "",
                },
                new_numbers=[{"number": "438 555 0199", "type": "mobile"}],
                email="ada@example.org",
                language="fr-CA",
            )
        ),
        SURVEY,
        now=NOW,
        region="CA",
    )
    assert answers == {
        "vote": "yes",
        "issues": ["housing"],
        "volunteer": False,
        "certainty": 4,
        "household": 2,
    }
    assert numbers == [("+14385550199", PhoneType.MOBILE)]


def test_every_problem_is_reported_with_its_field() -> None:
    assert errors_of(
        submission(
            survey_answers={
                "issues": ["housing", "crime"],
                "volunteer": "maybe",
                "certainty": 9,
                "household": "two",
                "ghost": 1,
            },
            email="nope",
            language="English",
            new_numbers=[{"number": "12"}],
        )
    ) == {
        "survey.ghost": "no such question in this campaign's survey",
        "survey.vote": "this question is required",
        "survey.issues": "unknown choice(s): crime",
        "survey.volunteer": "expected yes or no",
        "survey.certainty": "expected a number from 1 to 5",
        "survey.household": "expected a number",
        "email": "not a valid email address",
        "language": "use a language code such as fr or en",
        "new_numbers.0.number": "wrong number of digits",
    }


def test_no_survey_without_consent_or_an_answered_call() -> None:
    assert errors_of(submission(consent=False, survey_answers={"vote": "yes"})) == {
        "consent": "the survey needs the contact's consent"
    }
    assert errors_of(submission(outcome="absent", survey_answers={"vote": "yes"})) == {
        "survey_answers": "a survey is only taken when the contact answered"
    }
    # Without consent the required questions are not asked at all.
    validate_submission(parse_submission(submission(consent=False)), SURVEY, now=NOW, region="CA")


def test_call_back_later_needs_a_future_time() -> None:
    assert errors_of(submission(outcome="call_back_later", consent=None)) == {
        "callback_at": "say when to call back"
    }
    past = (NOW - timedelta(minutes=1)).isoformat()
    assert errors_of(submission(outcome="call_back_later", consent=None, callback_at=past)) == {
        "callback_at": "a call-back must be in the future"
    }
    naive = "2026-11-25T10:00:00"
    assert errors_of(submission(outcome="call_back_later", consent=None, callback_at=naive)) == {
        "callback_at": "give a time zone (or UTC offset) with the time"
    }


def test_shape_errors_use_the_same_paths() -> None:
    with pytest.raises(SubmissionInvalid) as caught:
        parse_submission(
            {
                "submission_id": "x",
                "contact_id": "a",
                "outcome": "maybe",
                "support_score": 7,
                "comments": "x" * 10_001,
                "extra": 1,
            }
        )
    assert set(caught.value.errors) == {
        "submission_id",
        "contact_id",
        "outcome",
        "support_score",
        "comments",
        "extra",
    }
