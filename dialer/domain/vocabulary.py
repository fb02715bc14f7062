"""Vocabulary shared by every layer: roles, call states, outcomes.

Pure data, no I/O: the persistence layer stores these values, the AMI
tracker produces them and the web layer shows them.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VOLUNTEER = "volunteer"
    ORGANIZER = "organizer"
    ADMIN = "admin"


class VolunteerPhone(StrEnum):
    """What rings when a volunteer clicks Call."""

    # A SIP phone (desk phone or softphone app) configured in Asterisk's files.
    DESK = "desk"
    # The browser itself, over WebRTC: the endpoint comes from the dialer's
    # database through Asterisk's realtime (migration 0013).
    BROWSER = "browser"
    # The volunteer's own phone number (a mobile, a home line), dialed over the
    # carrier trunk like a contact, once an organizer has approved it.
    OWN_NUMBER = "own_number"


class DialingMode(StrEnum):
    """How a campaign's volunteers call."""

    # The volunteer clicks Call for each contact; their phone rings each time.
    CLICK = "click"
    # Power (progressive) mode: the volunteer's phone is called once and stays
    # in a conference of its own; the next contact is dialed for them, one at
    # a time (dialer.domain.power).
    POWER = "power"


class PowerNextCall(StrEnum):
    """When a power session dials its next contact after an answered call."""

    # Once the volunteer has recorded (or skipped) its outcome.
    AFTER_OUTCOME = "after_outcome"
    # As soon as it ends: the volunteer records the outcome while the next
    # contact rings, and may owe one outcome at most.
    AT_CALL_END = "at_call_end"


class PowerSessionState(StrEnum):
    """Where a volunteer's power session is, in the order a session goes."""

    # Their phone is being called.
    CONNECTING = "connecting"
    # On the line, no contact dialed: the next one is being chosen, or none
    # is callable right now.
    WAITING = "waiting"
    DIALING = "dialing"
    TALKING = "talking"
    # The call ended answered; its outcome is owed before the next contact.
    WRAP_UP = "wrap_up"
    PAUSED = "paused"
    ENDED = "ended"


class PhoneType(StrEnum):
    MOBILE = "mobile"
    LANDLINE = "landline"
    WORK = "work"
    OTHER = "other"


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    CLOSED = "closed"


class CallState(StrEnum):
    """Lifecycle of one click-to-call, in the order a call normally goes."""

    REQUESTED = "requested"
    RINGING_VOLUNTEER = "ringing_volunteer"
    VOLUNTEER_ANSWERED = "volunteer_answered"
    RINGING_CONTACT = "ringing_contact"
    TALKING = "talking"
    ENDED = "ended"


LIVE_CALL_STATES = frozenset(CallState) - {CallState.ENDED}
_CALL_STATE_ORDER = {state: index for index, state in enumerate(CallState)}


def is_behind(reported: CallState, stored: CallState) -> bool:
    """Whether news of ``reported`` comes after ``stored`` was already stored.

    A call only moves forward: a late or repeated report never takes it back.
    """
    return _CALL_STATE_ORDER[reported] < _CALL_STATE_ORDER[stored]


class CallOutcome(StrEnum):
    """Why an ended call ended, as far as the PBX can tell."""

    COMPLETED = "completed"
    CONTACT_BUSY = "contact_busy"
    CONTACT_NO_ANSWER = "contact_no_answer"
    CONTACT_CONGESTION = "contact_congestion"
    CONTACT_REJECTED = "contact_rejected"
    CONTACT_UNREACHABLE = "contact_unreachable"
    VOLUNTEER_NO_ANSWER = "volunteer_no_answer"
    VOLUNTEER_BUSY = "volunteer_busy"
    VOLUNTEER_UNREACHABLE = "volunteer_unreachable"
    FAILED = "failed"
    HUNG_UP_BY_OPERATOR = "hung_up_by_operator"
    HUNG_UP_BY_VOLUNTEER = "hung_up_by_volunteer"
    # The worker lost track of the call (crash, PBX restart) and could not
    # learn how it ended; flagged for a human to review.
    LOST = "lost"


# Ends of a call that was a conversation, once its contact answered: the
# volunteer owes its outcome (``outcome_owed``).  Talk ended normally, or
# by the volunteer or an organizer hanging up; either way the contact
# talked, and nothing recorded it yet.  Not FAILED or LOST: a call cut by a
# PBX crash, or found ended by a reconciliation, did not end as a
# conversation does and nobody can say how it went (it is flagged for
# review instead).  Mirrored in web/static/call.js (CONVERSATION_ENDS).
CONVERSATION_ENDS = frozenset(
    {
        CallOutcome.COMPLETED,
        CallOutcome.HUNG_UP_BY_OPERATOR,
        CallOutcome.HUNG_UP_BY_VOLUNTEER,
    }
)


def outcome_owed(outcome: CallOutcome | None, *, contact_answered: bool) -> bool:
    """Whether an ended call's volunteer owes its outcome: the contact answered
    and the call ended as a conversation does (``CONVERSATION_ENDS``).

    Only the call's own facts; whether an outcome was recorded or skipped
    since is the store's to say (``dialer.store.calls.pending_outcome_filter``).
    """
    return contact_answered and outcome in CONVERSATION_ENDS


class DispositionOutcome(StrEnum):
    """The volunteer's answer to "how did it go?", the first question."""

    REFUSED = "refused"
    ABSENT = "absent"
    ANSWERED = "answered"
    CALL_BACK_LATER = "call_back_later"
    WRONG_NUMBER = "wrong_number"
    OTHER = "other"


class TaskStatus(StrEnum):
    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"
