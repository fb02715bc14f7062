"""Survey skip logic: the rules' validation (forward only, known answers and
targets, every problem keyed by its path), the questions an answer skips, and
outcome validation treating skipped questions as not asked."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from dialer.domain import i18n
from dialer.domain.outcomes import (
    SubmissionInvalid,
    parse_submission,
    validate_submission,
)
from dialer.domain.survey import SurveyDefinition, SurveyInvalid, parse_survey
from dialer.services.call_history import survey_lines

NOW = datetime(2026, 11, 24, 17, 0, tzinfo=UTC)


def choice_question(qid: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": qid,
        "label": qid.title(),
        "type": "single_choice",
        "choices": [
            {"value": "yes", "label": "Yes"},
            {"value": "no", "label": "No"},
            {"value": "unsure", "label": "Unsure"},
        ],
        **extra,
    }


def survey(*questions: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"questions": list(questions), **extra}


# vote (no -> issues; unsure -> end), certainty (required), issues,
# volunteer (yes/no: no -> end), remarks (required).
SKIPPING = parse_survey(
    survey(
        choice_question(
            "vote",
            required=True,
            skip=[{"when": "no", "to": "issues"}, {"when": "unsure", "to": None}],
        ),
        {
            "id": "certainty",
            "label": "How sure?",
            "type": "scale",
            "min": 1,
            "max": 5,
            "required": True,
        },
        {"id": "issues", "label": "Issues", "type": "text"},
        {"id": "volunteer", "label": "Volunteer?", "type": "yes_no", "skip": [{"when": "no"}]},
        {"id": "remarks", "label": "Remarks", "type": "text", "required": True},
    )
)


@pytest.fixture(autouse=True)
def english() -> Iterator[None]:
    token = i18n.activate_scoped("en")
    yield
    i18n.deactivate(token)


def problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SurveyInvalid) as caught:
        parse_survey(data)
    return caught.value.errors


def test_an_answer_skips_the_questions_up_to_its_target() -> None:
    assert SKIPPING.skipped({"vote": "yes"}) == frozenset()
    assert SKIPPING.skipped({"vote": "no"}) == {"certainty"}
    # To the end of the survey: everything after.
    assert SKIPPING.skipped({"vote": "unsure"}) == {"certainty", "issues", "volunteer", "remarks"}
    # Yes/no answers are booleans; "no" skips to the end.
    assert SKIPPING.skipped({"vote": "no", "volunteer": False}) == {"certainty", "remarks"}
    assert SKIPPING.skipped({"vote": "no", "volunteer": True}) == {"certainty"}
    # No answer, or an answer no rule names, skips nothing.
    assert SKIPPING.skipped({}) == frozenset()
    assert SKIPPING.skipped({"vote": 3, "volunteer": "no"}) == frozenset()


def test_a_skipped_question_s_own_rules_do_not_apply() -> None:
    chained = parse_survey(
        survey(
            choice_question("first", skip=[{"when": "no", "to": "third"}]),
            choice_question("second", skip=[{"when": "no", "to": None}]),
            {"id": "third", "label": "Third", "type": "text"},
        )
    )
    # "second" was skipped, so its stale "no" does not end the survey.
    assert chained.skipped({"first": "no", "second": "no"}) == {"second"}


def test_a_valid_survey_keeps_its_rules_and_language_through_json() -> None:
    again = SurveyDefinition.model_validate(SKIPPING.to_json() | {"language": "fr"})
    assert again.questions[0].skip_data() == [
        {"when": "no", "to": "issues"},
        {"when": "unsure", "to": None},
    ]
    assert again.language == "fr"


def test_targets_point_forward_to_questions_that_exist() -> None:
    found = problems(
        survey(
            choice_question("a", skip=[{"when": "no", "to": "a"}]),
            choice_question("b", skip=[{"when": "no", "to": "a"}, {"when": "yes", "to": "zz"}]),
            choice_question("c", skip=[{"when": "no", "to": ""}]),
        )
    )
    assert found == {
        "questions.0.skip.0.to": "Skip to a question that comes after this one.",
        "questions.1.skip.0.to": "Skip to a question that comes after this one.",
        "questions.1.skip.1.to": "There is no question zz.",
        "questions.2.skip.0.to": "Choose where to skip to.",
    }


def test_rules_name_one_of_the_question_s_answers_once() -> None:
    found = problems(
        survey(
            choice_question("a", skip=[{"when": "maybe", "to": "c"}]),
            {
                "id": "b",
                "label": "B",
                "type": "yes_no",
                "skip": [{"when": "no", "to": "c"}, {"when": "no"}],
            },
            {"id": "c", "label": "C", "type": "text", "skip": [{"when": "x"}]},
        )
    )
    assert found == {
        "questions.0.skip.0.when": "Choose one of this question's answers.",
        "questions.1.skip.1.when": "This answer already has a rule.",
        "questions.2.skip": "Only single-choice and yes/no questions can skip questions.",
    }


def test_every_field_problem_is_keyed_by_its_path() -> None:
    found = problems(
        survey(
            {"id": "Bad Id", "label": "", "type": "text"},
            {"id": "ok", "label": "Ok", "type": "scale", "min": 5, "max": 1},
            {"id": "ok", "label": "Twice", "type": "text"},
            language="de",
        )
    )
    assert found["questions.0.id"].startswith("Start with a lowercase letter")
    assert found["questions.0.label"] == "Required."
    assert found["questions.1.max"] == "The highest value must be above the lowest."
    assert found["language"] == "Choose one of the languages offered."
    # Ids and targets are checked in the same round as the questions' own fields.
    assert found["questions.2.id"] == "Question 2 already uses this id."


def test_problems_speak_the_viewer_s_language() -> None:
    token = i18n.activate_scoped("fr")
    try:
        found = problems(survey(choice_question("a", skip=[{"when": "no", "to": "a"}])))
    finally:
        i18n.deactivate(token)
    assert found == {"questions.0.skip.0.to": "Sautez vers une question qui vient après celle-ci."}


def test_yes_and_no_are_in_the_survey_s_language() -> None:
    french = parse_survey(
        survey({"id": "v", "label": "Voterez-vous ?", "type": "yes_no"}, language="fr")
    )
    english = parse_survey(
        survey({"id": "v", "label": "Will you vote?", "type": "yes_no"}, language="en")
    )
    token = i18n.activate_scoped("en")
    try:
        assert french.yes_no_labels() == ("Oui", "Non")
    finally:
        i18n.deactivate(token)
    token = i18n.activate_scoped("fr")
    try:
        assert english.yes_no_labels() == ("Yes", "No")
        # An older survey without a language follows the screen.
        assert SKIPPING.yes_no_labels() == ("Oui", "Non")
    finally:
        i18n.deactivate(token)


def submit(answers: dict[str, Any]) -> dict[str, Any]:
    payload = {
        "submission_id": "sub-12345678",
        "contact_id": 1,
        "outcome": "answered",
        "consent": True,
        "survey_answers": answers,
    }
    return validate_submission(parse_submission(payload), SKIPPING, now=NOW, region="CA")[0]


def errors_of(answers: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SubmissionInvalid) as caught:
        submit(answers)
    return caught.value.errors


def test_a_required_question_that_was_skipped_is_not_required() -> None:
    # "certainty" is required, but "no" skipped it.
    assert submit({"vote": "no", "remarks": "Call later"}) == {
        "vote": "no",
        "remarks": "Call later",
    }
    # Ending the survey early leaves "remarks" (required) unasked.
    assert submit({"vote": "unsure"}) == {"vote": "unsure"}
    assert submit({"vote": "no", "volunteer": False}) == {"vote": "no", "volunteer": False}


def test_a_required_question_that_was_asked_is_still_required() -> None:
    assert errors_of({"vote": "yes", "remarks": "x"}) == {
        "survey.certainty": "this question is required"
    }
    assert errors_of({"vote": "no", "volunteer": True}) == {
        "survey.remarks": "this question is required"
    }


def test_an_answer_to_a_skipped_question_is_refused() -> None:
    assert errors_of({"vote": "no", "certainty": 4, "remarks": "x"}) == {
        "survey.certainty": "This question was skipped by an earlier answer; leave it blank."
    }
    assert set(errors_of({"vote": "unsure", "issues": "Housing", "remarks": "x"})) == {
        "survey.issues",
        "survey.remarks",
    }


def test_history_shows_yes_and_no_in_the_surveys_language() -> None:
    question = {"id": "vote", "label": "Irez-vous voter ?", "type": "yes_no"}
    written_in_french = SurveyDefinition.model_validate({"questions": [question], "language": "fr"})
    unsaid = SurveyDefinition.model_validate({"questions": [question]})
    token = i18n.activate_scoped("en")
    try:
        [line] = survey_lines(written_in_french, {"vote": True})
        assert (line.question, line.answer, line.yes_no) == ("Irez-vous voter ?", "Oui", None)
        # A survey that names no language leaves the words to the reader's page.
        [line] = survey_lines(unsaid, {"vote": False})
        assert (line.answer, line.yes_no) == ("", False)
    finally:
        i18n.deactivate(token)
