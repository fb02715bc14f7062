"""Phone numbers: parsing to E.164 with a reason when it fails.

Nothing is rewritten silently: a number with letters (``514-555-CALL``, or
a letter O typed for a zero) is refused unless the caller asks for the
keypad's letters, and a number with an extension (``x12``, ``;ext=9``) is
refused, because the dialer can only dial the E.164 number and would
otherwise reach a switchboard instead of the person.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberType

_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}


EXTENSION_REASON = "extensions cannot be dialed"
LETTERS_REASON = "contains letters"
# What str.isalpha finds in ASCII text.
_ASCII_LETTER = re.compile(r"[A-Za-z]")


class InvalidPhoneNumber(ValueError):
    """``reason`` is one of a fixed set of English phrases, a stable key:
    dialer.domain.number_reasons.phone_reason says it in the current language."""

    def __init__(self, raw: str, reason: str) -> None:
        super().__init__(f"invalid phone number {raw!r}: {reason}")
        self.raw = raw
        self.reason = reason


class CheckedNumber(NamedTuple):
    """A number :func:`check_number` accepted, and what checking it learnt.

    The dialing policy's :meth:`~dialer.domain.compliance.DialingPolicy.check_number`
    takes it as it is, rather than parsing ``e164`` again (the contact
    import asks both of every number of every row).
    """

    e164: str
    # Valid (phonenumbers.is_valid_number), parsed by phonenumbers.parse.
    number: PhoneNumber
    # phonenumbers.region_code_for_number: "001" for the non-geographic codes.
    region: str


def to_e164(raw: str, region: str, *, allow_letters: bool = False) -> str:
    """Normalise ``raw`` (national or international form) to ``+CCNNN...``.

    National numbers are read in ``region``; a number that parses but cannot
    exist (wrong length for its country, unassigned area code) is refused,
    because dialing it would only waste a volunteer's time.  Letters are
    refused unless ``allow_letters`` asks for them to be read as the keypad
    does (``1-800-FLOWERS``); extensions are always refused.
    """
    return check_number(raw, region, allow_letters=allow_letters).e164


def check_number(raw: str, region: str, *, allow_letters: bool = False) -> CheckedNumber:
    """:func:`to_e164`, keeping the parsed number and its region for the dialing policy."""
    text = raw.strip()
    if not text:
        raise InvalidPhoneNumber(raw, "empty")
    if len(text) > 40:
        raise InvalidPhoneNumber(raw[:40] + "...", "too long")
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as error:
        raise InvalidPhoneNumber(raw, _PARSE_REASONS.get(error.error_type, str(error))) from None
    # Checked before the letters: "x12" and "ext. 12" are letters too, and
    # the extension is what the person has to be told about.
    if number.extension:
        raise InvalidPhoneNumber(raw, EXTENSION_REASON)
    # A tel: URI's scheme is not part of the number.
    digits_part = text[4:] if text[:4].lower() == "tel:" else text
    if not allow_letters and (
        _ASCII_LETTER.search(digits_part) is not None
        if digits_part.isascii()
        else any(character.isalpha() for character in digits_part)
    ):
        raise InvalidPhoneNumber(raw, LETTERS_REASON)
    # phonenumbers.is_valid_number(number) is exactly this; the region is kept.
    number_region = phonenumbers.region_code_for_number(number)
    if number_region is None or not phonenumbers.is_valid_number_for_region(number, number_region):
        if not phonenumbers.is_possible_number(number):
            raise InvalidPhoneNumber(raw, "wrong number of digits")
        raise InvalidPhoneNumber(raw, "not a valid number in its country")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return CheckedNumber(e164, number, number_region)


def is_mobile(e164: str) -> bool:
    number = phonenumbers.parse(e164, None)
    return phonenumbers.number_type(number) in (
        PhoneNumberType.MOBILE,
        PhoneNumberType.FIXED_LINE_OR_MOBILE,
    )


def display(e164: str) -> str:
    """International format for people: +1 514-555-0184."""
    number = phonenumbers.parse(e164, None)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
