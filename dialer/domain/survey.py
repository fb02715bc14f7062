"""Campaign configuration stored as validated JSON: survey and calling hours.

Organizers write surveys in the campaign editor; volunteers' answers are
checked against the same definition, so the shape lives in one place.
"""

from __future__ import annotations

import re
from datetime import time
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_QUESTION_ID = re.compile(r"[a-z][a-z0-9_]{0,62}\Z")


class QuestionType(StrEnum):
    SINGLE_CHOICE = "single_choice"
    MULTIPLE_CHOICE = "multiple_choice"
    YES_NO = "yes_no"
    SCALE = "scale"  # integer between min and max, e.g. 1-5
    NUMBER = "number"
    TEXT = "text"


class Choice(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    value: Annotated[str, Field(min_length=1, max_length=100)]
    label: Annotated[str, Field(min_length=1, max_length=300)]


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

    @field_validator("id")
    @classmethod
    def _id_is_a_slug(cls, value: str) -> str:
        if not _QUESTION_ID.match(value):
            raise ValueError(
                "question id must start with a lowercase letter and use a-z, 0-9 and _"
            )
        return value

    @model_validator(mode="after")
    def _choices_match_type(self) -> Question:
        has_choices = self.type in (QuestionType.SINGLE_CHOICE, QuestionType.MULTIPLE_CHOICE)
        if has_choices and len(self.choices) < 2:
            raise ValueError(f"question {self.id!r}: a choice question needs at least 2 choices")
        if not has_choices and self.choices:
            raise ValueError(f"question {self.id!r}: only choice questions have choices")
        values = [choice.value for choice in self.choices]
        if len(set(values)) != len(values):
            raise ValueError(f"question {self.id!r}: choice values must be unique")
        if self.type is QuestionType.SCALE and (
            self.min is None or self.max is None or self.min >= self.max
        ):
            raise ValueError(f"question {self.id!r}: a scale needs min < max")
        return self


class SurveyDefinition(BaseModel):
    """An ordered list of questions; order is the order volunteers see."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    questions: tuple[Question, ...] = ()

    @model_validator(mode="after")
    def _unique_ids(self) -> SurveyDefinition:
        ids = [question.id for question in self.questions]
        duplicates = sorted({qid for qid in ids if ids.count(qid) > 1})
        if duplicates:
            raise ValueError(f"duplicate question ids: {', '.join(duplicates)}")
        return self

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class TimeWindow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    start: time
    end: time

    @model_validator(mode="after")
    def _ordered(self) -> TimeWindow:
        if self.start >= self.end:
            raise ValueError("a calling window must start before it ends")
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
