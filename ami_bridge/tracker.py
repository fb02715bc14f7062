"""Call tracker: the ordered AMI stream in, the lifecycle of each click-to-call out.

Pure: no asyncio, no I/O, no clock.  Every time comes from the stream items'
``at``, so a recording replays to the same result on any machine.

Two layers:

* :func:`decide` is the state machine proper, a transition table in the
  style of h11's ``_state.py``: ``(state, trigger) -> (new state, commands)``.
  Anything the table does not allow (a duplicate, an event arriving after a
  later one, anything after the end) leaves the state as it is and is logged.
* :class:`CallTracker` turns AMI events into triggers and facts (channels,
  dial status, hangup causes...), applies :func:`decide`, runs the commands
  it returns through a dispatch table, and hands back a :class:`CallUpdate`
  snapshot each time a call changes state.

Every rule the state of a call takes part in lives in the call-flow table
section just below the imports: :data:`TRANSITIONS` and :data:`COMMANDS`
for where triggers lead and what they do, :data:`STATE_RULES` for what each
state means elsewhere (whose outcome an end decides, whether the volunteer
hanging up counts as giving up on the contact, what a resync's listing
dates, whether the call is over), and :data:`TRIGGER_FOR_STATE` for how a
resync brings a call to the state Asterisk lists it in.  The handlers never
compare states themselves; they look the answer up there.

How the legs of a call are recognised (see tests/fixtures/ami/README.md):

* the Originate carries ``ChannelId: <call id>-v``, which becomes the
  volunteer leg's ``Uniqueid`` *and* the ``Linkedid`` of every channel of the
  call, so a ``Newchannel`` whose Uniqueid ends in ``-v`` opens (or, for a
  call we were never told about, discovers) the call;
* the contact leg is the ``DestChannel`` of the ``DialBegin`` whose
  ``Uniqueid`` is the volunteer leg: a ``PJSIP/<trunk>-...`` channel, or the
  ``;1`` half of a ``Local/...`` channel whose ``;2`` half is just another
  channel with the same Linkedid;
* a volunteer whose phone is their own number has a Local volunteer leg
  (``Local/<number>@dialer-outbound/n``): its ``;1`` half is the ``-v``
  leg, its ``;2`` half (``-o``, the OtherChannelId) dials their phone over
  the trunk; those two channels are the volunteer's side, never the
  contact's (``shipped_own_number_*`` recordings);
* ``OriginateResponse`` carries the Originate's ``ActionID`` (the call id in
  production) and the volunteer leg's Uniqueid, or ``<unknown>`` when no
  channel could be made at all.

What moves a call on (all seen in the recordings):

* ringing_volunteer: ``Newstate`` ChannelState 5 on the volunteer leg.  A
  phone whose SIP contact is unreachable never gets there;
* volunteer_answered: ``Newstate`` ChannelState 6 on that leg (or
  ``OriginateResponse`` Reason 4, or the Originate's own ``DialEnd`` ANSWER,
  whichever comes first);
* ringing_contact: ``DialBegin`` from the volunteer leg;
* talking: that dial's ``DialEnd`` with DialStatus ANSWER;
* ended: once the volunteer leg and the contact leg have both had their
  ``Hangup`` (a Local ``;2`` half may linger and is not waited for), or an
  ``OriginateResponse`` Failure with no channel left, or ``Response: Error``
  to the Originate, or a resync that no longer lists the call.

How it ended (:func:`_classify`): DialStatus BUSY / CONGESTION / NOANSWER /
CHANUNAVAIL / CANCEL name the contact outcome, except that a rejection
reaches Dial() as NOANSWER and only the hangup cause (21) tells; a Local
``;1`` half reports cause 0, so its ``;2`` half's cause is used instead.  On
the volunteer side, OriginateResponse Reason 3 (no answer) and cause 19
mean *unreachable* unless the phone did ring.  ``SoftHangupRequest`` with
Cause 4 (a soft-hangup flag: shutdown, not a Q.850 cause) on a call's
channels, or a ``Shutdown`` event while it is up, makes it FAILED.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Literal

from ami_bridge.codec import Message
from ami_bridge.stream import ConnectionLost, Received, Resynced, StreamItem
from dialer.domain.vocabulary import CallOutcome, CallState

log = logging.getLogger(__name__)


def _log(level: int, message: str, call_id: str, *args: object) -> None:
    """Log about one call: ``call_id`` is the message's first argument and its ``extra``."""
    log.log(level, message, call_id, *args, extra={"call_id": call_id})


HangupRequester = Literal["operator", "volunteer"]


# =============================================================================
# The call-flow table
#
# Every rule in which the state of a call takes part lives in this section, as
# data: which trigger moves a call from which state to which, what is done to
# the call record on the way, and what each state means for the rest of the
# tracker (whose outcome an end decides, whether a hang-up counts as the
# volunteer giving up, what a resync's listing dates, whether it is over).
# Below it, the handlers only turn AMI messages into triggers and facts and
# look the rest up here, so the call flow can be read, and tested, in one place.
# =============================================================================


class Trigger(Enum):
    """What the tracker learned about a call, in domain terms."""

    VOLUNTEER_RINGING = "volunteer_ringing"
    VOLUNTEER_ANSWERED = "volunteer_answered"
    CONTACT_RINGING = "contact_ringing"
    CONTACT_ANSWERED = "contact_answered"
    ENDED = "ended"


class Command(Enum):
    """What the tracker must do to the call record after a transition."""

    STAMP_VOLUNTEER_RINGING = "stamp_volunteer_ringing"
    STAMP_VOLUNTEER_ANSWERED = "stamp_volunteer_answered"
    STAMP_CONTACT_RINGING = "stamp_contact_ringing"
    STAMP_CONTACT_ANSWERED = "stamp_contact_answered"
    FINISH = "finish"


_S = CallState
_T = Trigger

# Each state lists the triggers it accepts.  Later states can be reached
# directly from earlier ones because a step can go unseen: a phone that
# answers without ringing first, or events missed while the AMI connection
# was down and recovered by a resync.  Nothing ever goes backwards.
TRANSITIONS: Mapping[CallState, Mapping[Trigger, CallState]] = {
    _S.REQUESTED: {
        _T.VOLUNTEER_RINGING: _S.RINGING_VOLUNTEER,
        _T.VOLUNTEER_ANSWERED: _S.VOLUNTEER_ANSWERED,
        _T.CONTACT_RINGING: _S.RINGING_CONTACT,
        _T.CONTACT_ANSWERED: _S.TALKING,
        _T.ENDED: _S.ENDED,
    },
    _S.RINGING_VOLUNTEER: {
        _T.VOLUNTEER_ANSWERED: _S.VOLUNTEER_ANSWERED,
        _T.CONTACT_RINGING: _S.RINGING_CONTACT,
        _T.CONTACT_ANSWERED: _S.TALKING,
        _T.ENDED: _S.ENDED,
    },
    _S.VOLUNTEER_ANSWERED: {
        _T.CONTACT_RINGING: _S.RINGING_CONTACT,
        _T.CONTACT_ANSWERED: _S.TALKING,
        _T.ENDED: _S.ENDED,
    },
    _S.RINGING_CONTACT: {
        _T.CONTACT_ANSWERED: _S.TALKING,
        _T.ENDED: _S.ENDED,
    },
    _S.TALKING: {
        _T.ENDED: _S.ENDED,
    },
    _S.ENDED: {},
}

# What an allowed transition does, by the trigger that made it.  A step is
# stamped once: the first time for it stands (one kept from before a
# restart, or one read off the channels in a resync).
COMMANDS: Mapping[Trigger, tuple[Command, ...]] = {
    _T.VOLUNTEER_RINGING: (Command.STAMP_VOLUNTEER_RINGING,),
    _T.VOLUNTEER_ANSWERED: (Command.STAMP_VOLUNTEER_ANSWERED,),
    _T.CONTACT_RINGING: (Command.STAMP_CONTACT_RINGING,),
    _T.CONTACT_ANSWERED: (Command.STAMP_CONTACT_ANSWERED,),
    _T.ENDED: (Command.FINISH,),
}

_NO_COMMANDS: tuple[Command, ...] = ()


def decide(state: CallState, trigger: Trigger) -> tuple[CallState, tuple[Command, ...]]:
    """The transition for ``trigger`` in ``state``.

    A trigger the table does not allow returns ``(state, ())``: the caller
    logs it and carries on, because duplicates and late events are normal
    on AMI (an ``OriginateResponse`` confirming an answer already seen, a
    hangup racing a resync).
    """
    new_state = TRANSITIONS.get(state, {}).get(trigger)
    if new_state is None:
        return state, _NO_COMMANDS
    return new_state, COMMANDS.get(trigger, _NO_COMMANDS)


class Stake(Enum):
    """Whose doing an end is judged by, given how far the call had got."""

    # The volunteer's phone never answered: busy, declined, unreachable...
    VOLUNTEER = "volunteer"
    # The volunteer answered: Dial() and the contact's leg tell the rest.
    CONTACT = "contact"
    # Both were on the line: the call completed, whoever hung up.
    CONVERSATION = "conversation"


@dataclass(frozen=True, slots=True)
class StateRules:
    """What a state means to the tracker, apart from where triggers lead."""

    # Whose outcome an end in this state decides (see _classify).  None: the
    # call was judged on its way into this state.
    at_stake: Stake | None
    # A HangupRequest from the volunteer's own phone, before Dial() reports
    # anything, is the volunteer giving up on a contact who has not answered
    # (HUNG_UP_BY_VOLUNTEER rather than a contact outcome).  Before the answer
    # the volunteer leg's cause says it all; while talking, the call completed.
    volunteer_hangup_gives_up: bool
    # For a call a resync shows for the first time in this state: the step
    # its contact leg's creation (CoreShowChannel Duration) dates.
    listing_dates_contact_step: Command | None
    # No trigger moves the call on: it is forgotten, bar the short memory of
    # recent ends.
    final: bool


STATE_RULES: Mapping[CallState, StateRules] = {
    _S.REQUESTED: StateRules(
        at_stake=Stake.VOLUNTEER,
        volunteer_hangup_gives_up=False,
        listing_dates_contact_step=None,
        final=False,
    ),
    _S.RINGING_VOLUNTEER: StateRules(
        at_stake=Stake.VOLUNTEER,
        volunteer_hangup_gives_up=False,
        listing_dates_contact_step=None,
        final=False,
    ),
    _S.VOLUNTEER_ANSWERED: StateRules(
        at_stake=Stake.CONTACT,
        volunteer_hangup_gives_up=True,
        listing_dates_contact_step=None,
        final=False,
    ),
    _S.RINGING_CONTACT: StateRules(
        at_stake=Stake.CONTACT,
        volunteer_hangup_gives_up=True,
        listing_dates_contact_step=Command.STAMP_CONTACT_RINGING,
        final=False,
    ),
    _S.TALKING: StateRules(
        at_stake=Stake.CONVERSATION,
        volunteer_hangup_gives_up=False,
        # How long it rang before the answer is unknown: no ringing time then.
        listing_dates_contact_step=Command.STAMP_CONTACT_ANSWERED,
        final=False,
    ),
    _S.ENDED: StateRules(
        at_stake=None,
        volunteer_hangup_gives_up=False,
        listing_dates_contact_step=None,
        final=True,
    ),
}

# The trigger that brings a call to a state a resync's listing shows it in.
TRIGGER_FOR_STATE: Mapping[CallState, Trigger] = {
    _S.RINGING_VOLUNTEER: _T.VOLUNTEER_RINGING,
    _S.VOLUNTEER_ANSWERED: _T.VOLUNTEER_ANSWERED,
    _S.RINGING_CONTACT: _T.CONTACT_RINGING,
    _S.TALKING: _T.CONTACT_ANSWERED,
}

# ====================================================== end of the call-flow table


# ChannelState values (Asterisk's ast_channel_state).
_RINGING_STATES = frozenset({"4", "5"})  # Ring, Ringing
_UP = "6"

# What the volunteer leg's ChannelState (Newchannel, Newstate, VarSet) says.
_VOLUNTEER_LEG_TRIGGERS: Mapping[str, Trigger] = {
    **dict.fromkeys(_RINGING_STATES, Trigger.VOLUNTEER_RINGING),
    _UP: Trigger.VOLUNTEER_ANSWERED,
}

# SoftHangupRequest's Cause is a soft-hangup flag, not a Q.850 cause:
# AST_SOFTHANGUP_SHUTDOWN.  The restart recording shows it on every channel.
_SOFTHANGUP_SHUTDOWN = "4"

# OriginateResponse Reason values (Asterisk's AST_CONTROL_* frame types).
_REASON_FAILURE = 0
_REASON_HANGUP = 1
_REASON_RING_TIMEOUT = 3
_REASON_ANSWERED = 4
_REASON_BUSY = 5
_REASON_CONGESTION = 8

# Q.850 hangup causes, grouped by what they mean for a phone bank.
_CAUSE_BUSY = frozenset({17})
_CAUSE_REJECTED = 21
_CAUSE_NO_ANSWER = frozenset({18, 19})
_CAUSE_CONGESTION = frozenset({34, 38, 41, 42, 44, 47})
_CAUSE_UNREACHABLE = frozenset({1, 2, 3, 20, 22, 27, 28})

_DIAL_STATUS_OUTCOME: Mapping[str, CallOutcome] = {
    "BUSY": CallOutcome.CONTACT_BUSY,
    "CONGESTION": CallOutcome.CONTACT_CONGESTION,
    "NOANSWER": CallOutcome.CONTACT_NO_ANSWER,
    "CHANUNAVAIL": CallOutcome.CONTACT_UNREACHABLE,
}

# How many ended calls stay answerable by get() and recognisable as "already
# ended" when a straggling event names them.
_RECENTLY_ENDED = 1024
_EPOCH = datetime.fromtimestamp(0, UTC)


@dataclass(frozen=True)
class CallUpdate:
    """A snapshot of one call, taken right after it changed state.

    Times are the ``at`` of the stream item that revealed them; ``None``
    means "not reached" or "not seen".  ``contact_hangup_cause`` is the
    contact leg's cause, or, when that says nothing (0, as a ``Local/...;1``
    half reports), the first informative cause of another contact-side
    channel (its ``;2`` half).
    """

    call_id: str
    state: CallState
    previous_state: CallState | None
    at: datetime
    outcome: CallOutcome | None
    failure_reason: str | None
    # True for a call the tracker found on AMI without register() (replays,
    # a worker that lost its memory): the service may have no row for it.
    discovered: bool
    contact_number: str | None
    # What register() was given (e.g. "PJSIP/1001"), not a channel name.
    volunteer_endpoint: str | None
    volunteer_channel: str | None
    volunteer_uniqueid: str | None
    contact_channel: str | None
    contact_uniqueid: str | None
    linkedid: str | None
    bridge_id: str | None
    requested_at: datetime | None
    volunteer_ringing_at: datetime | None
    volunteer_answered_at: datetime | None
    contact_ringing_at: datetime | None
    contact_answered_at: datetime | None
    ended_at: datetime | None
    ring_seconds: float | None
    talk_seconds: float | None
    dial_status: str | None
    volunteer_hangup_cause: int | None
    volunteer_hangup_cause_text: str | None
    contact_hangup_cause: int | None
    contact_hangup_cause_text: str | None
    originate_response: str | None
    originate_reason: int | None
    hangup_requested_by: HangupRequester | None

    @property
    def ended(self) -> bool:
        return STATE_RULES[self.state].final

    @property
    def state_changed(self) -> bool:
        return self.state is not self.previous_state


_new_object = object.__new__
_set_attribute = object.__setattr__


def _make_update(values: dict[str, Any]) -> CallUpdate:
    """A CallUpdate from a dict of all its fields, at half the cost of __init__.

    A frozen dataclass's __init__ pays an object.__setattr__ call per field
    (33 here) and the tracker takes a snapshot at every transition; setting
    the instance dict in one go gives the very same object.
    """
    update = _new_object(CallUpdate)
    _set_attribute(update, "__dict__", values)
    return update


@dataclass(slots=True, eq=False)
class _Call:
    call_id: str
    discovered: bool
    # Known to the tracker only from its id (a restart, or AMI naming it): no
    # event of it seen yet, so a resync's listing is the best news of its past.
    unwatched: bool = False
    state: CallState = CallState.REQUESTED
    # The state in the last CallUpdate handed out (previous_state of the next).
    reported_state: CallState | None = None
    reported_at: datetime | None = None
    action_id: str | None = None
    volunteer_endpoint: str | None = None
    contact_number: str | None = None
    volunteer_channel: str | None = None
    volunteer_uniqueid: str | None = None
    contact_channel: str | None = None
    contact_uniqueid: str | None = None
    linkedid: str | None = None
    bridge_id: str | None = None
    requested_at: datetime | None = None
    volunteer_ringing_at: datetime | None = None
    volunteer_answered_at: datetime | None = None
    contact_ringing_at: datetime | None = None
    contact_answered_at: datetime | None = None
    contact_dial_ended_at: datetime | None = None
    ended_at: datetime | None = None
    last_hangup_at: datetime | None = None
    dial_status: str | None = None
    volunteer_dial_status: str | None = None
    volunteer_cause: int | None = None
    volunteer_cause_text: str | None = None
    contact_cause: int | None = None
    contact_cause_text: str | None = None
    other_cause: int | None = None
    other_cause_text: str | None = None
    # The volunteer's side of an own-number call: the "-o" half of the Local
    # volunteer leg and the trunk channel it dials (their phone), whose causes
    # say nothing of the contact.
    volunteer_side: set[str] = field(default_factory=set)
    originate_response: str | None = None
    originate_reason: int | None = None
    originate_error: str | None = None
    outcome: CallOutcome | None = None
    failure_reason: str | None = None
    hangup_requested_by: HangupRequester | None = None
    # The volunteer's phone hung up (HangupRequest) before the contact answered
    # and before Dial() reported anything.
    volunteer_hung_up_early: bool = False
    pbx_shutdown: bool = False
    lost: bool = False
    # Connection number on which the last AMI event about this call arrived.
    seen_on: int = -1
    # Uniqueid -> channel name, for every channel of the call.
    channels: dict[str, str] = field(default_factory=dict)
    # Uniqueids not hung up yet.
    live: set[str] = field(default_factory=set)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


_Handler = Callable[[Message, datetime], "_Call | None"]
_CommandRunner = Callable[["_Call", datetime], None]


class CallTracker:
    """Follows every click-to-call through the AMI stream.

    Feed it the stream items in order; each call returns the
    :class:`CallUpdate` snapshots of the calls whose state changed (facts
    learned between two transitions, such as a bridge id or a leg's hangup
    cause, ride along on the next one).  A call is forgotten once ended,
    apart from a short memory of recent ends.
    """

    def __init__(self) -> None:
        self._calls: dict[str, _Call] = {}
        self._by_uniqueid: dict[str, _Call] = {}
        self._by_linkedid: dict[str, _Call] = {}
        self._by_action_id: dict[str, _Call] = {}
        self._ended: OrderedDict[str, CallUpdate] = OrderedDict()
        # Registered calls whose volunteer leg has not been seen yet.
        self._unbound: set[str] = set()
        self._connection = 0
        # The connection whose resync was the last one, and the calls it listed.
        self._synced_on = -1
        self._listed: frozenset[str] = frozenset()
        # VarSet (40% of all events) is only dispatched while _unbound is not
        # empty; see _waiting_for_channel.
        self._handlers: dict[str, _Handler] = {
            "Newchannel": self._on_newchannel,
            "Newstate": self._on_newstate,
            "DialBegin": self._on_dial_begin,
            "DialEnd": self._on_dial_end,
            "BridgeEnter": self._on_bridge_enter,
            "HangupRequest": self._on_hangup_request,
            "SoftHangupRequest": self._on_soft_hangup_request,
            "Hangup": self._on_hangup,
            "OriginateResponse": self._on_originate_response,
            "Shutdown": self._on_shutdown,
        }
        self._commands: dict[Command, _CommandRunner] = {
            Command.STAMP_VOLUNTEER_RINGING: self._stamp_volunteer_ringing,
            Command.STAMP_VOLUNTEER_ANSWERED: self._stamp_volunteer_answered,
            Command.STAMP_CONTACT_RINGING: self._stamp_contact_ringing,
            Command.STAMP_CONTACT_ANSWERED: self._stamp_contact_answered,
            Command.FINISH: self._finish,
        }

    # ----------------------------------------------------------------- API

    def register(
        self,
        call_id: str,
        *,
        volunteer_channel: str,
        contact_number: str,
        at: datetime,
        action_id: str | None = None,
        resumed: bool = False,
        volunteer_answered_at: datetime | None = None,
        contact_answered_at: datetime | None = None,
    ) -> list[CallUpdate]:
        """Start tracking a call whose Originate is being sent.

        ``volunteer_channel`` is the Originate's ``Channel`` (an endpoint such
        as ``PJSIP/1001``); ``action_id`` defaults to the call id, which is
        what production sends.  Registering a call AMI already showed fills
        in what was missing.

        ``resumed=True`` hands back a call a previous worker persisted as
        live: if this connection's resync has already happened and did not
        list it, it ended unseen and is ended as LOST at once; otherwise the
        next resync re-attaches it or ends it.  A fresh call must not be
        registered between a reconnect and its resync (the AMI client sends
        no action then anyway): a listing taken before its channel exists
        would end it.  The answer times it had are given back with it: a
        time seen as it happened is never replaced by what a resync guesses.
        """
        if call_id in self._ended:
            _log(logging.WARNING, "register(%s): this call has already ended; ignored", call_id)
            return []
        call = self._calls.get(call_id)
        if call is None:
            call = _Call(call_id=call_id, discovered=False, unwatched=resumed)
            call.volunteer_answered_at = volunteer_answered_at
            call.contact_answered_at = contact_answered_at
            self._calls[call_id] = call
            if resumed and self._synced_on == self._connection and call_id not in self._listed:
                call.volunteer_endpoint = volunteer_channel
                call.contact_number = contact_number
                call.requested_at = at
                self._end_unlisted(call, at)
                return [self._snapshot(call, at)]
        call.discovered = False
        if call.volunteer_uniqueid is None:
            self._waiting_for_channel(call_id, True)
        call.volunteer_endpoint = volunteer_channel
        call.contact_number = contact_number
        if call.requested_at is None:
            call.requested_at = at
        action = action_id if action_id is not None else call_id
        call.action_id = action
        self._by_action_id[action] = call
        return [self._snapshot(call, at)]

    def note_hangup_requested(
        self, call_id: str, *, by: HangupRequester, at: datetime
    ) -> list[CallUpdate]:
        """Record that we are sending a Hangup for this call, and for whom.

        The hangup itself is seen later, as events; this only tells the
        tracker who to blame.  The first request wins.
        """
        if by not in ("operator", "volunteer"):
            _log(logging.WARNING, "note_hangup_requested(%s): unknown requester %r", call_id, by)
            return []
        call = self._calls.get(call_id)
        if call is None:
            _log(logging.INFO, "note_hangup_requested(%s): not a live call; ignored", call_id)
            return []
        if call.hangup_requested_by is not None:
            return []
        call.hangup_requested_by = by
        return [self._snapshot(call, at)]

    def note_originate_error(self, call_id: str, *, message: str, at: datetime) -> list[CallUpdate]:
        """The Originate got ``Response: Error``: no channel will ever come."""
        call = self._calls.get(call_id)
        if call is None:
            _log(logging.INFO, "note_originate_error(%s): not a live call; ignored", call_id)
            return []
        return [self._snapshot(call, at)] if self._refuse(call, message, at) else []

    def feed(self, item: StreamItem) -> list[CallUpdate]:
        """Apply one stream item; return a snapshot of each call that changed."""
        if type(item) is Received:
            message = item.message
            name = message.event
            handler = self._handlers.get(name) if name is not None else self._on_response
            if handler is None:
                return []
            try:
                call = handler(message, item.at)
            except Exception:
                # A tracker bug must not stop the stream of every other call.
                log.exception("tracker failed on %s; ignored", name or "a response")
                return []
            if call is None:
                return []
            return [self._snapshot(call, item.at)]
        if isinstance(item, ConnectionLost):
            # Calls go on in Asterisk without us; only a resync can say.
            self._connection += 1
            return []
        if isinstance(item, Resynced):
            return self._resync(item)
        log.warning("unknown stream item %r; ignored", item)
        return []

    def get(self, call_id: str) -> CallUpdate | None:
        """A fresh snapshot of a live call, or the last one of a recent end."""
        call = self._calls.get(call_id)
        if call is not None:
            return self._view(call, call.state, call.reported_at or _EPOCH)
        return self._ended.get(call_id)

    def live_calls(self) -> list[CallUpdate]:
        return [
            self._view(call, call.state, call.reported_at or _EPOCH)
            for call in self._calls.values()
        ]

    def call_id_for_channel(self, channel: str) -> str | None:
        """The live call owning a channel name (to attribute a Hangup we send)."""
        for call in self._calls.values():
            if channel in call.channels.values():
                return call.call_id
        return None

    # ------------------------------------------------------------ plumbing

    def _apply(self, call: _Call, trigger: Trigger, at: datetime) -> bool:
        new_state, commands = decide(call.state, trigger)
        if not commands:
            _log(
                logging.DEBUG,
                "call %s: %s ignored in state %s",
                call.call_id,
                trigger.value,
                call.state,
            )
            return False
        call.state = new_state
        for command in commands:
            self._run(command, call, at)
        return True

    def _run(self, command: Command, call: _Call, at: datetime) -> None:
        run = self._commands.get(command)
        if run is None:
            _log(logging.WARNING, "call %s: no way to run %s; ignored", call.call_id, command.value)
            return
        run(call, at)

    # A step happens once: the first time stamped for it stands (one kept
    # from before a restart, or one read off the channels in a resync).

    @staticmethod
    def _stamp_volunteer_ringing(call: _Call, at: datetime) -> None:
        call.volunteer_ringing_at = call.volunteer_ringing_at or at

    @staticmethod
    def _stamp_volunteer_answered(call: _Call, at: datetime) -> None:
        call.volunteer_answered_at = call.volunteer_answered_at or at

    @staticmethod
    def _stamp_contact_ringing(call: _Call, at: datetime) -> None:
        call.contact_ringing_at = call.contact_ringing_at or at

    @staticmethod
    def _stamp_contact_answered(call: _Call, at: datetime) -> None:
        call.contact_answered_at = call.contact_answered_at or at

    def _end(self, call: _Call, at: datetime) -> bool:
        # Classify before the state moves on: the outcome depends on how far
        # the call got.
        call.outcome, call.failure_reason = _classify(call)
        return self._apply(call, Trigger.ENDED, at)

    def _finish(self, call: _Call, at: datetime) -> None:
        call.ended_at = at
        if call.outcome is None:
            call.outcome, call.failure_reason = _classify(call)
        self._forget(call)

    def _forget(self, call: _Call) -> None:
        self._calls.pop(call.call_id, None)
        self._waiting_for_channel(call.call_id, False)
        for uniqueid in call.channels:
            if self._by_uniqueid.get(uniqueid) is call:
                del self._by_uniqueid[uniqueid]
        if call.linkedid is not None and self._by_linkedid.get(call.linkedid) is call:
            del self._by_linkedid[call.linkedid]
        if call.action_id is not None and self._by_action_id.get(call.action_id) is call:
            del self._by_action_id[call.action_id]

    def _snapshot(self, call: _Call, at: datetime) -> CallUpdate:
        update = self._view(call, call.reported_state, at)
        call.reported_state = call.state
        call.reported_at = at
        if STATE_RULES[call.state].final:
            self._ended[call.call_id] = update
            if len(self._ended) > _RECENTLY_ENDED:
                self._ended.popitem(last=False)
        return update

    def _view(self, call: _Call, previous: CallState | None, at: datetime) -> CallUpdate:
        ended_at = call.ended_at
        ring_end = call.contact_answered_at or call.contact_dial_ended_at or ended_at
        contact_cause = call.contact_cause
        contact_cause_text = call.contact_cause_text
        if not contact_cause and call.other_cause:
            contact_cause = call.other_cause
            contact_cause_text = call.other_cause_text
        return _make_update(
            {
                "call_id": call.call_id,
                "state": call.state,
                "previous_state": previous,
                "at": at,
                "outcome": call.outcome,
                "failure_reason": call.failure_reason,
                "discovered": call.discovered,
                "contact_number": call.contact_number,
                "volunteer_endpoint": call.volunteer_endpoint,
                "volunteer_channel": call.volunteer_channel,
                "volunteer_uniqueid": call.volunteer_uniqueid,
                "contact_channel": call.contact_channel,
                "contact_uniqueid": call.contact_uniqueid,
                "linkedid": call.linkedid,
                "bridge_id": call.bridge_id,
                "requested_at": call.requested_at,
                "volunteer_ringing_at": call.volunteer_ringing_at,
                "volunteer_answered_at": call.volunteer_answered_at,
                "contact_ringing_at": call.contact_ringing_at,
                "contact_answered_at": call.contact_answered_at,
                "ended_at": ended_at,
                "ring_seconds": _seconds(call.contact_ringing_at, ring_end),
                # A lost call's end is only when we noticed, not when it hung up.
                "talk_seconds": None if call.lost else _seconds(call.contact_answered_at, ended_at),
                "dial_status": call.dial_status,
                "volunteer_hangup_cause": call.volunteer_cause,
                "volunteer_hangup_cause_text": call.volunteer_cause_text,
                "contact_hangup_cause": contact_cause,
                "contact_hangup_cause_text": contact_cause_text,
                "originate_response": call.originate_response,
                "originate_reason": call.originate_reason,
                "hangup_requested_by": call.hangup_requested_by,
            }
        )

    def _discover(self, call_id: str) -> _Call | None:
        if call_id in self._ended:
            _log(logging.DEBUG, "call %s: event after its end; ignored", call_id)
            return None
        _log(logging.INFO, "call %s: not registered, discovered on AMI", call_id)
        call = _Call(call_id=call_id, discovered=True, unwatched=True)
        self._calls[call_id] = call
        return call

    def _add_channel(self, call: _Call, uniqueid: str, channel: str | None) -> None:
        if channel:
            call.channels[uniqueid] = channel
        else:
            call.channels.setdefault(uniqueid, "")
        call.live.add(uniqueid)
        self._by_uniqueid[uniqueid] = call

    def _bind_volunteer(self, call: _Call, message: Message) -> None:
        uniqueid = message.header("Uniqueid") or ""
        self._waiting_for_channel(call.call_id, False)
        call.volunteer_uniqueid = uniqueid
        call.volunteer_channel = message.header("Channel") or call.volunteer_channel
        linkedid = message.header("Linkedid") or uniqueid
        call.linkedid = linkedid
        self._by_linkedid[linkedid] = call
        self._add_channel(call, uniqueid, call.volunteer_channel)

    def _waiting_for_channel(self, call_id: str, waiting: bool) -> None:
        # Reading VarSet DIALER_CALL_ID only helps a registered call whose
        # channel has not shown up; the rest of the time the VarSet flood
        # is not even dispatched.
        if waiting:
            self._unbound.add(call_id)
            self._handlers["VarSet"] = self._on_varset
        elif call_id in self._unbound:
            self._unbound.discard(call_id)
            if not self._unbound:
                self._handlers.pop("VarSet", None)

    def _legs_gone(self, call: _Call) -> bool:
        live = call.live
        return (call.volunteer_uniqueid is None or call.volunteer_uniqueid not in live) and (
            call.contact_uniqueid is None or call.contact_uniqueid not in live
        )

    def _refuse(self, call: _Call, message: str, at: datetime) -> bool:
        if call.volunteer_uniqueid is not None:
            _log(
                logging.INFO,
                "call %s: Originate error after its channel appeared; ignored",
                call.call_id,
            )
            return False
        call.originate_error = message or "no reason given"
        return self._end(call, at)

    # ------------------------------------------------------------ handlers
    #
    # Handlers read headers with Message.header: on a decoded message it finds
    # just that header in the text, far cheaper than parsing all twenty.

    def _on_response(self, message: Message, at: datetime) -> _Call | None:
        # Only an Originate refused outright (Response: Error) matters here;
        # every other response belongs to whoever sent the action.
        if message.response != "Error":
            return None
        action_id = message.action_id
        call = self._by_action_id.get(action_id) if action_id is not None else None
        if call is None:
            return None
        return call if self._refuse(call, message.header("Message") or "", at) else None

    def _on_newchannel(self, message: Message, at: datetime) -> _Call | None:
        uniqueid = message.header("Uniqueid")
        if not uniqueid:
            return None
        if uniqueid.endswith("-v") and len(uniqueid) > 2:
            call_id = uniqueid[:-2]
            known = self._calls.get(call_id)
            call = known if known is not None else self._discover(call_id)
            if call is None:
                return None
            call.seen_on = self._connection
            if call.volunteer_uniqueid == uniqueid:
                _log(logging.DEBUG, "call %s: duplicate Newchannel; ignored", call_id)
                return None
            self._bind_volunteer(call, message)
            trigger = _VOLUNTEER_LEG_TRIGGERS.get(message.header("ChannelState") or "")
            if trigger is not None:
                self._apply(call, trigger, at)
            return call
        # Every other channel of a call shares its Linkedid: the contact leg
        # (named later by DialBegin), a Local channel's ;2 half, or the ;2 of
        # a Local volunteer leg (its Uniqueid is the OtherChannelId, "-o").
        linkedid = message.header("Linkedid")
        call = self._by_linkedid.get(linkedid) if linkedid else None
        if call is None and uniqueid.endswith("-o"):
            call = self._calls.get(uniqueid[:-2])
        if call is not None:
            call.seen_on = self._connection
            self._add_channel(call, uniqueid, message.header("Channel"))
            if uniqueid == f"{call.call_id}-o":
                # Only a Local volunteer leg has a ;2 half, and it is the
                # volunteer's side whatever it runs (their own number, a power
                # session's conference): its cause never speaks for the contact.
                call.volunteer_side.add(uniqueid)
        return None

    def _on_varset(self, message: Message, at: datetime) -> _Call | None:
        # The fallback for an Originate sent without ChannelId: the variable
        # we set names the call.
        if message.header("Variable") != "DIALER_CALL_ID":
            return None
        call = self._calls.get(message.header("Value") or "")
        if call is None or call.volunteer_uniqueid is not None or not message.header("Uniqueid"):
            return None
        call.seen_on = self._connection
        self._bind_volunteer(call, message)
        trigger = _VOLUNTEER_LEG_TRIGGERS.get(message.header("ChannelState") or "")
        if trigger is not None:
            self._apply(call, trigger, at)
        return call

    def _on_newstate(self, message: Message, at: datetime) -> _Call | None:
        uniqueid = message.header("Uniqueid") or ""
        call = self._by_uniqueid.get(uniqueid)
        if call is None:
            return None
        call.seen_on = self._connection
        if uniqueid != call.volunteer_uniqueid:
            # The contact's answer is taken from DialEnd, which says ANSWER
            # only for the leg Dial() actually connected.
            return None
        trigger = _VOLUNTEER_LEG_TRIGGERS.get(message.header("ChannelState") or "")
        if trigger is None:
            return None
        return call if self._apply(call, trigger, at) else None

    def _on_dial_begin(self, message: Message, at: datetime) -> _Call | None:
        source = message.header("Uniqueid")
        if source is None:
            # The Originate dialling the volunteer: ringing shows in Newstate.
            return None
        call = self._by_uniqueid.get(source)
        if call is not None and source == f"{call.call_id}-o":
            # The own-number leg's ;2 half dialing the volunteer's phone.
            call.volunteer_side.update((source, message.header("DestUniqueid") or ""))
            return None
        if call is None or source != call.volunteer_uniqueid:
            return None
        call.seen_on = self._connection
        destination = message.header("DestUniqueid")
        if not destination:
            _log(logging.WARNING, "call %s: DialBegin without DestUniqueid; ignored", call.call_id)
            return None
        call.contact_uniqueid = destination
        call.contact_channel = message.header("DestChannel")
        call.dial_status = None
        call.contact_dial_ended_at = None
        self._add_channel(call, destination, call.contact_channel)
        if call.contact_number is None:
            # The number dialed, from the dial string (`15145550100@carrier`
            # or `15145550100`); the leg's Exten is `s` inside the Gosub that
            # dials it.
            dialed = (message.header("DialString") or "").split("@", 1)[0]
            call.contact_number = dialed or message.header("Exten")
        return call if self._apply(call, Trigger.CONTACT_RINGING, at) else None

    def _on_dial_end(self, message: Message, at: datetime) -> _Call | None:
        source = message.header("Uniqueid")
        status = message.header("DialStatus")
        if source is None:
            call = self._by_uniqueid.get(message.header("DestUniqueid") or "")
            if call is None:
                return None
            call.seen_on = self._connection
            if status == "ANSWER":
                return call if self._apply(call, Trigger.VOLUNTEER_ANSWERED, at) else None
            call.volunteer_dial_status = status
            return None
        call = self._by_uniqueid.get(source)
        if call is None or source != call.volunteer_uniqueid:
            return None
        call.seen_on = self._connection
        destination = message.header("DestUniqueid")
        if not destination or destination != call.contact_uniqueid:
            _log(
                logging.INFO, "call %s: DialEnd for a leg it is not dialling; ignored", call.call_id
            )
            return None
        call.dial_status = status
        call.contact_dial_ended_at = at
        if status == "ANSWER":
            return call if self._apply(call, Trigger.CONTACT_ANSWERED, at) else None
        return None

    def _on_bridge_enter(self, message: Message, at: datetime) -> _Call | None:
        call = self._by_uniqueid.get(message.header("Uniqueid") or "")
        if call is not None:
            call.seen_on = self._connection
            bridge = message.header("BridgeUniqueid")
            if bridge:
                call.bridge_id = bridge
        return None

    def _on_hangup_request(self, message: Message, at: datetime) -> _Call | None:
        uniqueid = message.header("Uniqueid") or ""
        call = self._by_uniqueid.get(uniqueid)
        if call is None:
            return None
        call.seen_on = self._connection
        if (
            uniqueid == call.volunteer_uniqueid
            and call.dial_status is None
            and STATE_RULES[call.state].volunteer_hangup_gives_up
        ):
            # The phone sent its own hangup (a HangupRequest, unlike the
            # SoftHangupRequest Asterisk uses to tear a call down).
            call.volunteer_hung_up_early = True
        return None

    def _on_soft_hangup_request(self, message: Message, at: datetime) -> _Call | None:
        call = self._by_uniqueid.get(message.header("Uniqueid") or "")
        if call is not None:
            call.seen_on = self._connection
            if message.header("Cause") == _SOFTHANGUP_SHUTDOWN:
                call.pbx_shutdown = True
        return None

    def _on_hangup(self, message: Message, at: datetime) -> _Call | None:
        uniqueid = message.header("Uniqueid") or ""
        call = self._by_uniqueid.get(uniqueid)
        if call is None:
            return None
        call.seen_on = self._connection
        if uniqueid not in call.live:
            _log(logging.DEBUG, "call %s: duplicate Hangup of %s; ignored", call.call_id, uniqueid)
            return None
        call.live.discard(uniqueid)
        call.last_hangup_at = at
        cause = _int(message.header("Cause"))
        text = message.header("Cause-txt")
        if uniqueid == call.volunteer_uniqueid:
            call.volunteer_cause, call.volunteer_cause_text = cause, text
        elif uniqueid == call.contact_uniqueid:
            call.contact_cause, call.contact_cause_text = cause, text
        elif cause and call.other_cause is None and uniqueid not in call.volunteer_side:
            # Another half (a Local contact's ;2) may speak for the contact.
            call.other_cause, call.other_cause_text = cause, text
        if self._legs_gone(call):
            self._end(call, at)
            return call
        return None

    def _on_originate_response(self, message: Message, at: datetime) -> _Call | None:
        action_id = message.header("ActionID")
        call = self._by_action_id.get(action_id) if action_id is not None else None
        uniqueid = message.header("Uniqueid") or ""
        if call is None and uniqueid.endswith("-v"):
            call = self._calls.get(uniqueid[:-2])
        if call is None:
            return None
        call.seen_on = self._connection
        call.originate_response = message.header("Response")
        reason = _int(message.header("Reason"))
        call.originate_reason = reason
        if call.volunteer_endpoint is None:
            call.volunteer_endpoint = message.header("Channel")
        if reason == _REASON_ANSWERED:
            return call if self._apply(call, Trigger.VOLUNTEER_ANSWERED, at) else None
        if call.originate_response == "Failure" and self._legs_gone(call):
            # No channel left (or none ever made) to bring a Hangup later.
            self._end(call, at)
            return call
        return None

    def _on_shutdown(self, message: Message, at: datetime) -> _Call | None:
        # Asterisk is going away: whatever happens to the calls still up,
        # the PBX is the reason.  Their end comes from the resync.
        for call in self._calls.values():
            call.pbx_shutdown = True
        return None

    # -------------------------------------------------------------- resync

    def _resync(self, item: Resynced) -> list[CallUpdate]:
        at = item.at
        listed: dict[str, tuple[_Call, list[Message]]] = {}
        for message in item.channels:
            uniqueid = message.header("Uniqueid") or ""
            linkedid = message.header("Linkedid") or ""
            call = self._by_uniqueid.get(uniqueid) or self._by_linkedid.get(linkedid)
            if call is None:
                owner = linkedid if linkedid.endswith("-v") else uniqueid
                if len(owner) <= 2 or not owner.endswith("-v"):
                    continue  # not a click-to-call of ours
                known = self._calls.get(owner[:-2])
                call = known if known is not None else self._discover(owner[:-2])
                if call is None:
                    continue
            listed.setdefault(call.call_id, (call, []))[1].append(message)
        self._synced_on = self._connection
        self._listed = frozenset(listed)
        updates: list[CallUpdate] = []
        for call in list(self._calls.values()):
            entry = listed.get(call.call_id)
            if entry is not None:
                changed = self._reattach(call, entry[1], at)
            elif call.seen_on == self._connection:
                # Heard from on this very connection: alive (or its end will
                # come as events), whatever a list taken a moment ago says.
                changed = False
            else:
                self._end_unlisted(call, at)
                changed = True
            if changed or call.reported_state is None:
                updates.append(self._snapshot(call, at))
        return updates

    def _reattach(self, call: _Call, channels: list[Message], at: datetime) -> bool:
        before = call.state
        call.seen_on = self._connection
        by_uniqueid = {(channel.header("Uniqueid") or ""): channel for channel in channels}
        # Channels we thought up but Asterisk no longer lists hung up unseen.
        call.live.intersection_update(by_uniqueid)
        volunteer_id = call.volunteer_uniqueid or f"{call.call_id}-v"
        for uniqueid, channel in by_uniqueid.items():
            if uniqueid == volunteer_id and call.volunteer_uniqueid is None:
                self._bind_volunteer(call, channel)
            elif (
                call.contact_uniqueid is None
                and uniqueid != volunteer_id
                and channel.header("Application") == "AppDial"
            ):
                # The leg Dial() made runs the AppDial pseudo-application.
                call.contact_uniqueid = uniqueid
                call.contact_channel = channel.header("Channel")
            self._add_channel(call, uniqueid, channel.header("Channel"))
        volunteer = by_uniqueid.get(volunteer_id)
        if volunteer is not None:
            if volunteer.header("BridgeId"):
                call.bridge_id = volunteer.header("BridgeId")
            contact = by_uniqueid.get(call.contact_uniqueid or "")
            target = _state_from_listing(volunteer, contact)
            trigger = TRIGGER_FOR_STATE.get(target)
            if trigger is not None and call.state is not target:
                if call.unwatched:
                    self._stamp_from_listing(call, target, volunteer, contact, at)
                # Otherwise a step missed while disconnected is stamped when
                # we learn of it: never earlier than the last news of the
                # call, so talk time is never overstated.
                self._apply(call, trigger, at)
        call.unwatched = False
        if self._legs_gone(call):
            self._end_unlisted(call, at)
        return call.state is not before

    def _stamp_from_listing(
        self,
        call: _Call,
        target: CallState,
        volunteer: Message,
        contact: Message | None,
        at: datetime,
    ) -> None:
        """Times of steps of a call first seen in this resync, from what Asterisk lists.

        A channel's ``Duration`` is how long ago it was created (whole
        seconds).  The volunteer's leg was created when their phone started
        ringing; the contact's leg when Dial() ran, a moment after the
        volunteer answered.  When the two are bridged, the contact answered
        at some point since; the earliest, its leg's creation, is taken: it
        overstates talk time by at most the ring time, where the time of the
        resync would understate it by the whole time nobody watched.
        Times already known are kept (the stamps fill only empty ones).
        """
        volunteer_since = _created_at(volunteer, at)
        if volunteer_since is not None:
            self._run(Command.STAMP_VOLUNTEER_RINGING, call, volunteer_since)
        contact_since = _created_at(contact, at) if contact is not None else None
        if contact_since is None:
            return
        self._run(Command.STAMP_VOLUNTEER_ANSWERED, call, contact_since)
        step = STATE_RULES[target].listing_dates_contact_step
        if step is not None:
            self._run(step, call, contact_since)

    def _end_unlisted(self, call: _Call, at: datetime) -> None:
        if call.volunteer_cause is not None or (
            call.originate_response == "Failure" and call.volunteer_uniqueid is None
        ):
            # How it ended was already seen; only some leg's Hangup is missing.
            self._end(call, call.last_hangup_at or at)
            return
        call.lost = True
        self._end(call, at)


def _created_at(channel: Message, at: datetime) -> datetime | None:
    """When a CoreShowChannel entry's channel was created (``Duration`` HH:MM:SS ago)."""
    parts = (channel.header("Duration") or "").split(":")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        return None
    hours, minutes, seconds = (int(part) for part in parts)
    return at - timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _state_from_listing(volunteer: Message, contact: Message | None) -> CallState:
    """Where a call stands, from its CoreShowChannel entries."""
    state = volunteer.header("ChannelState")
    if state in _RINGING_STATES:
        return CallState.RINGING_VOLUNTEER
    if state != _UP:
        return CallState.REQUESTED
    if volunteer.header("BridgeId"):
        return CallState.TALKING
    if contact is not None:
        answered = contact.header("ChannelState") == _UP
        return CallState.TALKING if answered else CallState.RINGING_CONTACT
    return CallState.VOLUNTEER_ANSWERED


def _classify(call: _Call) -> tuple[CallOutcome, str | None]:
    """Why the call ended, from everything seen of it (state not yet ENDED)."""
    if call.lost:
        if call.pbx_shutdown:
            return CallOutcome.FAILED, "Asterisk shut down while the call was up"
        return (
            CallOutcome.LOST,
            "the call vanished while the AMI connection was down; how it ended is unknown",
        )
    if call.pbx_shutdown:
        return CallOutcome.FAILED, "Asterisk shut down during the call"
    if call.hangup_requested_by == "operator":
        return CallOutcome.HUNG_UP_BY_OPERATOR, None
    at_stake = STATE_RULES[call.state].at_stake
    if at_stake is Stake.CONVERSATION:
        return CallOutcome.COMPLETED, None
    if call.hangup_requested_by == "volunteer":
        return CallOutcome.HUNG_UP_BY_VOLUNTEER, None
    if call.originate_error is not None:
        return CallOutcome.FAILED, f"Asterisk refused the Originate: {call.originate_error}"
    if at_stake is Stake.VOLUNTEER:
        return _classify_volunteer(call)
    return _classify_contact(call)


def _classify_volunteer(call: _Call) -> tuple[CallOutcome, str | None]:
    reason = call.originate_reason
    cause = call.volunteer_cause
    status = call.volunteer_dial_status
    rang = call.volunteer_ringing_at is not None
    if reason == _REASON_BUSY or status == "BUSY" or cause in _CAUSE_BUSY:
        return CallOutcome.VOLUNTEER_BUSY, None
    if cause == _CAUSE_REJECTED:
        # The volunteer declined the call on the phone.
        return CallOutcome.VOLUNTEER_BUSY, None
    if reason == _REASON_CONGESTION or status == "CONGESTION" or cause in _CAUSE_CONGESTION:
        return CallOutcome.VOLUNTEER_UNREACHABLE, None
    if reason == _REASON_RING_TIMEOUT or status == "NOANSWER" or cause in _CAUSE_NO_ANSWER:
        # Asterisk says "no answer" (cause 19) also for a phone that never
        # even rang because its SIP contact is unreachable; only one that
        # showed Ringing was really left unanswered.
        return _no_answer_or_unreachable(rang), None
    if status == "CHANUNAVAIL" or cause in _CAUSE_UNREACHABLE:
        return CallOutcome.VOLUNTEER_UNREACHABLE, None
    if reason == _REASON_FAILURE:
        endpoint = call.volunteer_endpoint or "the volunteer's phone"
        if call.volunteer_uniqueid is None:
            # Refused before any channel existed: a real Asterisk does this
            # at once for a phone whose contact qualify found Unavailable
            # (unplugged, not registered), and also for an endpoint that does
            # not exist, which `dialer check-pbx` reports.
            return (
                CallOutcome.VOLUNTEER_UNREACHABLE,
                f"Asterisk refused to ring {endpoint} (OriginateResponse Reason 0 with no "
                "channel): its phone is unreachable or not registered, or no such endpoint",
            )
        return (
            CallOutcome.FAILED,
            f"Asterisk could not call {endpoint} (OriginateResponse Reason 0)",
        )
    if reason == _REASON_HANGUP:
        return _no_answer_or_unreachable(rang), None
    return (
        CallOutcome.FAILED,
        "the volunteer leg ended before answering "
        f"(cause {cause} {call.volunteer_cause_text or ''}, OriginateResponse Reason {reason})",
    )


def _no_answer_or_unreachable(rang: bool) -> CallOutcome:
    return CallOutcome.VOLUNTEER_NO_ANSWER if rang else CallOutcome.VOLUNTEER_UNREACHABLE


def _classify_contact(call: _Call) -> tuple[CallOutcome, str | None]:
    status = call.dial_status
    if status == "CANCEL" or call.volunteer_hung_up_early:
        return CallOutcome.HUNG_UP_BY_VOLUNTEER, None
    cause = call.contact_cause
    if not cause:
        cause = call.other_cause
    if cause == _CAUSE_REJECTED:
        # A rejection reaches Dial() as NOANSWER; only the cause tells.
        return CallOutcome.CONTACT_REJECTED, None
    if status == "NOANSWER" and cause in _CAUSE_UNREACHABLE:
        # So does a carrier's 404 (cause 1, unallocated number): the number
        # cannot be reached, whoever would have answered.
        return CallOutcome.CONTACT_UNREACHABLE, None
    if status is not None:
        outcome = _DIAL_STATUS_OUTCOME.get(status)
        if outcome is not None:
            return outcome, None
        return CallOutcome.FAILED, f"Dial() ended with DialStatus {status}"
    # No DialEnd seen (missed while disconnected): the causes still tell.
    if cause in _CAUSE_BUSY:
        return CallOutcome.CONTACT_BUSY, None
    if cause in _CAUSE_NO_ANSWER:
        return CallOutcome.CONTACT_NO_ANSWER, None
    if cause in _CAUSE_CONGESTION:
        return CallOutcome.CONTACT_CONGESTION, None
    if cause in _CAUSE_UNREACHABLE:
        return CallOutcome.CONTACT_UNREACHABLE, None
    if call.contact_uniqueid is None:
        # Dial() could not even create the contact's channel (no route, the
        # trunk's endpoint unavailable): no DialBegin, and a least-privilege
        # user sees no DIALSTATUS either; the cause left on the volunteer's
        # leg by the dialplan's Hangup() still tells.
        if call.volunteer_cause in _CAUSE_UNREACHABLE:
            return CallOutcome.CONTACT_UNREACHABLE, None
        return CallOutcome.FAILED, "the volunteer answered but the contact was never dialled"
    return CallOutcome.FAILED, f"the contact leg ended without a dial status (cause {cause})"
