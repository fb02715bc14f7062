"""What rings when a volunteer clicks Call: a desk phone, the browser, or their own number.

* A **desk** SIP phone (or softphone app) is an endpoint an administrator
  configured in Asterisk's pjsip.conf, named after the user's extension.
* A **browser** phone is an endpoint Asterisk reads from the dialer's own
  database (the ps_* views of migration 0013): it needs an extension (one of
  :data:`BROWSER_EXTENSIONS` unless one is chosen) and a generated SIP
  password that only its user's browser receives.
* An **own number** (a mobile, a home line) is dialed over the carrier trunk
  through the same dialplan context as the contacts, so it passes the same
  dialing policy and the same dialplan refusals.  Only a number an organizer
  or administrator set (and so approved) is ever dialed.

The dial string of each kind is :func:`volunteer_channel`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dialer.domain.compliance import DialingPolicy
from dialer.domain.i18n import _
from dialer.domain.number_reasons import phone_reason
from dialer.domain.numbers import InvalidPhoneNumber, to_e164
from dialer.domain.vocabulary import VolunteerPhone
from dialer.store.models import User, utcnow
from dialer.store.people import PhoneColumns

# Where a browser phone's extension comes from when nobody chose one: four
# digits that the shipped pjsip.conf's desk phones (1xxx) never use.
BROWSER_EXTENSIONS = range(7000, 10000)


class PhoneError(ValueError):
    """A phone cannot be given as asked; ``field`` is the culprit (extension or own_number)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class NumberRules:
    """How an own number typed by an organizer is read and which ones may be dialed."""

    region: str
    policy: DialingPolicy


@dataclass(frozen=True, slots=True)
class PhoneChoice:
    """A phone asked for: its kind, the extension typed (None: keep the user's,
    or choose one) and the own number typed (None: keep theirs; "": none).

    The own number is kept whatever the usual phone is: a volunteer with a
    desk or browser phone may take this session's calls on it instead
    (:func:`phone_choices`).
    """

    phone: VolunteerPhone
    extension: str | None = None
    own_number: str | None = None


def new_sip_secret() -> str:
    """A browser phone's SIP password: 32 letters and digits (safe in Asterisk's
    config syntax and in a SIP digest), never typed by anyone."""
    return secrets.token_hex(16)


async def free_browser_extension(session: AsyncSession) -> str:
    taken = set(
        await session.scalars(
            select(User.sip_extension).where(func.length(User.sip_extension) == 4)
        )
    )
    for number in BROWSER_EXTENSIONS:
        if str(number) not in taken:
            return str(number)
    raise PhoneError(_("no browser-phone extension is left; choose one"), "extension")


def check_own_number(raw: str, rules: NumberRules) -> str:
    """The E.164 form of an own number, if it may be dialed; raises :class:`PhoneError`."""
    try:
        number = to_e164(raw, rules.region)
    except InvalidPhoneNumber as error:
        raise PhoneError(
            _(
                "invalid phone number %(number)s: %(reason)s",
                number=repr(raw),
                reason=phone_reason(error.reason),
            ),
            "own_number",
        ) from None
    if rules.policy.check(number) is not None:
        raise PhoneError(
            _("the dialing policy does not allow calls to %(number)s", number=number),
            "own_number",
        )
    return number


async def phone_columns(
    session: AsyncSession,
    user: User | None,
    choice: PhoneChoice,
    *,
    rules: NumberRules | None,
    approver_id: int | None,
    now: datetime | None = None,
) -> PhoneColumns:
    """What ``user`` (None: a user being created) stores for ``choice``.

    The extension is checked free by the caller.  A browser phone keeps its
    secret while it stays one; an own number keeps its approval while it
    stays the same number, and is approved by ``approver_id`` otherwise.
    """
    current_extension = user.sip_extension if user is not None else None
    own = _own_number(user, choice, rules, approver_id, now)
    match choice.phone:
        case VolunteerPhone.DESK:
            return PhoneColumns(VolunteerPhone.DESK, choice.extension, None, *own)
        case VolunteerPhone.BROWSER:
            extension = (
                choice.extension or current_extension or await free_browser_extension(session)
            )
            kept = user.sip_secret if user is not None and user.phone is choice.phone else None
            return PhoneColumns(choice.phone, extension, kept or new_sip_secret(), *own)
        case VolunteerPhone.OWN_NUMBER:
            if own[0] is None:
                raise PhoneError(_("give their own phone number"), "own_number")
            return PhoneColumns(choice.phone, choice.extension, None, *own)


def _own_number(
    user: User | None,
    choice: PhoneChoice,
    rules: NumberRules | None,
    approver_id: int | None,
    now: datetime | None,
) -> tuple[str | None, int | None, datetime | None]:
    """The own number, who approved it and when, once ``choice`` is applied."""
    kept = (
        (user.own_number, user.own_number_approved_by_id, user.own_number_approved_at)
        if user is not None
        else (None, None, None)
    )
    if choice.own_number is None:
        return kept
    if not choice.own_number.strip():
        return (None, None, None)
    if rules is None:
        raise PhoneError(_("own numbers cannot be set here"), "own_number")
    number = check_own_number(choice.own_number, rules)
    if number == kept[0] and kept[2] is not None:
        return kept
    return (number, approver_id, now or utcnow())


def phone_choices(user: User) -> list[VolunteerPhone]:
    """The phones ``user`` may take this session's calls on: their usual one,
    and their approved own number when that is not already it."""
    choices = [user.phone]
    if (
        user.phone is not VolunteerPhone.OWN_NUMBER
        and user.own_number
        and user.own_number_approved_at is not None
    ):
        choices.append(VolunteerPhone.OWN_NUMBER)
    return choices


def phone_in_use(user: User, chosen: VolunteerPhone | None) -> VolunteerPhone:
    """What rings: the session's choice while it is still offered, else the usual phone."""
    return chosen if chosen is not None and chosen in phone_choices(user) else user.phone


def volunteer_channel(
    user: User, *, template: str, outbound_context: str, phone: VolunteerPhone | None = None
) -> str:
    """The Originate's Channel for ``user``'s ``phone`` (None: their usual one).

    Desk and browser phones: DIALER_VOLUNTEER_CHANNEL with their extension.
    An own number: a Local channel into the contacts' own context, so the
    dialplan's number rules and the campaign's caller ID apply to it too;
    ``/n`` keeps the Local channel in place, so the volunteer leg the
    tracker follows lives as long as the call.
    """
    if (phone or user.phone) is VolunteerPhone.OWN_NUMBER and user.own_number:
        # E.164 digits only (checked when set): nothing else reaches the header.
        return f"Local/{user.own_number.lstrip('+')}@{outbound_context}/n"
    return template.format(extension=user.sip_extension or "")
