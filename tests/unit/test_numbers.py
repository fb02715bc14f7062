"""Numbers are never silently rewritten: letters and extensions are refused, with a reason."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dialer.domain.i18n import activate_scoped, deactivate
from dialer.domain.number_reasons import phone_reason
from dialer.domain.numbers import (
    EXTENSION_REASON,
    LETTERS_REASON,
    InvalidPhoneNumber,
    to_e164,
)
from dialer.services.caller_ids import usable_caller_id


def _reason(raw: str, **options: bool) -> str:
    with pytest.raises(InvalidPhoneNumber) as caught:
        to_e164(raw, "CA", **options)
    assert caught.value.raw == raw
    return caught.value.reason


@pytest.mark.parametrize(
    "raw",
    [
        "514-555-CALL",  # used to become +15145552255
        "514 555 O1OO",  # a letter O for a zero: used to become +15145556166
        "1-800-FLOWERS",
        "+1514555018l",  # a letter l for a one
        "+15145550184p12",  # a pause and digits after it
    ],
)
def test_letters_are_refused_by_default(raw: str) -> None:
    assert _reason(raw) == LETTERS_REASON


def test_letters_are_read_as_the_keypad_does_when_asked() -> None:
    assert to_e164("1-800-FLOWERS", "CA", allow_letters=True) == "+18003569377"
    assert to_e164("514-555-CALL", "CA", allow_letters=True) == "+15145552255"


@pytest.mark.parametrize(
    "raw",
    [
        "514-555-0184 x12",
        "514-555-0184 ext. 12",
        "514-555-0184;ext=9",
        "+15145550184;ext=9",
        "tel:+1-514-555-0184;ext=9",
        "5145550184#12",
        "5145550184,,12",
    ],
)
@pytest.mark.parametrize("allow_letters", [False, True])
def test_extensions_are_refused_not_dropped(raw: str, allow_letters: bool) -> None:
    """The dialer dials the E.164 number only: keeping the number and dropping
    the extension would reach a switchboard, not the person."""
    assert _reason(raw, allow_letters=allow_letters) == EXTENSION_REASON


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("514 555 0184", "+15145550184"),
        ("+1 (514) 555-0184", "+15145550184"),
        ("514.555.0184", "+15145550184"),
        ("tel:+1-514-555-0184", "+15145550184"),  # the scheme is not a letter of the number
        ("\uff15\uff11\uff14 555 0184", "+15145550184"),  # full-width digits are digits
    ],
)
def test_plain_numbers_still_parse(raw: str, expected: str) -> None:
    assert to_e164(raw, "CA") == expected


@pytest.fixture
def french() -> Iterator[None]:
    token = activate_scoped("fr")
    yield
    deactivate(token)


@pytest.mark.usefixtures("french")
def test_the_new_reasons_are_translated() -> None:
    """The importer's row errors and `dialer check-pbx --number` say them in French."""
    with pytest.raises(InvalidPhoneNumber) as caught:
        to_e164("514-555-0184 x12", "CA")
    assert caught.value.reason == EXTENSION_REASON  # the stable key stays English
    assert phone_reason(caught.value.reason) == "les numéros de poste ne peuvent pas être composés"
    assert phone_reason(LETTERS_REASON) == "contient des lettres"
    assert phone_reason("wrong number of digits") == "nombre de chiffres incorrect"


@pytest.mark.parametrize(
    ("number", "usable"),
    [
        ("+15145550100", True),
        ("+1 (514) 555-0100", True),
        ("+15145550100;ext=9", False),  # the dialplan would present 151455501009
        ("+1 514 555 0100 x12", False),
        ("+1 514 555 CALL", False),
        ("tel:+15145550100", False),
    ],
)
def test_a_caller_id_with_an_extension_or_letters_is_not_usable(number: str, usable: bool) -> None:
    assert usable_caller_id(number) is usable
