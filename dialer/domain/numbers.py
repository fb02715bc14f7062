"""Phone numbers: parsing to E.164 with a reason when it fails."""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}


class InvalidPhoneNumber(ValueError):
    def __init__(self, raw: str, reason: str) -> None:
        super().__init__(f"invalid phone number {raw!r}: {reason}")
        self.raw = raw
        self.reason = reason


def to_e164(raw: str, region: str) -> str:
    """Normalise ``raw`` (national or international form) to ``+CCNNN...``.

    National numbers are read in ``region``; a number that parses but cannot
    exist (wrong length for its country, unassigned area code) is refused,
    because dialing it would only waste a volunteer's time.
    """
    text = raw.strip()
    if not text:
        raise InvalidPhoneNumber(raw, "empty")
    if len(text) > 40:
        raise InvalidPhoneNumber(raw[:40] + "...", "too long")
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as error:
        raise InvalidPhoneNumber(raw, _PARSE_REASONS.get(error.error_type, str(error))) from None
    if not phonenumbers.is_valid_number(number):
        if not phonenumbers.is_possible_number(number):
            raise InvalidPhoneNumber(raw, "wrong number of digits")
        raise InvalidPhoneNumber(raw, "not a valid number in its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


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
