"""What the simulated people at both ends of a call do: a contact (the
called number) answers after some ringing and talks for a while, or is
busy, never answers, meets congestion, rejects the call or is unreachable;
a volunteer's desk phone answers, is busy, declines, rings out, is
unplugged or never responds.  :func:`default_contact_behaviour` and
:func:`default_volunteer_behaviour` are the default rule the
:mod:`ami_bridge.simulator` docstring describes; tests script other
behaviours per number or extension.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ContactOutcome(enum.Enum):
    ANSWER = "answer"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    CONGESTION = "congestion"
    REJECTED = "rejected"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class ContactBehaviour:
    """What the called party does.  ``talk_seconds=None``: stays until hung up."""

    outcome: ContactOutcome
    ring_seconds: float = 1.0
    talk_seconds: float | None = None

    @classmethod
    def answers(cls, after: float = 1.0, hangs_up_after: float | None = None) -> ContactBehaviour:
        return cls(ContactOutcome.ANSWER, after, hangs_up_after)

    @classmethod
    def busy(cls) -> ContactBehaviour:
        return cls(ContactOutcome.BUSY)

    @classmethod
    def no_answer(cls) -> ContactBehaviour:
        return cls(ContactOutcome.NO_ANSWER)

    @classmethod
    def congestion(cls) -> ContactBehaviour:
        return cls(ContactOutcome.CONGESTION)

    @classmethod
    def rejected(cls) -> ContactBehaviour:
        return cls(ContactOutcome.REJECTED)

    @classmethod
    def unreachable(cls) -> ContactBehaviour:
        return cls(ContactOutcome.UNREACHABLE)


class VolunteerOutcome(enum.Enum):
    ANSWER = "answer"
    # 486 Busy Here.
    BUSY = "busy"
    # 603 Decline.
    DECLINED = "declined"
    # Rings until the Originate's Timeout.
    NO_ANSWER = "no_answer"
    # Qualify found the phone's contact Unavailable: refused before any channel.
    UNREACHABLE = "unreachable"
    # A contact nobody answers at all, qualify off: no ringing, then the
    # Originate's Timeout (pjsip_volunteer_unreachable.ami).
    NO_RESPONSE = "no_response"


@dataclass(frozen=True, slots=True)
class VolunteerBehaviour:
    """What the volunteer's phone does.  ``hangs_up_after`` counts from the
    moment the contact is bridged; ``None`` leaves the hangup to the contact."""

    outcome: VolunteerOutcome = VolunteerOutcome.ANSWER
    answer_after: float = 0.0
    hangs_up_after: float | None = None


def default_contact_behaviour(number: str) -> ContactBehaviour:
    """The DEFAULT RULE for contacts (see the package docstring)."""
    match number[-1:]:
        case "0":
            return ContactBehaviour.answers(after=1.0, hangs_up_after=4.0)
        case "1":
            return ContactBehaviour.busy()
        case "2":
            return ContactBehaviour.no_answer()
        case "3":
            return ContactBehaviour.congestion()
        case "4":
            return ContactBehaviour.answers(after=1.0)
        case "5":
            return ContactBehaviour.rejected()
        case "6":
            return ContactBehaviour.unreachable()
        case _:
            return ContactBehaviour.answers(after=1.0, hangs_up_after=3.0)


def default_volunteer_behaviour(extension: str) -> VolunteerBehaviour:
    """The DEFAULT RULE for volunteers' extensions (see the package docstring)."""
    if extension.endswith("99"):
        return VolunteerBehaviour(VolunteerOutcome.UNREACHABLE)
    if extension.endswith("98"):
        return VolunteerBehaviour(VolunteerOutcome.NO_ANSWER)
    if extension.endswith("97"):
        return VolunteerBehaviour(VolunteerOutcome.BUSY)
    return VolunteerBehaviour()


def number_key(number: str) -> str:
    """The key a scripted contact is kept under: dialplans often dial E.164
    numbers without their leading ``+``."""
    return number.removeprefix("+")
