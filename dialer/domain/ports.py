"""What the dialer service needs from the PBX side, as a Protocol.

``ami_bridge`` implements it; the service and its tests depend only on this.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from dialer.domain.vocabulary import CallOutcome, CallState


@dataclass(frozen=True, slots=True)
class OriginateRequest:
    call_id: str
    # The volunteer's dial string, from DIALER_VOLUNTEER_CHANNEL.
    channel: str
    context: str
    # The contact's number as E.164 digits without '+', the dialplan's ${EXTEN}.
    exten: str
    caller_id_name: str
    caller_id_number: str
    timeout_ms: int
    variables: dict[str, str] = field(default_factory=dict)


# An organizer on a live call (ChanSpy): silent, heard by the volunteer
# only, or heard by both sides.
SpyMode = Literal["listen", "whisper", "barge"]
SPY_MODES: tuple[SpyMode, ...] = ("listen", "whisper", "barge")
_SPY_MODES_BY_NAME: dict[object, SpyMode] = {mode: mode for mode in SPY_MODES}


# What became of a supervision request on the PBX: the organizer's phone is
# rung into the call ("rung"; for another mode than the one they were on,
# that leg is hung up first), the call has no live volunteer leg to spy on
# ("no_live_leg"), or their phone is already ringing into it or on it in
# that mode, and is not rung again ("already_on").
SpyStart = Literal["rung", "no_live_leg", "already_on"]


def spy_mode(value: object) -> SpyMode | None:
    """``value`` as a SpyMode, or None when it is not one (typed input, a row)."""
    return _SPY_MODES_BY_NAME.get(value) if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class SpyRequest:
    """Ring an organizer's phone into a live call (``dialer-supervise``).

    No channel to spy on here: the PBX side takes the one it tracks for
    ``call_id``, so nothing a user sent can name one.
    """

    request_id: int
    call_id: str
    mode: SpyMode
    # The organizer's dial string, built as a volunteer's is.
    channel: str
    context: str
    caller_id_name: str
    # E.164 digits without '+': what an own-number organizer is called from.
    caller_id_number: str
    timeout_ms: int
    # Let ChanSpy beep when it starts (DIALER_SUPERVISION_BEEP): to the organizer.
    beep: bool = False
    # Play the volunteer two short tones as the organizer joins
    # (DIALER_SUPERVISION_NOTICE).
    notice: bool = False


@dataclass(frozen=True, slots=True)
class SessionLegRequest:
    """Call a volunteer's phone once for a power session (``dialer-power``).

    The phone answers into a conference of its own; each contact of the
    session is then an :class:`OriginateRequest` whose channel is a Local
    channel into that conference (:func:`power_join_channel`).
    """

    session_id: int
    # The volunteer's dial string, built as for a click-to-call.
    channel: str
    context: str
    caller_id_name: str
    # E.164 digits without '+': what an own-number volunteer is called from.
    caller_id_number: str
    timeout_ms: int


def power_join_channel(session_id: int, join_context: str) -> str:
    """The volunteer leg of a power session's call: a Local channel whose
    other half joins the session's conference (``dialer-power-join``).

    ``/n``: the Local channel stays in place, so the leg the tracker follows
    lives as long as the call."""
    return f"Local/{session_id}@{join_context}/n"


@dataclass(frozen=True, slots=True)
class SessionLegUpdate:
    """The volunteer's leg of a power session came up, or went.

    ``up`` False with ``answered_at`` None: the phone was never answered.
    """

    session_id: int
    up: bool
    at: datetime
    channel: str | None = None
    answered_at: datetime | None = None
    # The Q.850 cause of the hang-up, or why the Originate failed.
    reason: str | None = None


class PbxError(Exception):
    """Base of everything the PBX side raises to the service."""


class PbxUnavailable(PbxError):
    """Not connected: the action was not sent at all."""


class OriginateRejected(PbxError):
    """The PBX answered the Originate with an error; nothing is ringing."""


class OriginateOutcomeUnknown(PbxError):
    """The connection dropped after the Originate was written.

    It may or may not be ringing; it must not be sent again.  The resync
    after the reconnect tells.
    """


class PbxPort(Protocol):
    @property
    def connected(self) -> bool: ...

    async def originate(self, request: OriginateRequest) -> None: ...


HangupBy = Literal["operator", "volunteer"]


class CallSnapshot(Protocol):
    """One tracked call right after it changed (ami_bridge's CallUpdate)."""

    @property
    def call_id(self) -> str: ...
    @property
    def at(self) -> datetime:
        """When the AMI news behind this update arrived."""

    @property
    def state(self) -> CallState: ...
    @property
    def outcome(self) -> CallOutcome | None: ...
    @property
    def failure_reason(self) -> str | None: ...
    @property
    def discovered(self) -> bool: ...
    @property
    def volunteer_channel(self) -> str | None: ...
    @property
    def volunteer_uniqueid(self) -> str | None: ...
    @property
    def contact_channel(self) -> str | None: ...
    @property
    def contact_uniqueid(self) -> str | None: ...
    @property
    def linkedid(self) -> str | None: ...
    @property
    def volunteer_answered_at(self) -> datetime | None: ...
    @property
    def contact_answered_at(self) -> datetime | None: ...
    @property
    def ended_at(self) -> datetime | None: ...
    @property
    def dial_status(self) -> str | None: ...
    @property
    def volunteer_hangup_cause(self) -> int | None: ...
    @property
    def contact_hangup_cause(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class AnsweredTimes:
    """When each leg of a call was answered, as stored before a restart."""

    volunteer_answered_at: datetime | None = None
    contact_answered_at: datetime | None = None


class CallPbx(PbxPort, Protocol):
    """A PBX link that also follows the calls it placed."""

    async def start(self) -> None:
        """Connect (and keep reconnecting) in the background."""

    def track(
        self,
        call_id: str,
        *,
        volunteer_channel: str,
        contact_number: str,
        at: datetime,
        known: AnsweredTimes | None = None,
    ) -> None:
        """Follow a call placed before a restart, so the resync can settle it.

        ``known`` carries the answer times already stored for it: what was
        seen as it happened is kept, never replaced by the resync's guess.
        """

    async def hangup_call(self, call_id: str, by: HangupBy) -> bool:
        """Hang up the live call; False when it has no channel to hang up (yet)."""

    async def spy_on_call(self, request: SpyRequest) -> SpyStart:
        """Ring the organizer into the live call, once: see :data:`SpyStart`.
        Raises :class:`PbxUnavailable` or :class:`OriginateRejected` as
        :meth:`originate` does."""

    def updates(self) -> AsyncIterator[CallSnapshot]:
        """Every change of every call, in the order the PBX reported them."""

    async def ring_session(self, request: SessionLegRequest) -> None:
        """Call the volunteer's phone into their power session's conference.

        Raises :class:`PbxUnavailable`, :class:`OriginateRejected` or
        :class:`OriginateOutcomeUnknown` as :meth:`originate` does; what
        happens next comes through :meth:`leg_updates`."""

    def track_session(self, session_id: int, *, up: bool) -> None:
        """Follow a session leg placed before a restart (the resync settles it)."""

    async def hangup_session(self, session_id: int) -> bool:
        """Hang the volunteer's session leg up; False when it has none (any more)."""

    def leg_updates(self) -> AsyncIterator[SessionLegUpdate]:
        """Every session leg coming up or going, in the order the PBX reported them."""
