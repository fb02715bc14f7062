"""Why a phone number was refused, in the reader's language.

Apart from :mod:`dialer.domain.numbers`, whose reasons are stable English
keys, so that the message catalog reads only what people see.
"""

from __future__ import annotations

from dialer.domain.i18n import pgettext


def phone_reason(reason: str) -> str:
    """:class:`~dialer.domain.numbers.InvalidPhoneNumber`'s reason in the current language."""
    reasons = {
        "empty": pgettext("phone number", "empty"),
        "too long": pgettext("phone number", "too long"),
        "too short": pgettext("phone number", "too short"),
        "unknown country code": pgettext("phone number", "unknown country code"),
        "not a phone number": pgettext("phone number", "not a phone number"),
        "wrong number of digits": pgettext("phone number", "wrong number of digits"),
        "not a valid number in its country": pgettext(
            "phone number", "not a valid number in its country"
        ),
        "extensions cannot be dialed": pgettext("phone number", "extensions cannot be dialed"),
        "contains letters": pgettext("phone number", "contains letters"),
    }
    return reasons.get(reason, reason)
