"""Pure pieces of the foundation: numbers, settings, survey definitions, CSV safety."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from dialer.domain.numbers import InvalidPhoneNumber, display, to_e164
from dialer.domain.survey import CallingHours, SurveyDefinition
from dialer.runtime.settings import Settings
from dialer.services.export import spreadsheet_safe
from dialer.services.importer import normalise_header


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("514 555 0184", "CA", "+15145550184"),
        ("(514) 555-0184", "CA", "+15145550184"),
        ("+33 1 42 68 53 00", "CA", "+33142685300"),
        ("01 42 68 53 00", "FR", "+33142685300"),
        ("1-514-555-0184", "CA", "+15145550184"),
    ],
)
def test_numbers_are_normalised_to_e164(raw: str, region: str, expected: str) -> None:
    assert to_e164(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("abc", "not a phone number"),
        ("555-12", "wrong number of digits"),
        ("+999 1234", "unknown country code"),
        ("1" * 60, "too long"),
    ],
)
def test_bad_numbers_say_why(raw: str, reason: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as caught:
        to_e164(raw, "CA")
    assert caught.value.reason == reason


def test_display_format() -> None:
    assert display("+15145550184") == "+1 514-555-0184"


def test_settings_defaults_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIALER_AMI_SECRET", "s3cret")
    monkeypatch.setenv("DIALER_DEFAULT_REGION", "fr")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.default_region == "FR"
    assert settings.volunteer_channel == "PJSIP/{extension}"
    assert settings.outbound_context == "dialer-outbound"
    assert settings.ami_secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_settings_refuse_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIALER_DEFAULT_REGION", "XX")
    with pytest.raises(ValidationError, match="unknown region"):
        Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("DIALER_DEFAULT_REGION", "CA")
    monkeypatch.setenv("DIALER_VOLUNTEER_CHANNEL", "PJSIP/1001")
    with pytest.raises(ValidationError, match=r"placeholder \{extension\}"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_settings_read_a_dotenv_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("DIALER_AMI_HOST=pbx.internal\nDIALER_WEB_PORT=9000\n")
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert (settings.ami_host, settings.web_port) == ("pbx.internal", 9000)


def test_survey_definition_rules() -> None:
    survey = SurveyDefinition.model_validate(
        {
            "questions": [
                {
                    "id": "vote",
                    "label": "Vote?",
                    "type": "single_choice",
                    "required": True,
                    "choices": [{"value": "yes", "label": "Yes"}, {"value": "no", "label": "No"}],
                },
                {"id": "score", "label": "How sure?", "type": "scale", "min": 1, "max": 5},
            ]
        }
    )
    assert [q.id for q in survey.questions] == ["vote", "score"]
    with pytest.raises(ValidationError, match=r"questions\.1\.id: Question 1 already uses this id"):
        SurveyDefinition.model_validate(
            {
                "questions": [
                    {"id": "a", "label": "x", "type": "text"},
                    {"id": "a", "label": "y", "type": "text"},
                ]
            }
        )
    with pytest.raises(ValidationError, match="max: The highest value must be above the lowest"):
        SurveyDefinition.model_validate(
            {"questions": [{"id": "s", "label": "x", "type": "scale", "min": 5, "max": 1}]}
        )
    with pytest.raises(ValidationError, match="Start with a lowercase letter"):
        SurveyDefinition.model_validate(
            {"questions": [{"id": "Bad Id", "label": "x", "type": "text"}]}
        )


def test_calling_hours_default_window() -> None:
    hours = CallingHours()
    assert hours.weekday.contains(time(9)) and not hours.weekday.contains(time(21))
    with pytest.raises(ValidationError, match="start before it ends"):
        CallingHours.model_validate({"weekday": {"start": "21:00", "end": "09:00"}})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("+15145550184", "+15145550184"),
        ("-3", "-3"),
        ("-cmd|", "'-cmd|"),
        (None, ""),
        (True, "yes"),
        (["a", "b"], "a;b"),
    ],
)
def test_spreadsheet_safe(value: object, expected: str) -> None:
    assert spreadsheet_safe(value) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("First Name", "first_name"),
        ("Prénom", "prenom"),
        ("\ufeffPhone", "phone"),
        ("E-mail", "e_mail"),
        ("  Téléphone fixe ", "telephone_fixe"),
    ],
)
def test_headers_are_normalised(header: str, expected: str) -> None:
    assert normalise_header(header) == expected


def test_database_unavailability_is_recognised_through_wrappers() -> None:
    from sqlalchemy.exc import DBAPIError

    from dialer.store.engine import is_unavailable

    class TooManyConnectionsError(Exception):  # the name asyncpg gives it
        pass

    class AdaptedError(Exception):  # SQLAlchemy's asyncpg adapter wraps the driver's error
        pass

    try:
        try:
            raise TooManyConnectionsError("sorry, too many clients already")
        except TooManyConnectionsError as driver_error:
            raise AdaptedError("wrapped") from driver_error
    except AdaptedError as adapted:
        wrapped = DBAPIError("SELECT 1", {}, adapted)
    assert is_unavailable(wrapped)
    assert is_unavailable(TooManyConnectionsError())
    assert is_unavailable(ConnectionRefusedError())
    assert not is_unavailable(DBAPIError("SELECT 1", {}, AdaptedError("syntax error")))
    assert not is_unavailable(ValueError("a bug"))
