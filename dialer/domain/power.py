"""Power (progressive) mode: what state a volunteer's session is in.

A session is a volunteer's phone called once and kept in a conference of
its own (asterisk-config/extensions.conf, ``[dialer-power]``); each contact
is then an ordinary call of the dialer whose volunteer leg is a Local
channel into that conference.  Dialing is one contact at a time per
volunteer on the line, never more, so no answered contact waits for a free
volunteer and no call is abandoned by design.

The session's state is not a second state machine to keep in step with
the calls': it follows from a few stored facts (the volunteer's leg up or
not, a pause asked for, the session's live call, an outcome owed), by
:func:`session_state`, whenever one of them changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dialer.domain.vocabulary import CallState, PowerNextCall, PowerSessionState

_BEFORE_TALKING = frozenset(
    {
        CallState.REQUESTED,
        CallState.RINGING_VOLUNTEER,
        CallState.VOLUNTEER_ANSWERED,
        CallState.RINGING_CONTACT,
    }
)


@dataclass(frozen=True, slots=True)
class SessionFacts:
    ended: bool
    leg_up: bool
    paused: bool
    # The state of the session's call that has not ended, if any.
    live_call: CallState | None
    # How many answered calls' outcomes the volunteer owes...
    outcomes_owed: int
    # ... and how many may be owed while the next contact is dialed
    # (PowerNextCall: 0 after the outcome, 1 at the call's end).
    outcomes_allowed: int = 0


def outcomes_allowed(next_call: PowerNextCall) -> int:
    """How many outcomes a volunteer may owe while their next contact is dialed."""
    return 1 if next_call is PowerNextCall.AT_CALL_END else 0


def session_state(facts: SessionFacts) -> PowerSessionState:
    """The state a session is in, from what is known of it.

    A call in progress outranks a pause (a pause takes effect after it) and
    the outcome owed outranks both: it is asked for before anything else.
    """
    if facts.ended:
        return PowerSessionState.ENDED
    if not facts.leg_up:
        return PowerSessionState.CONNECTING
    if facts.live_call is not None:
        if facts.live_call in _BEFORE_TALKING:
            return PowerSessionState.DIALING
        return PowerSessionState.TALKING
    if facts.outcomes_owed > facts.outcomes_allowed:
        return PowerSessionState.WRAP_UP
    if facts.paused:
        return PowerSessionState.PAUSED
    return PowerSessionState.WAITING


def waited_seconds(
    previous: PowerSessionState, since: datetime, now: datetime, total: float
) -> float:
    """The session's time spent waiting for a contact, once it leaves ``previous``.

    Only WAITING counts: the time between the volunteer being free and the
    next contact being dialed, what a volunteer-hour loses to the dialer.
    """
    if previous is not PowerSessionState.WAITING:
        return total
    return total + max(0.0, (now - since).total_seconds())


# Why a session ended, as stored (end_reason) and shown.
END_LEFT = "left"
END_LAST_CALL = "last_call"
END_LEG_DROPPED = "volunteer_hung_up"
END_NOT_ANSWERED = "phone_not_answered"
END_LIST_DONE = "list_done"
END_PBX = "pbx_unavailable"
END_CAMPAIGN = "campaign_not_active"


# Why a waiting session dials nobody (PowerSession.waiting_reason): the list
# has no contact callable now, or the contact it offered was refused.
WAITING_LIST = "list"
WAITING_REFUSAL = "refusal"


def waiting_reason(kind: str, code: str) -> str:
    """``kind`` (WAITING_LIST or WAITING_REFUSAL) and its code, as stored."""
    return f"{kind}:{code}"


def read_waiting_reason(reason: str | None) -> tuple[str, str]:
    """(kind, code) of a stored reason; ("", "") for none."""
    kind, _colon, code = (reason or "").partition(":")
    return kind, code
