"""Every label the pages and the API show for the domain's codes, translated.

The codes (``refused``, ``do_not_call``...) are stable and go in JSON as
they are; people see these labels.  Functions, not module constants, so
each call translates into the language of the request being served.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from dialer.domain import power
from dialer.domain.compliance import Refusal, RefusalCode
from dialer.domain.numbers import EXTENSION_REASON, LETTERS_REASON
from dialer.domain.survey import QuestionType
from dialer.domain.vocabulary import (
    CallOutcome,
    CallState,
    CampaignStatus,
    DispositionOutcome,
    PhoneType,
    PowerSessionState,
    Role,
    TaskStatus,
    VolunteerPhone,
)
from dialer.services.lists import EMPTY_REASONS
from dialer.services.outcomes import SKIP_REASONS
from web.i18n.translate import _, fmt_datetime


def disposition_outcome(outcome: DispositionOutcome | str) -> str:
    labels = {
        DispositionOutcome.REFUSED: _("Refused to talk"),
        DispositionOutcome.ABSENT: _("Absent"),
        DispositionOutcome.ANSWERED: _("Answered"),
        DispositionOutcome.CALL_BACK_LATER: _("Call back later"),
        DispositionOutcome.WRONG_NUMBER: _("Wrong number"),
        DispositionOutcome.OTHER: _("Other"),
    }
    return labels.get(DispositionOutcome(outcome), str(outcome))


def call_state(state: CallState | str) -> str:
    labels = {
        CallState.REQUESTED: _("Calling your phone…"),
        CallState.RINGING_VOLUNTEER: _("Ringing your phone"),
        CallState.VOLUNTEER_ANSWERED: _("Dialing the contact"),
        CallState.RINGING_CONTACT: _("Ringing the contact"),
        CallState.TALKING: _("Talking"),
        CallState.ENDED: _("Ended"),
    }
    return labels.get(CallState(state), str(state))


def call_outcome(outcome: CallOutcome | str | None) -> str:
    if outcome is None:
        return ""
    labels = {
        CallOutcome.COMPLETED: _("The call took place"),
        CallOutcome.CONTACT_BUSY: _("The contact's line was busy"),
        CallOutcome.CONTACT_NO_ANSWER: _("The contact did not answer"),
        CallOutcome.CONTACT_CONGESTION: _("The network was congested"),
        CallOutcome.CONTACT_REJECTED: _("The contact rejected the call"),
        CallOutcome.CONTACT_UNREACHABLE: _("The contact's number is unreachable"),
        CallOutcome.VOLUNTEER_NO_ANSWER: _("Your phone did not answer"),
        CallOutcome.VOLUNTEER_BUSY: _("Your phone was busy"),
        CallOutcome.VOLUNTEER_UNREACHABLE: _("Your phone is unreachable"),
        CallOutcome.FAILED: _("The call failed"),
        CallOutcome.HUNG_UP_BY_OPERATOR: _("Hung up by an organizer"),
        CallOutcome.HUNG_UP_BY_VOLUNTEER: _("You hung up"),
        CallOutcome.LOST: _("The call was lost; an organizer will review it"),
    }
    return labels.get(CallOutcome(outcome), str(outcome))


def power_state(state: PowerSessionState | str) -> str:
    labels = {
        PowerSessionState.CONNECTING: _("Calling your phone…"),
        PowerSessionState.WAITING: _("Waiting for the next contact"),
        PowerSessionState.DIALING: _("Dialing a contact"),
        PowerSessionState.TALKING: _("Talking"),
        PowerSessionState.WRAP_UP: _("Wrapping up: record the outcome"),
        PowerSessionState.PAUSED: _("Paused"),
        PowerSessionState.ENDED: _("Session ended"),
    }
    return labels.get(PowerSessionState(state), str(state))


def power_end_reason(reason: str | None) -> str:
    """Why a power session ended, from its stored reason (dialer.domain.power)."""
    if not reason:
        return ""
    code = reason.split(":", 1)[0]
    labels = {
        power.END_LEFT: _("You left the session."),
        power.END_LAST_CALL: _("Your last call is done."),
        power.END_LEG_DROPPED: _("Your phone hung up, so the session ended."),
        power.END_NOT_ANSWERED: _("Your phone did not answer, so the session did not start."),
        power.END_LIST_DONE: _("There is nobody left to call on your list."),
        power.END_PBX: _("The phone system could not call you; try again in a moment."),
        power.END_CAMPAIGN: _("This campaign is no longer open to you."),
    }
    return labels.get(code, reason)


def volunteer_status(status: str) -> str:
    labels = {
        "idle": _("Available"),
        "ringing": _("Phone ringing"),
        "on_call": _("On a call"),
        "wrap_up": _("Wrapping up"),
        "offline": _("Offline"),
    }
    return labels.get(status, status)


def volunteer_phone(value: VolunteerPhone | str) -> str:
    labels = {
        VolunteerPhone.DESK: _("Desk phone (SIP)"),
        VolunteerPhone.BROWSER: _("Browser"),
        VolunteerPhone.OWN_NUMBER: _("Their own phone number"),
    }
    return labels.get(VolunteerPhone(value), str(value))


def role(value: Role | str) -> str:
    labels = {
        Role.VOLUNTEER: _("Volunteer"),
        Role.ORGANIZER: _("Organizer"),
        Role.ADMIN: _("Administrator"),
    }
    return labels.get(Role(value), str(value))


def campaign_status(value: CampaignStatus | str) -> str:
    labels = {
        CampaignStatus.DRAFT: _("Draft"),
        CampaignStatus.ACTIVE: _("Active"),
        CampaignStatus.PAUSED: _("Paused"),
        CampaignStatus.CLOSED: _("Closed"),
    }
    return labels.get(CampaignStatus(value), str(value))


def phone_type(value: PhoneType | str) -> str:
    labels = {
        PhoneType.MOBILE: _("Mobile"),
        PhoneType.LANDLINE: _("Landline"),
        PhoneType.WORK: _("Work"),
        PhoneType.OTHER: _("Phone"),
    }
    return labels.get(PhoneType(value), str(value))


def task_status(value: TaskStatus | str) -> str:
    labels = {
        TaskStatus.OPEN: _("Open"),
        TaskStatus.DONE: _("Done"),
        TaskStatus.CANCELLED: _("Cancelled"),
    }
    return labels.get(TaskStatus(value), str(value))


def question_type(value: QuestionType | str) -> str:
    labels = {
        QuestionType.SINGLE_CHOICE: _("One choice"),
        QuestionType.MULTIPLE_CHOICE: _("Several choices"),
        QuestionType.YES_NO: _("Yes or no"),
        QuestionType.SCALE: _("Scale"),
        QuestionType.NUMBER: _("Number"),
        QuestionType.TEXT: _("Text"),
    }
    return labels.get(QuestionType(value), str(value))


def empty_list_reason(
    reason: str | None, available_at: datetime | None, *, when: str | None = None
) -> str:
    """Why a list offers no contact; ``when`` words ``available_at`` another way."""
    if when is None:
        when = fmt_datetime(available_at, "short") if available_at else ""
    if reason == "all_done":
        return _("Every contact on this list is done.")
    if reason == "outside_hours":
        return _("The remaining contacts are outside calling hours until %(when)s.", when=when)
    if reason == "waiting_for_retry":
        return _(
            "The remaining contacts are waiting for a retry or a call-back until %(when)s.",
            when=when,
        )
    return _("No contacts are assigned to this list.")


def refusal(value: Refusal, *, when: str | None = None) -> str:
    """A call refusal in the viewer's language; the code stays the same.

    ``when`` words the time the refusal lifts another way than ``retry_at``.
    """
    if when is None:
        when = fmt_datetime(value.retry_at, "short") if value.retry_at else ""
    code = value.code
    if code is RefusalCode.OUTSIDE_CALLING_HOURS:
        if when:
            return _(
                "It is outside calling hours for this contact; calls may start at %(when)s.",
                when=when,
            )
        return _("It is outside calling hours for this contact.")
    if code is RefusalCode.RETRY_TOO_SOON and when:
        return _("This contact was tried recently; try again after %(when)s.", when=when)
    labels: dict[RefusalCode, Callable[[], str]] = {
        RefusalCode.NO_EXTENSION: lambda: _(
            "You have no phone extension; ask an organizer to set one."
        ),
        RefusalCode.OWN_NUMBER_NOT_ALLOWED: lambda: _(
            "The dialing policy does not allow calls to your own phone number; "
            "ask an organizer to change your phone."
        ),
        RefusalCode.VOLUNTEER_BUSY: lambda: _("You already have a call in progress."),
        RefusalCode.INVALID_NUMBER: lambda: _("This is not a valid phone number."),
        RefusalCode.NUMBER_NOT_ALLOWED: lambda: _(
            "The dialing policy does not allow calls to this number."
        ),
        RefusalCode.DO_NOT_CALL: lambda: _("This contact is on the do-not-call list."),
        RefusalCode.WRONG_NUMBER: lambda: _("This number was marked as a wrong number."),
        RefusalCode.MAX_ATTEMPTS: lambda: _(
            "This contact was already tried the maximum number of times."
        ),
        RefusalCode.RETRY_TOO_SOON: lambda: _("This contact was tried recently; try later."),
        RefusalCode.CONTACT_BEING_CALLED: lambda: _("Someone is calling this contact right now."),
        RefusalCode.CAMPAIGN_NOT_ACTIVE: lambda: _("This campaign is not active."),
        RefusalCode.NOT_IN_TEAM: lambda: _("You are not in this campaign's team."),
        RefusalCode.CALLER_ID_NOT_ALLOWED: lambda: _(
            "This caller ID is not allowed for this call."
        ),
        RefusalCode.NO_CALLER_ID: lambda: _(
            "There is no caller ID to call from; ask an organizer to set one up."
        ),
        RefusalCode.NOT_FOUND: lambda: _("No such contact or number."),
        RefusalCode.PBX_UNAVAILABLE: lambda: _(
            "The phone system is not connected; try again shortly."
        ),
        RefusalCode.IN_POWER_SESSION: lambda: _(
            "You are in a power session: the next contact is dialed for you."
        ),
        RefusalCode.NOT_POWER_MODE: lambda: _("This campaign does not use power mode."),
    }
    make = labels.get(code)
    return make() if make is not None else value.message


# Field-level messages from dialer.domain.outcomes, translated by their English text.
_FIELD_MESSAGES: dict[str, Callable[[], str]] = {
    "this question is required": lambda: _("This question is required."),
    "no such question in this campaign's survey": lambda: _(
        "There is no such question in this campaign's survey."
    ),
    "expected a list of choices": lambda: _("Pick from the choices."),
    "a choice is listed twice": lambda: _("A choice is listed twice."),
    "expected yes or no": lambda: _("Answer yes or no."),
    "expected a whole number": lambda: _("Enter a whole number."),
    "expected a number": lambda: _("Enter a number."),
    "expected text": lambda: _("Enter some text."),
    "a survey is only taken when the contact answered": lambda: _(
        "A survey is only taken when the contact answered."
    ),
    "the survey needs the contact's consent": lambda: _("The survey needs the contact's consent."),
    "say when to call back": lambda: _("Say when to call back."),
    "give a time zone (or UTC offset) with the time": lambda: _("Give a time zone with the time."),
    "a call-back must be in the future": lambda: _("A call-back must be in the future."),
    "not a valid email address": lambda: _("This is not a valid email address."),
    "use a language code such as fr or en": lambda: _("Use a language code such as fr or en."),
    "no such call for this contact": lambda: _("There is no such call for this contact."),
    "an outcome was already recorded for this call": lambda: _(
        "An outcome was already recorded for this call."
    ),
    "no such user": lambda: _("There is no such user."),
    "only the outcome of your own call can change the contact's details": lambda: _(
        "Only the outcome of your own call can change the contact's details."
    ),
    EXTENSION_REASON: lambda: _("An extension cannot be dialed; give the number without it."),
    LETTERS_REASON: lambda: _("Write the number with digits only."),
}
_RANGE = re.compile(r"expected a number from (-?\d+) to (-?\d+)\Z")
_TOO_LONG = re.compile(r"(?:at most (\d+) characters|String should have at most (\d+) characters?)")


def field_error(message: str) -> str:
    known = _FIELD_MESSAGES.get(message)
    if known is not None:
        return known()
    found = _RANGE.match(message)
    if found:
        return _("Enter a number from %(low)s to %(high)s.", low=found[1], high=found[2])
    found = _TOO_LONG.search(message)
    if found:
        return _("At most %(count)s characters.", count=found[1] or found[2])
    if message.startswith(("choose one of", "unknown choice")):
        return _("Pick one of the choices offered.")
    if message.startswith(("wrong number of digits", "not a valid number", "too ", "unknown")):
        return _("This is not a valid phone number.")
    return _("This value is not valid.")


def field_errors(errors: dict[str, str]) -> dict[str, str]:
    return {path: field_error(message) for path, message in errors.items()}


# Why an answered call was left without its outcome
# (dialer.services.outcomes.SKIP_REASONS), in the viewer's language.
_SKIP_REASONS: dict[str, Callable[[], str]] = {
    "call_cut_off": lambda: _("The call was cut off"),
    "wrong_person": lambda: _("I reached the wrong person"),
    "no_conversation": lambda: _("No real conversation (voicemail, silence)"),
    "other": lambda: _("Another reason"),
    "before_upgrade": lambda: _("Ended before outcomes were required"),
}


def skip_reason(code: str | None) -> str:
    make = _SKIP_REASONS.get(code or "")
    return make() if make is not None else (code or "")


def skip_reasons() -> list[tuple[str, str]]:
    """The reasons a volunteer may choose, as (code, label)."""
    return [(code, skip_reason(code)) for code in SKIP_REASONS]


_REFUSAL_CODES = frozenset(code.value for code in RefusalCode)


def power_waiting(reason: str | None, until: datetime | None) -> str | None:
    """Why a power session is dialing nobody, in the reader's language; None
    when it is not waiting for a reason it knows."""
    kind, code = power.read_waiting_reason(reason)
    if kind == power.WAITING_LIST and code in EMPTY_REASONS:
        return empty_list_reason(code, until)
    if kind == power.WAITING_REFUSAL and code in _REFUSAL_CODES:
        return refusal(Refusal(RefusalCode(code), "", retry_at=until))
    return None


def power_waiting_templates() -> dict[str, dict[str, str]]:
    """:func:`power_waiting` of every reason, for a script to fill in: ``at``
    with the time left as ``%(when)s`` (for a reason given with a time),
    ``plain`` without one."""
    placeholder = "%(when)s"
    templates = {
        power.waiting_reason(power.WAITING_LIST, code): {
            "at": empty_list_reason(code, None, when=placeholder),
            "plain": empty_list_reason(code, None),
        }
        for code in EMPTY_REASONS
    }
    for code in RefusalCode:
        templates[power.waiting_reason(power.WAITING_REFUSAL, code.value)] = {
            "at": refusal(Refusal(code, ""), when=placeholder),
            "plain": refusal(Refusal(code, "")),
        }
    return templates
