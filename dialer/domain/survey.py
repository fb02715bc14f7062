"""Campaign configuration stored as validated JSON: survey and calling hours.

Organizers write surveys in the campaign editor; volunteers' answers are
checked against the same definition, so the shape lives in one place.

Skip logic: a single-choice or yes/no question may say "when answered X,
skip to question N" (``skip``: ``[{"when": "no", "to": "certainty"}]``;
``"to": null`` skips to the end of the survey).  Targets only point
forward, so a survey can never loop; the questions jumped over are not
asked (:meth:`SurveyDefinition.skipped`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import time
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dialer.domain import i18n
from dialer.domain.i18n import _

_QUESTION_ID = re.compile(r"[a-z][a-z0-9_]{0,62}\Z")
MAX_SKIP_RULES = 100
# The two answers of a yes/no question as a skip rule names them.
YES, NO = "yes", "no"


class SurveyProblems(ValueError):
    """Broken rules keyed by a dotted path relative to the model that raised them.

    Raised from the validators below so the editor can put each message next
    to its field (pydantic keeps the exception in the error's context).  The
    messages are translated when raised: validation runs in the request.
    """

    def __init__(self, problems: dict[str, str]) -> None:
        super().__init__(
            "; ".join(f"{path}: {text}" if path else text for path, text in problems.items())
        )
        self.problems = problems


class SurveyInvalid(Exception):
    """A survey that cannot be saved: ``errors`` maps paths (``questions.0.label``) to messages."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{path}: {text}" for path, text in errors.items()))
        self.errors = errors


class QuestionType(StrEnum):
    SINGLE_CHOICE = "single_choice"
    MULTIPLE_CHOICE = "multiple_choice"
    YES_NO = "yes_no"
    SCALE = "scale"  # integer between min and max, e.g. 1-5
    NUMBER = "number"
    TEXT = "text"


# Only questions with one answer out of a few can steer the survey.
SKIPPABLE_TYPES = (QuestionType.SINGLE_CHOICE, QuestionType.YES_NO)


class Choice(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    value: Annotated[str, Field(min_length=1, max_length=100)]
    label: Annotated[str, Field(min_length=1, max_length=300)]


class SkipRule(BaseModel):
    """When the question is answered ``when``, go straight to question ``to``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    # A choice's value, or "yes" / "no" for a yes/no question.
    when: Annotated[str, Field(min_length=1, max_length=100)]
    # A later question's id; None: the end of the survey.
    to: Annotated[str, Field(max_length=63)] | None = None


class Question(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    label: Annotated[str, Field(min_length=1, max_length=1000)]
    type: QuestionType
    required: bool = False
    choices: tuple[Choice, ...] = ()
    min: int | None = None
    max: int | None = None
    help: Annotated[str, Field(max_length=2000)] = ""
    skip: Annotated[tuple[SkipRule, ...], Field(max_length=MAX_SKIP_RULES)] = ()

    @field_validator("id")
    @classmethod
    def _id_is_a_slug(cls, value: str) -> str:
        if not _QUESTION_ID.match(value):
            raise SurveyProblems(
                {"": _("Start with a lowercase letter; use only a-z, 0-9 and _ (at most 63).")}
            )
        return value

    @model_validator(mode="after")
    def _choices_match_type(self) -> Question:
        problems: dict[str, str] = {}
        has_choices = self.type in (QuestionType.SINGLE_CHOICE, QuestionType.MULTIPLE_CHOICE)
        if has_choices and len(self.choices) < 2:
            problems["choices"] = _("A choice question needs at least 2 choices.")
        if not has_choices and self.choices:
            problems["choices"] = _("Only choice questions have choices.")
        seen: set[str] = set()
        for index, choice in enumerate(self.choices):
            if choice.value in seen:
                problems[f"choices.{index}.value"] = _("Each choice needs its own value.")
            seen.add(choice.value)
        if self.type is QuestionType.SCALE:
            if self.min is None:
                problems["min"] = _("Required.")
            if self.max is None:
                problems["max"] = _("Required.")
            if self.min is not None and self.max is not None and self.min >= self.max:
                problems["max"] = _("The highest value must be above the lowest.")
        if self.skip and self.type not in SKIPPABLE_TYPES:
            problems["skip"] = _("Only single-choice and yes/no questions can skip questions.")
        else:
            answers = self.skip_answers()
            used: set[str] = set()
            for index, rule in enumerate(self.skip):
                if rule.when not in answers:
                    problems[f"skip.{index}.when"] = _("Choose one of this question's answers.")
                elif rule.when in used:
                    problems[f"skip.{index}.when"] = _("This answer already has a rule.")
                used.add(rule.when)
        if problems:
            raise SurveyProblems(problems)
        return self

    def skip_answers(self) -> tuple[str, ...]:
        """The answers a skip rule may name, in the order volunteers see them."""
        if self.type is QuestionType.YES_NO:
            return (YES, NO)
        if self.type is QuestionType.SINGLE_CHOICE:
            return tuple(choice.value for choice in self.choices)
        return ()

    def skip_data(self) -> list[dict[str, str | None]]:
        """The skip rules as plain data, for the call screen's script."""
        return [{"when": rule.when, "to": rule.to} for rule in self.skip]

    def rule_for(self, answer: Any) -> SkipRule | None:
        """The skip rule an answer triggers, if any (an invalid answer triggers none)."""
        if not self.skip:
            return None
        if self.type is QuestionType.YES_NO:
            if not isinstance(answer, bool):
                return None
            key = YES if answer else NO
        elif isinstance(answer, str):
            key = answer
        else:
            return None
        return next((rule for rule in self.skip if rule.when == key), None)


class SurveyDefinition(BaseModel):
    """An ordered list of questions; order is the order volunteers see.

    ``language`` is the language the organizer wrote the questions in: the
    yes/no answers are shown in it, next to the questions, whatever the
    volunteer's screen language.  ``None`` (older surveys): the screen's.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    language: str | None = None
    # No count limit of its own (the editor caps the JSON's size): a stored
    # survey must always load.
    questions: tuple[Question, ...] = ()

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        if value is not None and value not in i18n.LANGUAGES:
            raise SurveyProblems({"": _("Choose one of the languages offered.")})
        return value

    @model_validator(mode="after")
    def _ids_and_targets(self) -> SurveyDefinition:
        problems = _order_problems(
            [(question.id, [rule.to for rule in question.skip]) for question in self.questions]
        )
        if problems:
            raise SurveyProblems(problems)
        return self

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def skipped(self, answers: Mapping[str, Any]) -> frozenset[str]:
        """The ids of the questions these answers skip (so they are not asked).

        Walks the questions in order, jumping as the rules say; a skipped
        question's own rules never apply, since it was not asked.
        """
        position = {question.id: index for index, question in enumerate(self.questions)}
        skipped: set[str] = set()
        index = 0
        while index < len(self.questions):
            question = self.questions[index]
            rule = question.rule_for(answers.get(question.id))
            following = index + 1
            if rule is not None:
                following = position[rule.to] if rule.to is not None else len(self.questions)
                skipped.update(other.id for other in self.questions[index + 1 : following])
            index = max(following, index + 1)
        return frozenset(skipped)

    def yes_no_labels(self) -> tuple[str, str]:
        """ "Yes" and "No" in the survey's language (the screen's if it has none)."""
        if self.language is None:
            return _("Yes"), _("No")
        catalog = i18n.translations_for(self.language)
        return catalog.gettext("Yes"), catalog.gettext("No")


def skipped_answer_message() -> str:
    """Why an answer to a question the skip logic jumped over is refused."""
    return _("This question was skipped by an earlier answer; leave it blank.")


def _generic_message(item: Mapping[str, Any]) -> str:
    """Pydantic's own errors, in the viewer's language."""
    kind = item["type"]
    context = item.get("ctx") or {}
    if kind in ("missing", "string_too_short"):
        return _("Required.")
    if kind == "string_too_long":
        return _("At most %(count)s characters.", count=context.get("max_length", ""))
    if kind == "too_long":
        return _("At most %(count)s items.", count=context.get("max_length", ""))
    if kind == "enum":
        return _("Choose one of the values offered.")
    if kind == "extra_forbidden":
        return _("Unknown field.")
    if kind.startswith("int_"):
        return _("Expected a whole number.")
    if kind.startswith("bool_"):
        return _("Expected true or false.")
    if kind.startswith(("string_", "str_")):
        return _("Expected text.")
    if kind.startswith(("tuple_", "list_")):
        return _("Expected a list.")
    if kind.startswith(("model_", "dict_")):
        return _("Expected an object with named fields.")
    return str(item["msg"])


def survey_errors(error: ValidationError) -> dict[str, str]:
    """``questions.0.skip.1.to`` -> message, for every problem pydantic found."""
    errors: dict[str, str] = {}
    for item in error.errors():
        base = [str(part) for part in item["loc"]]
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, SurveyProblems):
            for path, message in cause.problems.items():
                errors.setdefault(".".join([*base, path] if path else base), message)
        else:
            errors.setdefault(".".join(base), _generic_message(item))
    return errors


def _order_problems(questions: Sequence[tuple[object, Sequence[object]]]) -> dict[str, str]:
    """Duplicate ids and skip targets, from each question's (id, [rule targets])."""
    problems: dict[str, str] = {}
    position: dict[object, int] = {}
    for index, (qid, _targets) in enumerate(questions):
        if qid in position:
            problems[f"questions.{index}.id"] = _(
                "Question %(number)s already uses this id.", number=position[qid] + 1
            )
        else:
            position[qid] = index
    for index, (_qid, targets) in enumerate(questions):
        for number, to in enumerate(targets):
            if to is None or not isinstance(to, str):
                continue  # the end of the survey, or a type error pydantic reports
            target = position.get(to)
            path = f"questions.{index}.skip.{number}.to"
            if not to:
                problems[path] = _("Choose where to skip to.")
            elif target is None:
                problems[path] = _("There is no question %(id)s.", id=to)
            elif target <= index:
                # Forward only: a survey never loops back on itself.
                problems[path] = _("Skip to a question that comes after this one.")
    return problems


def _raw_order_problems(raw: Any) -> dict[str, str]:
    """The same checks on undecoded data, so a survey whose questions have
    other problems gets its ids and targets checked in the same round."""
    questions = raw.get("questions") if isinstance(raw, dict) else None
    if not isinstance(questions, list):
        return {}
    shaped: list[tuple[object, Sequence[object]]] = []
    for question in questions:
        item = question if isinstance(question, dict) else {}
        rules = item.get("skip")
        targets = [
            rule.get("to") if isinstance(rule, dict) else None
            for rule in (rules if isinstance(rules, list) else [])
        ]
        qid = item.get("id")
        shaped.append((qid if isinstance(qid, str) else object(), targets))
    return _order_problems(shaped)


def parse_survey(raw: Any) -> SurveyDefinition:
    """Validate a decoded survey; :class:`SurveyInvalid` lists every problem by path."""
    try:
        return SurveyDefinition.model_validate(raw)
    except ValidationError as error:
        errors = survey_errors(error)
        for path, message in _raw_order_problems(raw).items():
            errors.setdefault(path, message)
        raise SurveyInvalid(errors) from None


class TimeWindow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    start: time
    end: time

    @model_validator(mode="after")
    def _ordered(self) -> TimeWindow:
        if self.start >= self.end:
            raise ValueError(_("A calling window must start before it ends."))
        return self

    def contains(self, moment: time) -> bool:
        return self.start <= moment < self.end


class CallingHours(BaseModel):
    """When contacts may be called, in the contact's own local time.

    ``weekend`` of ``None`` means no calls on Saturday and Sunday.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    weekday: TimeWindow = TimeWindow(start=time(9), end=time(21))
    weekend: TimeWindow | None = TimeWindow(start=time(10), end=time(18))

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
