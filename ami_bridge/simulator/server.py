"""An AMI server that behaves like the Asterisk recorded in tests/fixtures/ami.

It speaks the real wire protocol over TCP (banner, Login, Originate, Hangup,
CoreShowChannels, Status, Ping, Events, Logoff) and plays each call as the
event sequence a real Asterisk produced for the same situation: the same
event names, header names and per-channel order, VarSet and Newexten noise
included, ``Privilege`` headers, ``Uniqueid`` taken from ``ChannelId`` and a
``Linkedid`` shared by every leg of a call.  ``tests/golden/test_simulator_shapes.py``
replays the recordings against it so it cannot drift from them.

Two dialplans are imitated.  The default, ``carrier``, is the one shipped
in ``asterisk-config/extensions.conf`` (the ``shipped_*`` recordings): when
the volunteer answers, ``dialer-outbound`` runs ``Gosub`` into
``dialer-place-call`` (``NoOp``, ``Set(CALLERID_DIGITS=...)``, ``GotoIf``,
``Set(CALLERID(num)=...)``, ``Set(CALLERID(name)=)``) and
``Dial(PJSIP/<number>@carrier,30)``; a
``DIALER_CALLERID`` that is not 8 to 15 digits, or a number the shipped
dialplan refuses (premium rate, directory assistance, non-geographic,
Caribbean +1 countries: :data:`SHIPPED_REFUSALS`), goes to ``dialer-refuse``
instead, which hangs the volunteer's leg up with cause 34.  An Originate
without ``DIALER_CALLERID`` at all presents its own ``CallerID`` instead of
being refused, and numbers outside +1 are dialed, as if their country's
patterns had been added.  ``ring_timeout`` stands for the
``DIALER_RING_TIMEOUT`` global.

The other dialplan is the lab one the other recordings were made with:
``dialer-outbound`` runs ``NoOp``, ``Set(CALLERID(num)=...)``,
``Set(TRUNK=...)``, ``GotoIf`` and ``Dial`` of the contact, either over a
SIP trunk (``pjsip``: ``PJSIP/<number>@pstn``) or through a
``Local/<number>@fake-pstn`` channel (``local``).  The Originate's
``DIALER_TRUNK`` variable picks the trunk (``carrier``, ``pjsip`` or
``local``; ``default_trunk`` otherwise), ``DIALER_TRUNK_EP`` the lab SIP
endpoint (``pstnbusy`` always answers 486) and ``DIALER_RING_TIMEOUT`` the
lab ``Dial`` timeout in seconds (30 by default).

The contact's SIP trunk answers as the recorded carrier did: 486 is
``DialStatus: BUSY`` with cause 17, 503 ``CONGESTION`` with cause 34, 603
``NOANSWER`` with cause 21 and 404 (an unallocated number, what
"unreachable" plays) ``NOANSWER`` with cause 1; ``DIALSTATUS`` says
``CHANUNAVAIL`` for the last two.  With the shipped dialplan come the
shipped desk phones (``volunteer-endpoint``): ``device_state_busy_at = 1``
makes a ringing phone's device ``BUSY`` until it hangs up, where the lab
phones said ``RINGING``, then ``INUSE``.

DEFAULT RULE (override per number or extension with ``script_contact`` /
``script_volunteer`` or the ``contacts`` / ``volunteers`` arguments):

* contact, by the number's last digit: 0 rings 1 s, answers and hangs up
  after 4 s; 1 busy; 2 never answers (the ``Dial`` times out); 3 congestion;
  4 rings 1 s, answers and stays until hung up; 5 rejected (cause 21);
  6 unreachable (cause 1); 7, 8, 9 ring 1 s, answer and hang up after 3 s.
* volunteer, by extension: ending in 99 unreachable (an unplugged phone
  that qualify found Unavailable: the Originate fails at once with
  Reason 0 and no channel), 98 rings and never answers (Reason 3 after the
  Originate's ``Timeout``, cause 19), 97 busy (486: cause 17, Reason 0);
  any other extension answers at once.  Only all-digit PJSIP endpoints
  exist: ``PJSIP/nosuch`` or ``Bogus/1001`` fail with Reason 0 as in
  bad_actions.ami.

All durations are simulated seconds multiplied by ``time_scale`` (0.01 turns
a 4 s call into 40 ms).  Fault-injection durations (``stall``,
``down_for``) are real seconds, because they are about the client's timers.

Not recorded, so modelled on the nearest recording: the ``local`` trunk's
unreachable contact, and its contact leg hung up by action while it rings;
the volunteer's leg hung up by action before it answered, or over a SIP
trunk while bridged; the refusal for want of a caller ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hmac
import itertools
import logging
import random
import re
import signal
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from ami_bridge.asterisk_conf import pattern_matches
from ami_bridge.codec import Action, Decoder, Message, encode_action

log = logging.getLogger(__name__)

BANNER = b"Asterisk Call Manager/13.0.0\r\n"

# The permissions of the AMI user the recordings were made with, and of the
# least-privilege user in least_privilege_user_call_and_resync.ami.
FULL_READ = frozenset({"call", "system", "reporting", "agent", "dialplan", "originate"})
FULL_WRITE = frozenset({"call", "originate", "system", "reporting"})
LEAST_PRIVILEGE_READ = frozenset({"call", "reporting"})
LEAST_PRIVILEGE_WRITE = frozenset({"call", "originate", "reporting"})

_EVENT_CLASSES = frozenset(
    {
        "system", "call", "log", "verbose", "command", "agent", "user", "config", "dtmf",
        "reporting", "cdr", "dialplan", "originate", "agi", "cc", "aoc", "test", "security",
        "message",
    }
)  # fmt: skip

# Write authority of each action, as Asterisk's manager.c registers them.  An
# action is allowed when the user's write permissions share one class with
# it; an empty set means any logged-in user.
_AUTHORITY: dict[str, frozenset[str]] = {
    "login": frozenset(),
    "logoff": frozenset(),
    "challenge": frozenset(),
    "ping": frozenset(),
    "events": frozenset(),
    "originate": frozenset({"originate"}),
    "hangup": frozenset({"system", "call"}),
    "coreshowchannels": frozenset({"system", "reporting"}),
    "status": frozenset({"system", "call", "reporting"}),
    "command": frozenset({"command"}),
    "getvar": frozenset({"call", "reporting"}),
}

_PJSIP_ENDPOINT_FUNCTION = re.compile(r"PJSIP_ENDPOINT\(([^,()]+),([a-z_]+)\)")

_CAUSE_TEXT = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    3: "No route to destination",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    20: "Subscriber absent",
    21: "Call Rejected",
    27: "Destination out of order",
    31: "Normal, unspecified",
    34: "Circuit/channel congestion",
}
_STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up", 7: "Busy"}

# What the dialer-outbound context accepts: numbers, as the recorded dialplan
# (whose "Exten: 1" gave "Extension does not exist.").
_EXTEN = re.compile(r"\+?[0-9]{7,15}\Z")
_TRUE = frozenset({"true", "yes", "1", "on", "y", "t"})
_CALLER_ID = re.compile(r'\s*(?:"(?P<qname>[^"]*)"|(?P<name>[^<]*?))\s*<(?P<num>[^>]*)>\s*\Z')

_QOS_TAIL = (
    ";themssrc=0;lp=0;rxjitter=0.000000;rxcount=0;txjitter=0.000000;txcount=0;rlp=0;"
    "rtt=0.000000;rxmes=0.000000;txmes=0.000000"
)
_QOS_VALUES = (
    (
        "RTPAUDIOQOSJITTER",
        "minrxjitter=000.000000;maxrxjitter=000.000000;avgrxjitter=000.000000;"
        "stdevrxjitter=000.000000;mintxjitter=000.000000;maxtxjitter=000.000000;"
        "avgtxjitter=000.000000;stdevtxjitter=000.000000;",
    ),
    (
        "RTPAUDIOQOSLOSS",
        "  minrxlost=000.000000;  maxrxlost=000.000000;  avgrxlost=000.000000;  "
        "stdevrxlost=000.000000;  mintxlost=000.000000;  maxtxlost=000.000000;  "
        "avgtxlost=000.000000;  stdevtxlost=000.000000;",
    ),
    (
        "RTPAUDIOQOSRTT",
        "     minrtt=000.000000;     maxrtt=000.000000;     avgrtt=000.000000;     "
        "stdevrtt=000.000000;",
    ),
    (
        "RTPAUDIOQOSMES",
        "   minrxmes=000.000000;   maxrxmes=000.000000;   avgrxmes=000.000000;   "
        "stdevrxmes=000.000000;   mintxmes=000.000000;   maxtxmes=000.000000;   "
        "avgtxmes=000.000000;   stdevtxmes=000.000000;",
    ),
)
_DIAL_VARIABLES = (
    "DIALSTATUS", "DIALEDPEERNUMBER", "DIALEDPEERNAME", "ANSWEREDTIME", "ANSWEREDTIME_MS",
    "DIALEDTIME", "DIALEDTIME_MS", "RINGTIME", "RINGTIME_MS", "PROGRESSTIME", "PROGRESSTIME_MS",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class AmiUser:
    """An entry of manager.conf: who may log in, read which events, do what."""

    username: str
    secret: str = field(repr=False)
    read: frozenset[str] = FULL_READ
    write: frozenset[str] = FULL_WRITE

    @classmethod
    def least_privilege(cls, username: str, secret: str) -> AmiUser:
        """``read = call,reporting``, ``write = call,originate,reporting``: no
        FullyBooted, no VarSet/Newexten, ``Command`` refused."""
        return cls(username, secret, LEAST_PRIVILEGE_READ, LEAST_PRIVILEGE_WRITE)


class ContactOutcome(enum.Enum):
    ANSWER = "answer"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    CONGESTION = "congestion"
    REJECTED = "rejected"
    UNREACHABLE = "unreachable"


# A SIP trunk's final answers: cause, the contact leg's TechCause (the SIP
# status), the volunteer leg's TechCause, DialStatus, then DIALSTATUS as
# Dial() leaves it.  Recorded from a real carrier (shipped_contact_*):
# unreachable plays an unallocated number (404).
_SIP_REFUSALS: dict[ContactOutcome, tuple[int, int, int, str, str]] = {
    ContactOutcome.BUSY: (17, 486, 486, "BUSY", "BUSY"),
    ContactOutcome.CONGESTION: (34, 503, 503, "CONGESTION", "CONGESTION"),
    ContactOutcome.REJECTED: (21, 603, 403, "NOANSWER", "CHANUNAVAIL"),
    ContactOutcome.UNREACHABLE: (1, 404, 404, "NOANSWER", "CHANUNAVAIL"),
}


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
    """The DEFAULT RULE for contacts (see the module docstring)."""
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
    """The DEFAULT RULE for volunteers' extensions (see the module docstring)."""
    if extension.endswith("99"):
        return VolunteerBehaviour(VolunteerOutcome.UNREACHABLE)
    if extension.endswith("98"):
        return VolunteerBehaviour(VolunteerOutcome.NO_ANSWER)
    if extension.endswith("97"):
        return VolunteerBehaviour(VolunteerOutcome.BUSY)
    return VolunteerBehaviour()


Trunk = Literal["carrier", "pjsip", "local"]
TRUNKS: tuple[Trunk, ...] = ("carrier", "pjsip", "local")

# What [dialer-outbound] of the shipped extensions.conf refuses among the
# numbers its _1NXXNXXXXXX pattern would dial: (pattern, reason given to
# dialer-refuse).  tests/integration/test_simulator.py keeps it equal to
# the file.
SHIPPED_REFUSALS: tuple[tuple[str, str], ...] = (
    ("_1900NXXXXXX", "premium-rate"),
    ("_1NXX976XXXX", "premium-rate"),
    ("_1NXX5551212", "directory-assistance"),
    *(
        (f"_1{area}NXXXXXX", "non-geographic")
        for area in ("700", "500", "533", "544", "566", "577", "588")
    ),
    *(
        (f"_1{area}NXXXXXX", "international-rate")
        for area in (
            "242", "246", "264", "268", "284", "345", "441", "473", "649", "658", "664",
            "721", "758", "767", "784", "809", "829", "849", "868", "869", "876",
        )
    ),
)  # fmt: skip


def shipped_refusal(number: str) -> str | None:
    """Why the shipped dialplan refuses ``number`` (E.164 digits), or None."""
    for pattern, reason in SHIPPED_REFUSALS:
        if pattern_matches(pattern, number):
            return reason
    return None


class _Channel:
    __slots__ = (
        "app_data", "application", "bridge_id", "call", "cid_name", "cid_num", "conn_name",
        "conn_num", "context", "created", "device", "exten", "linkedid", "name", "priority",
        "state", "tech", "uniqueid",
    )  # fmt: skip

    def __init__(
        self,
        call: _Call,
        name: str,
        uniqueid: str,
        *,
        state: int,
        context: str,
        exten: str,
        tech: str,
        created: float,
    ) -> None:
        self.call = call
        self.name = name
        self.uniqueid = uniqueid
        self.linkedid = call.linkedid
        self.state = state
        self.cid_num = self.cid_name = self.conn_num = self.conn_name = "<unknown>"
        self.context = context
        self.exten = exten
        self.priority = 1
        self.application = ""
        self.app_data = ""
        self.bridge_id = ""
        self.tech = tech
        self.created = created
        # Devices are the channel name without the "-<sequence>" suffix.
        self.device = name.rsplit("-", 1)[0]

    def block(self, p: str = "") -> str:
        """The channel snapshot every channel event carries, optionally prefixed."""
        return (
            f"{p}Channel: {self.name}\r\n{p}ChannelState: {self.state}\r\n"
            f"{p}ChannelStateDesc: {_STATE_DESC.get(self.state, 'Unknown')}\r\n"
            f"{p}CallerIDNum: {self.cid_num}\r\n{p}CallerIDName: {self.cid_name}\r\n"
            f"{p}ConnectedLineNum: {self.conn_num}\r\n{p}ConnectedLineName: {self.conn_name}\r\n"
            f"{p}Language: en\r\n{p}AccountCode: \r\n{p}Context: {self.context}\r\n"
            f"{p}Exten: {self.exten}\r\n{p}Priority: {self.priority}\r\n"
            f"{p}Uniqueid: {self.uniqueid}\r\n{p}Linkedid: {self.linkedid}\r\n"
        )


class _Bridge:
    __slots__ = ("channels", "id", "technology")

    def __init__(self) -> None:
        self.id = str(uuid.uuid4())
        self.technology = "simple_bridge"
        self.channels: list[_Channel] = []

    def block(self) -> str:
        return (
            f"BridgeUniqueid: {self.id}\r\nBridgeType: basic\r\n"
            f"BridgeTechnology: {self.technology}\r\nBridgeCreator: <unknown>\r\n"
            f"BridgeName: <unknown>\r\nBridgeNumChannels: {len(self.channels)}\r\n"
            "BridgeVideoSourceMode: none\r\n"
        )


class _Session(asyncio.Protocol):
    """One AMI client connection."""

    def __init__(self, sim: AmiSimulator) -> None:
        self.sim = sim
        self.transport: asyncio.Transport | None = None
        self.decoder = Decoder(expect_banner=False)
        self.user: AmiUser | None = None
        self.mask: frozenset[str] = _EVENT_CLASSES
        self.receive: frozenset[str] = frozenset()
        self.closing = False
        self.ignore_input = False
        self.stalled = False
        self.muted = False
        self.backlog: list[bytes] = []
        self.write_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.sim._sessions.add(self)
        transport.write(BANNER)

    def data_received(self, data: bytes) -> None:
        self.sim.bytes_received += len(data)
        for message in self.decoder.feed(data):
            if self.closing or self.ignore_input:
                return
            self.sim._handle_action(self, message)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.sim._sessions.discard(self)
        if self.write_timer is not None:
            self.write_timer.cancel()

    # Asterisk drops a client that does not take its events within its write
    # timeout (100 ms by default); the transport tells us when its buffer
    # is full, which is when a real write would block.
    def pause_writing(self) -> None:
        timeout = self.sim.write_timeout
        if timeout is not None and self.write_timer is None:
            self.write_timer = asyncio.get_running_loop().call_later(timeout, self._too_slow)

    def resume_writing(self) -> None:
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None

    def _too_slow(self) -> None:
        log.warning("simulator: dropping an AMI client that stopped reading")
        self.abort()

    def set_user(self, user: AmiUser | None) -> None:
        self.user = user
        self.receive = (user.read & self.mask) if user else frozenset()

    def set_mask(self, mask: frozenset[str]) -> None:
        self.mask = mask
        self.set_user(self.user)

    def write(self, data: bytes) -> None:
        if self.muted or self.closing or self.transport is None:
            return
        if self.stalled:
            self.backlog.append(data)
        else:
            self.transport.write(data)

    def close(self) -> None:
        if not self.closing and self.transport is not None:
            self.closing = True
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.closing = True
            self.transport.abort()

    def stall(self, seconds: float) -> None:
        if self.transport is None or self.closing:
            return
        self.stalled = True
        self.transport.pause_reading()
        asyncio.get_running_loop().call_later(seconds, self._unstall)

    def _unstall(self) -> None:
        self.stalled = False
        if self.closing or self.transport is None:
            return
        self.transport.resume_reading()
        backlog, self.backlog = self.backlog, []
        for data in backlog:
            self.transport.write(data)


class AmiSimulator:
    """A scripted Asterisk.  ``await start()``, connect to ``port``, ``await stop()``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str = "dialer",
        secret: str = "dialer-secret",  # noqa: S107 - the simulator's documented demo login
        least_privilege: bool = False,
        users: Iterable[AmiUser] = (),
        time_scale: float = 1.0,
        default_trunk: Trunk = "carrier",
        dialplan_events: bool = True,
        ring_timeout: float = 30.0,
        contacts: Mapping[str, ContactBehaviour] | None = None,
        volunteers: Mapping[str, VolunteerBehaviour] | None = None,
        contact_rule: Callable[[str], ContactBehaviour] = default_contact_behaviour,
        volunteer_rule: Callable[[str], VolunteerBehaviour] = default_volunteer_behaviour,
        write_timeout: float | None = 0.1,
        remember_actions: int = 10_000,
        contexts: Iterable[str] | None = None,
        endpoints: Iterable[str] | None = None,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.host = host
        self.port = port
        main_user = (
            AmiUser.least_privilege(username, secret)
            if least_privilege
            else AmiUser(username, secret)
        )
        self._users = {user.username: user for user in (main_user, *users)}
        self.time_scale = time_scale
        self.default_trunk: Trunk = default_trunk
        self.dialplan_events = dialplan_events
        # The shipped dialplan's DIALER_RING_TIMEOUT global, in seconds.
        self.ring_timeout = ring_timeout
        self.write_timeout = write_timeout
        # None: every context exists / every all-digit PJSIP endpoint exists.
        # A set models a PBX whose dialplan or pjsip.conf lacks something.
        self.contexts = None if contexts is None else frozenset(contexts)
        self.endpoints = None if endpoints is None else frozenset(endpoints)
        self._contacts = {_number_key(n): b for n, b in (contacts or {}).items()}
        self._volunteers = dict(volunteers or {})
        self._contact_rule = contact_rule
        self._volunteer_rule = volunteer_rule
        self._server: asyncio.Server | None = None
        self._sessions: set[_Session] = set()
        self._channels: dict[str, _Channel] = {}
        self._uniqueids: set[str] = set()
        self._calls: dict[str, _Call] = {}
        self._pending_drops: dict[str, bool] = {}
        self._started_at = time.monotonic()
        self._epoch = int(time.time())
        self._uniqueid_seq = itertools.count(1)
        self._pjsip_seq = itertools.count(1)
        self._local_seq = itertools.count(1)
        self._down_task: asyncio.Task[None] | None = None
        self.bytes_received = 0
        """Bytes read from all clients since start: lets tests prove a refused
        action never reached the socket."""
        self.action_counts: Counter[str] = Counter()
        """Actions received, by name as sent (e.g. ``action_counts["Originate"]``)."""
        self.actions: deque[Message] = deque(maxlen=remember_actions)
        """The last actions received, in order (secrets included: test use only)."""

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Session(self), self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._started_at = time.monotonic()
        log.info("AMI simulator listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._down_task is not None:
            self._down_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._down_task
        await self._close_server()
        self._forget_calls()
        for session in list(self._sessions):
            session.abort()
        await asyncio.sleep(0)

    async def __aenter__(self) -> AmiSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _close_server(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    # -- scripting and introspection ----------------------------------------

    def script_contact(self, number: str, behaviour: ContactBehaviour) -> None:
        """Script ``number`` (with or without its leading ``+``: dialplans
        often dial E.164 numbers without it)."""
        self._contacts[_number_key(number)] = behaviour

    def script_volunteer(self, extension: str, behaviour: VolunteerBehaviour) -> None:
        self._volunteers[extension] = behaviour

    @property
    def channel_names(self) -> list[str]:
        return list(self._channels)

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    @property
    def client_count(self) -> int:
        return sum(1 for session in self._sessions if not session.closing)

    @property
    def logged_in_count(self) -> int:
        return sum(1 for s in self._sessions if s.user is not None and not s.closing)

    # -- faults ------------------------------------------------------------

    def drop_clients(self) -> None:
        """Drop every client connection at once (no Logoff, no Shutdown); calls go on."""
        for session in list(self._sessions):
            session.abort()

    def stall(self, seconds: float) -> None:
        """Stop reading from and writing to the current clients for ``seconds``
        (real time); what they are sent meanwhile is delivered afterwards."""
        for session in list(self._sessions):
            session.stall(seconds)

    def send_garbage(
        self, data: bytes = b"\x00\xff\xfe garbage: \x01\r\nno colon here\r\n\r\n"
    ) -> None:
        for session in list(self._sessions):
            session.write(data)

    def drop_on_next(self, action: str, *, after_processing: bool = True) -> None:
        """Drop the connection the next ``action`` arrives on, without a
        response: after carrying it out (the response is lost) or before."""
        self._pending_drops[action.lower()] = after_processing

    async def restart(self, *, down_for: float = 0.0) -> None:
        """A clean restart, as restart_1 recorded it: every channel gets
        SoftHangupRequest (cause 4) and is hung up, ``Shutdown`` is sent and
        the sockets close.  The port refuses connections for ``down_for``."""
        calls = list(self._calls.values())
        for call in calls:
            call.cancel_task()
        for call in calls:
            for channel in call.live_channels(contact_first=True):
                self._soft_hangup_request(channel, 4)
        for call in calls:
            call.teardown_for_restart()
        self._emit("system", "Shutdown", "Shutdown: Cleanly\r\nRestart: True\r\n")
        for session in list(self._sessions):
            session.close()
        self._forget_calls()
        await self._go_down(down_for)

    async def crash(self, *, down_for: float = 0.0) -> None:
        """Asterisk killed: the sockets just close, nothing is sent, the calls are gone."""
        self._forget_calls()
        for session in list(self._sessions):
            session.abort()
        await self._go_down(down_for)

    async def _go_down(self, down_for: float) -> None:
        self._started_at = time.monotonic()
        if down_for <= 0:
            return
        await self._close_server()

        async def come_back() -> None:
            await asyncio.sleep(down_for)
            await self.start()

        self._down_task = asyncio.create_task(come_back())

    def _forget_calls(self) -> None:
        for call in list(self._calls.values()):
            call.cancel_task()
        self._calls.clear()
        self._channels.clear()
        self._uniqueids.clear()

    # -- timing --------------------------------------------------------------

    def _now(self) -> float:
        """Simulated seconds since start."""
        return (time.monotonic() - self._started_at) / self.time_scale

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) * self.time_scale)

    # -- actions -----------------------------------------------------------

    def _handle_action(self, session: _Session, message: Message) -> None:
        name = message.get("Action")
        action_id = message.get("ActionID")
        self.actions.append(message)
        self.action_counts[name or ""] += 1
        key = (name or "").lower()
        drop = self._pending_drops.pop(key, None)
        if drop is not None:
            log.info("simulator: dropping the connection on %s as asked", name)
            if drop:
                session.muted = True
                self._dispatch(session, key, name, message, action_id)
            session.abort()
            return
        self._dispatch(session, key, name, message, action_id)

    def _dispatch(
        self, session: _Session, key: str, name: str | None, message: Message, action_id: str | None
    ) -> None:
        if not name:
            self._respond(session, action_id, "Error", "Missing action in request")
            return
        if session.user is None and key not in ("login", "logoff", "challenge"):
            self._respond(session, action_id, "Error", "Permission denied")
            return
        handler = self._handlers.get(key)
        authority = _AUTHORITY.get(key)
        if authority is None:
            self._respond(
                session,
                action_id,
                "Error",
                f"Invalid/unknown command: {name}. "
                "Use Action: ListCommands to show available commands.",
            )
            return
        if authority and session.user is not None and not (session.user.write & authority):
            self._respond(session, action_id, "Error", "Permission denied")
            return
        if handler is None:
            self._respond(session, action_id, "Error", f"{name} is not simulated")
            return
        handler(self, session, message, action_id)

    @staticmethod
    def _id_line(action_id: str | None) -> str:
        return f"ActionID: {action_id}\r\n" if action_id is not None else ""

    def _respond(
        self,
        session: _Session,
        action_id: str | None,
        response: str,
        message: str | None = None,
        extra: str = "",
    ) -> None:
        text = f"Response: {response}\r\n{self._id_line(action_id)}{extra}"
        if message is not None:
            text += f"Message: {message}\r\n"
        session.write((text + "\r\n").encode())

    def _login(self, session: _Session, message: Message, action_id: str | None) -> None:
        username = message.get("Username") or ""
        user = self._users.get(username)
        secret = message.get("Secret") or ""
        if user is None or not hmac.compare_digest(user.secret.encode(), secret.encode()):
            log.info("simulator: AMI login refused for user %r", username)
            # Asterisk sleeps a second before refusing, then ends the session.
            session.ignore_input = True

            def refuse() -> None:
                self._respond(session, action_id, "Error", "Authentication failed")
                session.close()

            asyncio.get_running_loop().call_later(self.time_scale, refuse)
            return
        if "Events" in message:
            session.mask = _parse_event_mask(message["Events"])
        session.set_user(user)
        self._respond(session, action_id, "Success", "Authentication accepted")
        if "system" in session.receive:
            uptime = int(self._now())
            session.write(
                (
                    "Event: FullyBooted\r\nPrivilege: system,all\r\n"
                    f"Uptime: {uptime}\r\nLastReload: {uptime}\r\nStatus: Fully Booted\r\n\r\n"
                ).encode()
            )

    def _logoff(self, session: _Session, message: Message, action_id: str | None) -> None:
        self._respond(session, action_id, "Goodbye", "Thanks for all the fish.")
        session.close()

    def _ping(self, session: _Session, message: Message, action_id: str | None) -> None:
        self._respond(
            session, action_id, "Success", extra=f"Ping: Pong\r\nTimestamp: {time.time():.6f}\r\n"
        )

    def _events(self, session: _Session, message: Message, action_id: str | None) -> None:
        session.set_mask(_parse_event_mask(message.get("EventMask") or "off"))
        state = "On" if session.mask else "Off"
        self._respond(session, action_id, "Success", extra=f"Events: {state}\r\n")

    def _originate(self, session: _Session, message: Message, action_id: str | None) -> None:
        request = message.get("Channel") or ""
        if not request:
            self._respond(session, action_id, "Error", "Channel not specified")
            return
        if message.get("Application"):
            self._respond(
                session, action_id, "Error", "Originate to an application is not simulated"
            )
            return
        context = message.get("Context") or ""
        exten = message.get("Exten") or ""
        if not _EXTEN.match(exten) or not context or not self._context_exists(context):
            self._respond(session, action_id, "Error", "Extension does not exist.")
            return
        try:
            priority = int(message.get("Priority") or "1")
        except ValueError:
            self._respond(session, action_id, "Error", "Invalid priority")
            return
        timeout_text = message.get("Timeout") or "30000"
        timeout_ms = int(timeout_text) if timeout_text.isdigit() else 30000
        is_async = (message.get("Async") or "false").lower() in _TRUE
        variables: list[tuple[str, str]] = []
        for header in message.getall("Variable"):
            # Asterisk splits a Variable header on commas: the injection the
            # encoder refuses on our side.
            for part in header.split(","):
                var, _, value = part.partition("=")
                if var:
                    variables.append((var, value))
        cid_num, cid_name = _parse_caller_id(message.get("CallerID"))
        tech, _, resource = request.partition("/")
        channel_id = message.get("ChannelId") or None
        exists = tech.upper() == "PJSIP" and self._endpoint_exists(resource)
        failed_uniqueid = channel_id or "<unknown>"
        # A ChannelId already in use: Asterisk cannot allocate the channel,
        # which fails like a missing endpoint (but under no Uniqueid: the
        # one asked for belongs to another call).
        if channel_id is not None and (channel_id in self._calls or channel_id in self._uniqueids):
            exists = False
            failed_uniqueid = "<unknown>"
        if is_async:
            self._respond(session, action_id, "Success", "Originate successfully queued")
        if not exists:

            def fail() -> None:
                if is_async:
                    # Asterisk names the channel it was asked for, under the
                    # ChannelId it would have had.
                    self._originate_response(
                        action_id, "Failure", request, context, exten, 0, failed_uniqueid,
                        cid_num or "<unknown>", cid_name or "<unknown>",
                    )  # fmt: skip
                else:
                    self._respond(session, action_id, "Error", "Originate failed")

            asyncio.get_running_loop().call_soon(fail)
            return
        call = _Call(
            self,
            request=request,
            resource=resource,
            context=context,
            exten=exten,
            priority=priority,
            timeout=timeout_ms / 1000,
            channel_id=channel_id,
            variables=variables,
            cid=(cid_num, cid_name),
            action_id=action_id,
            sync_session=None if is_async else session,
        )
        self._calls[call.linkedid] = call
        call.task = asyncio.create_task(call.run())

    def _context_exists(self, context: str) -> bool:
        return self.contexts is None or context in self.contexts

    def _endpoint_exists(self, resource: str) -> bool:
        if not resource.isdigit():
            return False
        return self.endpoints is None or resource in self.endpoints

    def _getvar(self, session: _Session, message: Message, action_id: str | None) -> None:
        # Only the dialplan functions `dialer check-pbx` reads without a
        # channel; Asterisk answers an unknown endpoint with an empty value.
        variable = message.get("Variable") or ""
        if not variable:
            self._respond(session, action_id, "Error", "No variable specified")
            return
        value = ""
        endpoint = _PJSIP_ENDPOINT_FUNCTION.fullmatch(variable)
        if endpoint is not None and self._endpoint_exists(endpoint.group(1)):
            value = {"context": "from-phones", "aors": endpoint.group(1)}.get(endpoint.group(2), "")
        self._respond(
            session, action_id, "Success", extra=f"Variable: {variable}\r\nValue: {value}\r\n"
        )

    def _hangup(self, session: _Session, message: Message, action_id: str | None) -> None:
        target = message.get("Channel") or ""
        try:
            cause = int(message.get("Cause") or "16")
        except ValueError:
            cause = 16
        if not target:
            self._respond(session, action_id, "Error", "No channel specified")
            return
        if len(target) > 1 and target.startswith("/") and target.endswith("/"):
            try:
                pattern = re.compile(target[1:-1])
            except re.error:
                self._respond(session, action_id, "Error", "Invalid regex")
                return
            matched = [c for name, c in self._channels.items() if pattern.search(name)]
            self._respond(
                session,
                action_id,
                "Success",
                "Channels hung up will follow",
                "EventList: start\r\n",
            )
            for channel in matched:
                session.write(
                    (
                        f"Event: ChannelHungup\r\nChannel: {channel.name}\r\n"
                        f"{self._id_line(action_id)}\r\n"
                    ).encode()
                )
            session.write(
                (
                    f"Event: ChannelsHungupListComplete\r\n{self._id_line(action_id)}"
                    f"EventList: Complete\r\nListItems: {len(matched)}\r\n\r\n"
                ).encode()
            )
            for channel in matched:
                if channel.name in self._channels:
                    channel.call.hangup_by_action(channel, cause)
            return
        found = self._channels.get(target)
        if found is None:
            self._respond(session, action_id, "Error", "No such channel")
            return
        self._respond(session, action_id, "Success", "Channel Hungup")
        found.call.hangup_by_action(found, cause)

    def _duration(self, channel: _Channel) -> int:
        return int((time.monotonic() - channel.created) / self.time_scale)

    def _core_show_channels(
        self, session: _Session, message: Message, action_id: str | None
    ) -> None:
        self._respond(session, action_id, "Success", "Channels will follow", "EventList: start\r\n")
        id_line = self._id_line(action_id)
        channels = list(self._channels.values())
        for channel in channels:
            seconds = self._duration(channel)
            hours, rest = divmod(seconds, 3600)
            duration = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
            session.write(
                (
                    f"Event: CoreShowChannel\r\n{id_line}{channel.block()}"
                    f"Application: {channel.application}\r\n"
                    f"ApplicationData: {channel.app_data}\r\n"
                    f"Duration: {duration}\r\nBridgeId: {channel.bridge_id}\r\n\r\n"
                ).encode()
            )
        session.write(
            (
                f"Event: CoreShowChannelsComplete\r\n{id_line}EventList: Complete\r\n"
                f"ListItems: {len(channels)}\r\n\r\n"
            ).encode()
        )

    def _status(self, session: _Session, message: Message, action_id: str | None) -> None:
        wanted = message.get("Channel")
        if wanted:
            found = self._channels.get(wanted)
            if found is None:
                self._respond(session, action_id, "Error", "No such channel")
                return
            channels = [found]
        else:
            channels = list(self._channels.values())
        self._respond(
            session, action_id, "Success", "Channel status will follow", "EventList: start\r\n"
        )
        id_line = self._id_line(action_id)
        for c in channels:
            session.write(
                (
                    f"Event: Status\r\nPrivilege: Call\r\n{c.block()}Type: {c.tech}\r\nDNID: \r\n"
                    f"EffectiveConnectedLineNum: {c.conn_num}\r\n"
                    f"EffectiveConnectedLineName: {c.conn_name}\r\nTimeToHangup: 0\r\n"
                    f"BridgeID: {c.bridge_id}\r\nApplication: {c.application}\r\n"
                    f"Data: {c.app_data}\r\nNativeformats: (ulaw)\r\nReadformat: ulaw\r\n"
                    "Readtrans: \r\nWriteformat: ulaw\r\nWritetrans: \r\nCallgroup: 0\r\n"
                    f"Pickupgroup: 0\r\nSeconds: {self._duration(c)}\r\n{id_line}\r\n"
                ).encode()
            )
        session.write(
            (
                f"Event: StatusComplete\r\n{id_line}EventList: Complete\r\n"
                f"ListItems: {len(channels)}\r\nItems: {len(channels)}\r\n\r\n"
            ).encode()
        )

    _handlers: ClassVar[
        dict[str, Callable[[AmiSimulator, _Session, Message, str | None], None]]
    ] = {
        "login": _login,
        "logoff": _logoff,
        "ping": _ping,
        "events": _events,
        "originate": _originate,
        "hangup": _hangup,
        "coreshowchannels": _core_show_channels,
        "status": _status,
        "getvar": _getvar,
    }

    # -- events --------------------------------------------------------------

    def _emit(self, category: str, name: str, body: str) -> None:
        sessions = [s for s in self._sessions if category in s.receive]
        if not sessions:
            return
        data = f"Event: {name}\r\nPrivilege: {category},all\r\n{body}\r\n".encode()
        for session in sessions:
            session.write(data)

    def _contact_behaviour(self, number: str) -> ContactBehaviour:
        found = self._contacts.get(_number_key(number))
        return found if found is not None else self._contact_rule(number)

    def _volunteer_behaviour(self, extension: str) -> VolunteerBehaviour:
        found = self._volunteers.get(extension)
        return found if found is not None else self._volunteer_rule(extension)

    def _new_uniqueid(self) -> str:
        return f"{self._epoch}.{next(self._uniqueid_seq)}"

    def _register(self, channel: _Channel) -> None:
        self._channels[channel.name] = channel
        self._uniqueids.add(channel.uniqueid)
        self._emit("call", "Newchannel", channel.block())

    def _newexten(
        self,
        channel: _Channel,
        application: str,
        data: str,
        *,
        priority: int | None = None,
    ) -> None:
        if priority is not None:
            channel.priority = priority
        channel.application = application
        channel.app_data = data
        if self.dialplan_events:
            self._emit(
                "dialplan",
                "Newexten",
                f"{channel.block()}Extension: {channel.exten}\r\n"
                f"Application: {application}\r\nAppData: {data}\r\n",
            )

    def _varset(self, channel: _Channel, variable: str, value: str) -> None:
        if self.dialplan_events:
            self._emit(
                "dialplan", "VarSet", f"{channel.block()}Variable: {variable}\r\nValue: {value}\r\n"
            )

    def _qos(self, channel: _Channel) -> None:
        if not self.dialplan_events:
            return
        self._varset(channel, "RTPAUDIOQOS", f"ssrc={random.getrandbits(31)}{_QOS_TAIL}")
        for variable, value in _QOS_VALUES:
            self._varset(channel, variable, value)

    def _qos_bridged(self, contact: _Channel, volunteer: _Channel) -> None:
        if not self.dialplan_events:
            return
        first = f"ssrc={random.getrandbits(31)}{_QOS_TAIL}"
        for variable, value in (("RTPAUDIOQOS", first), *_QOS_VALUES):
            self._varset(contact, variable, value)
            self._varset(volunteer, f"{variable}BRIDGED", value)

    def _newcallerid(self, channel: _Channel) -> None:
        self._emit(
            "call",
            "NewCallerid",
            f"{channel.block()}CID-CallingPres: 0 (Presentation Allowed, Not Screened)\r\n",
        )

    def _newconnectedline(self, channel: _Channel) -> None:
        self._emit("call", "NewConnectedLine", channel.block())

    def _newstate(self, channel: _Channel, state: int) -> None:
        channel.state = state
        self._emit("call", "Newstate", channel.block())

    def _dial(
        self, name: str, caller: _Channel | None, dest: _Channel, header: str, value: str
    ) -> None:
        body = (caller.block() if caller else "") + dest.block("Dest") + f"{header}: {value}\r\n"
        self._emit("call", name, body)

    def _dial_begin(self, caller: _Channel | None, dest: _Channel, dial_string: str) -> None:
        self._dial("DialBegin", caller, dest, "DialString", dial_string)

    def _dial_state(self, caller: _Channel | None, dest: _Channel, status: str) -> None:
        self._dial("DialState", caller, dest, "DialStatus", status)

    def _dial_end(self, caller: _Channel | None, dest: _Channel, status: str) -> None:
        self._dial("DialEnd", caller, dest, "DialStatus", status)

    def _device_state(self, device: str, state: str) -> None:
        self._emit("call", "DeviceStateChange", f"Device: {device}\r\nState: {state}\r\n")

    def _hangup_request(self, channel: _Channel, cause: int, tech_cause: int | None = None) -> None:
        tech = f"TechCause: {tech_cause}\r\n" if tech_cause else ""
        self._emit("call", "HangupRequest", f"{channel.block()}Cause: {cause}\r\n{tech}")

    def _soft_hangup_request(self, channel: _Channel, cause: int) -> None:
        self._emit("call", "SoftHangupRequest", f"{channel.block()}Cause: {cause}\r\n")

    def _hangup_event(self, channel: _Channel, cause: int, tech_cause: int | None = None) -> None:
        self._channels.pop(channel.name, None)
        self._uniqueids.discard(channel.uniqueid)
        tech = f"TechCause: {tech_cause}\r\n" if tech_cause else ""
        self._emit(
            "call",
            "Hangup",
            f"{channel.block()}Cause: {cause}\r\n"
            f"Cause-txt: {_CAUSE_TEXT.get(cause, 'Unknown')}\r\n{tech}",
        )

    def _bridge_event(self, name: str, bridge: _Bridge, channel: _Channel | None = None) -> None:
        self._emit("call", name, bridge.block() + (channel.block() if channel else ""))

    def _local_bridge(self, one: _Channel, two: _Channel, number: str) -> None:
        self._emit(
            "call",
            "LocalBridge",
            f"{one.block('LocalOne')}{two.block('LocalTwo')}Context: fake-pstn\r\n"
            f"Exten: {number}\r\nLocalOptimization: Yes\r\n",
        )

    def _originate_response(
        self,
        action_id: str | None,
        response: str,
        channel: str,
        context: str,
        exten: str,
        reason: int,
        uniqueid: str,
        cid_num: str,
        cid_name: str,
    ) -> None:
        self._emit(
            "call",
            "OriginateResponse",
            f"{self._id_line(action_id)}Response: {response}\r\nChannel: {channel}\r\n"
            f"Context: {context}\r\nExten: {exten}\r\nReason: {reason}\r\n"
            f"Uniqueid: {uniqueid}\r\nCallerIDNum: {cid_num}\r\nCallerIDName: {cid_name}\r\n",
        )


class _Call:
    """One Originate: the volunteer's leg, then the contact's leg(s)."""

    def __init__(
        self,
        sim: AmiSimulator,
        *,
        request: str,
        resource: str,
        context: str,
        exten: str,
        priority: int,
        timeout: float,
        channel_id: str | None,
        variables: list[tuple[str, str]],
        cid: tuple[str | None, str | None],
        action_id: str | None,
        sync_session: _Session | None,
    ) -> None:
        self.sim = sim
        self.request = request
        self.resource = resource
        self.context = context
        self.number = exten
        self.priority = priority
        self.timeout = timeout
        self.variables = variables
        self.vars = dict(variables)
        self.cid = cid
        self.action_id = action_id
        self.sync_session = sync_session
        self.linkedid = channel_id or sim._new_uniqueid()
        self.task: asyncio.Task[None] | None = None
        self.stage: Literal["vol", "ringing", "bridged", "ended"] = "vol"
        self.v = _Channel(
            self,
            f"PJSIP/{resource}-{next(sim._pjsip_seq):08x}",
            self.linkedid,
            state=0,
            context="from-phones",
            exten="s",
            tech="PJSIP",
            created=time.monotonic(),
        )
        trunk = self.vars.get("DIALER_TRUNK", sim.default_trunk).lower()
        self.trunk: Trunk = next((t for t in TRUNKS if t == trunk), sim.default_trunk)
        # The shipped dialplan (and its desk phones) rather than the lab one.
        self.shipped = self.trunk == "carrier"
        self.ring_timeout: float
        if self.shipped:
            self.endpoint = "carrier"
            self.ring_timeout = sim.ring_timeout
            # The shipped endpoints' callerid ("Volunteer 1001" <1001>).
            self.v.cid_num, self.v.cid_name = resource, f"Volunteer {resource}"
        else:
            self.endpoint = self.vars.get("DIALER_TRUNK_EP", "pstn")
            try:
                self.ring_timeout = int(self.vars.get("DIALER_RING_TIMEOUT", "30"))
            except ValueError:
                self.ring_timeout = 30
        # The dialplan's Hangup() after a failed Dial(): set by the dialplan.
        self.failed_priority = 0
        self.volunteer = sim._volunteer_behaviour(resource)
        self.p: _Channel | None = None
        self.l1: _Channel | None = None
        self.l2: _Channel | None = None
        self.bridge: _Bridge | None = None
        self.v_ringing = False
        self.contact_ringing = False
        self.dial_started = 0.0
        self.answered = 0.0
        self.waiting_long = False

    # -- bookkeeping -------------------------------------------------------------

    def cancel_task(self) -> None:
        task = self.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    def _end(self) -> None:
        self.stage = "ended"
        self.sim._calls.pop(self.linkedid, None)

    def live_channels(self, *, contact_first: bool = False) -> list[_Channel]:
        legs = [c for c in (self.p, self.l1, self.l2) if c is not None]
        ordered = [*legs, self.v] if contact_first else [self.v, *legs]
        return [c for c in ordered if c.name in self.sim._channels]

    def _contact(self) -> _Channel:
        contact = self.p or self.l1
        assert contact is not None
        return contact

    # -- the script ----------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            # Whoever cancelled (a Hangup action, a restart) tells the story.
            return

    async def _run(self) -> None:
        sim, v = self.sim, self.v
        volunteer = self.volunteer
        if volunteer.outcome is VolunteerOutcome.UNREACHABLE:
            # Refused before a channel exists (recorded:
            # shipped_volunteer_unplugged): nothing but the OriginateResponse,
            # which still names the ChannelId and the Originate's CallerID.
            cid_num, cid_name = self.cid
            v.cid_num, v.cid_name = cid_num or "<unknown>", cid_name or "<unknown>"
            self._originate_failed(0)
            self._end()
            return
        v.created = time.monotonic()
        sim._register(v)
        sim._newexten(v, "AppDial2", "(Outgoing Line)")
        for name, value in reversed(self.variables):
            sim._varset(v, name, value)
        cid_num, cid_name = self.cid
        if cid_num is not None:
            v.cid_num, v.cid_name = cid_num, cid_name or ""
            sim._newcallerid(v)
            v.conn_num, v.conn_name = v.cid_num, v.cid_name
            sim._newconnectedline(v)
        sim._dial_begin(None, v, self.resource)
        if volunteer.outcome is VolunteerOutcome.NO_RESPONSE:
            await sim._sleep(self.timeout)
            self._originate_failed(3)
            sim._hangup_event(v, 19, 480)
            self._end()
            return
        if volunteer.outcome in (VolunteerOutcome.BUSY, VolunteerOutcome.DECLINED):
            # The phone's final answer (recorded: shipped_volunteer_busy and
            # _declines): the Originate says Reason 0, not 5; the cause tells.
            cause, tech_cause, status = (
                (17, 486, "BUSY") if volunteer.outcome is VolunteerOutcome.BUSY
                else (21, 603, "NOANSWER")
            )  # fmt: skip
            sim._hangup_request(v, cause, tech_cause)
            sim._dial_end(None, v, status)
            self._originate_failed(0)
            sim._hangup_event(v, cause, tech_cause)
            self._end()
            return
        sim._newstate(v, 5)
        self._volunteer_device("RINGING")
        sim._dial_state(None, v, "RINGING")
        self.v_ringing = True
        if (
            volunteer.outcome is VolunteerOutcome.NO_ANSWER
            or volunteer.answer_after >= self.timeout
        ):
            # The Originate gives up (recorded: shipped_volunteer_no_answer):
            # no DialEnd, the phone gets CANCEL.
            await sim._sleep(self.timeout)
            self._originate_failed(3)
            sim._hangup_event(v, 19, 480)
            sim._device_state(v.device, "NOT_INUSE")
            self._end()
            return
        if volunteer.answer_after > 0:
            await sim._sleep(volunteer.answer_after)
        self._originate_succeeded()
        sim._newstate(v, 6)
        sim._dial_end(None, v, "ANSWER")
        self._volunteer_device("INUSE")
        self.v_ringing = False
        if self.shipped:
            if self._run_shipped_dialplan():
                await self._dial_pjsip()
        elif self.trunk == "pjsip":
            self._run_dialplan()
            await self._dial_pjsip()
        else:
            self._run_dialplan()
            await self._dial_local()

    def _volunteer_device(self, state: str) -> None:
        """The volunteer's device state as the phone's endpoint reports it."""
        if self.shipped:
            # device_state_busy_at = 1: one call of any kind makes the
            # device BUSY, from the first ring to the hangup.
            if state == "INUSE":
                return
            state = "BUSY"
        self.sim._device_state(self.v.device, state)

    def _originate_succeeded(self) -> None:
        v = self.v
        if self.sync_session is not None:
            self.sim._respond(
                self.sync_session, self.action_id, "Success", "Originate successfully queued"
            )
            return
        self.sim._originate_response(
            self.action_id, "Success", v.name, self.context, self.number, 4, v.uniqueid,
            v.cid_num, v.cid_name,
        )  # fmt: skip

    def _originate_failed(self, reason: int) -> None:
        v = self.v
        if self.sync_session is not None:
            self.sim._respond(self.sync_session, self.action_id, "Error", "Originate failed")
            return
        self.sim._originate_response(
            self.action_id, "Failure", self.request, self.context, self.number, reason,
            v.uniqueid, v.cid_num, v.cid_name,
        )  # fmt: skip

    def _run_shipped_dialplan(self) -> bool:
        """[dialer-outbound] then [dialer-place-call] up to its Dial(), or
        [dialer-refuse]: whether the contact is to be dialed."""
        sim, v, number = self.sim, self.v, self.number
        v.context, v.exten = self.context, number
        # FILTER(-A-Za-z0-9_,${DIALER_CALL_ID}), as the dialplan logs it.
        call_id = "".join(
            c
            for c in self.vars.get("DIALER_CALL_ID", "")
            if c.isascii() and (c.isalnum() or c in "-_")
        )
        refusal = shipped_refusal(number)
        if refusal is not None:
            sim._newexten(
                v, "Gosub", f"dialer-refuse,s,1({refusal},{number})", priority=self.priority
            )
            self._refuse(call_id, refusal, number)
            return False
        sim._newexten(v, "Gosub", f"dialer-place-call,s,1({number})", priority=self.priority)
        sim._varset(v, "LOCAL(ARG1)", number)
        sim._varset(v, "LOCAL(ARGC)", "1")
        v.context, v.exten = "dialer-place-call", "s"
        sim._newexten(v, "NoOp", f"dialer call {call_id} to {number}", priority=1)
        given = self.vars.get("DIALER_CALLERID")
        # Not the dialer's Originate (a hand-written one in a test): dialed
        # with its own CallerID rather than refused.
        presented = given if given is not None else self.cid[0] or ""
        digits = "".join(c for c in presented if c.isdigit())
        sim._newexten(v, "Set", f"CALLERID_DIGITS={digits}", priority=2)
        sim._varset(v, "CALLERID_DIGITS", digits)
        unusable = given is not None and not 8 <= len(digits) <= 15
        sim._newexten(v, "GotoIf", f"{int(unusable)}?nocallerid", priority=3)
        if unusable:
            sim._newexten(v, "Gosub", f"dialer-refuse,s,1(no-caller-id,{number})", priority=8)
            self._refuse(call_id, "no-caller-id", number)
            return False
        sim._newexten(v, "Set", f"CALLERID(num)={digits}", priority=4)
        v.cid_num = digits
        sim._newcallerid(v)
        # The Originate's caller name is the contact's own: not for the contact.
        sim._newexten(v, "Set", "CALLERID(name)=", priority=5)
        v.cid_name = ""
        sim._newcallerid(v)
        timeout = _seconds(self.ring_timeout)
        sim._newexten(v, "Dial", f"PJSIP/{number}@{self.endpoint},{timeout}", priority=6)
        self.failed_priority = 7
        return True

    def _refuse(self, call_id: str, reason: str, number: str) -> None:
        """[dialer-refuse]: Log, then Hangup(34) (recorded: shipped_refused_by_dialplan)."""
        sim, v = self.sim, self.v
        sim._varset(v, "LOCAL(ARG1)", reason)
        sim._varset(v, "LOCAL(ARG2)", number)
        sim._varset(v, "LOCAL(ARGC)", "2")
        v.context, v.exten = "dialer-refuse", "s"
        sim._newexten(
            v, "Log", f"WARNING,dialer call {call_id} to {number} refused: {reason}", priority=1
        )
        sim._newexten(v, "Hangup", "34", priority=2)
        sim._soft_hangup_request(v, 16)
        sim._qos(v)
        sim._hangup_event(v, 34, 503)
        sim._device_state(v.device, "NOT_INUSE")
        self._end()

    def _run_dialplan(self) -> None:
        sim, v = self.sim, self.v
        v.context, v.exten = self.context, self.number
        caller_id = self.vars.get("DIALER_CALLERID", self.cid[0] or "")
        sim._newexten(v, "NoOp", f"dial contact {self.number}", priority=self.priority)
        sim._newexten(v, "Set", f"CALLERID(num)={caller_id}", priority=self.priority + 1)
        sim._newexten(v, "Set", f"TRUNK={self.trunk}", priority=self.priority + 2)
        sim._varset(v, "TRUNK", self.trunk)
        sip = 1 if self.trunk == "pjsip" else 0
        sim._newexten(v, "GotoIf", f"{sip}?sip", priority=self.priority + 3)

    def _dial_vars_reset(self) -> None:
        for variable in _DIAL_VARIABLES:
            self.sim._varset(self.v, variable, "")

    def _dial_times(self) -> None:
        now = time.monotonic()
        scale = self.sim.time_scale
        answered = (now - self.answered) / scale
        dialed = (now - self.dial_started) / scale
        sim, v = self.sim, self.v
        sim._varset(v, "ANSWEREDTIME", str(int(answered)))
        sim._varset(v, "ANSWEREDTIME_MS", str(int(answered * 1000)))
        sim._varset(v, "DIALEDTIME", str(int(dialed)))
        sim._varset(v, "DIALEDTIME_MS", str(int(dialed * 1000)))
        sim._varset(v, "DIALSTATUS", "ANSWER")

    def _after_failed_dial(self, dial_status: str, priority: int) -> None:
        """The dialplan's Hangup() after Dial() gave up."""
        self.sim._varset(self.v, "DIALSTATUS", dial_status)
        self.sim._newexten(self.v, "Hangup", "", priority=priority)
        self.sim._soft_hangup_request(self.v, 16)

    def _bridge_up(self, contact: _Channel) -> _Bridge:
        """DialEnd ANSWER, then both legs enter a new bridge."""
        sim, v = self.sim, self.v
        sim._varset(v, "DIALSTATUS", "ANSWER")
        sim._varset(v, "DIALEDPEERNAME", contact.name)
        suffix = "fake-pstn" if self.trunk == "local" else self.endpoint
        sim._varset(v, "DIALEDPEERNUMBER", f"{self.number}@{suffix}")
        contact.exten = ""
        sim._dial_end(v, contact, "ANSWER")
        bridge = _Bridge()
        sim._bridge_event("BridgeCreate", bridge)
        sim._newexten(contact, "AppDial", "(Outgoing Line)")
        for channel in (contact, v):
            bridge.channels.append(channel)
            channel.bridge_id = bridge.id
            sim._bridge_event("BridgeEnter", bridge, channel)
        self.bridge = bridge
        self.answered = time.monotonic()
        self.stage = "bridged"
        return bridge

    def _leave(self, channel: _Channel) -> None:
        bridge = self.bridge
        if bridge is None or channel not in bridge.channels:
            return
        bridge.channels.remove(channel)
        channel.bridge_id = ""
        self.sim._bridge_event("BridgeLeave", bridge, channel)

    def _destroy_bridge(self) -> None:
        if self.bridge is not None:
            self.sim._bridge_event("BridgeDestroy", self.bridge)
            self.bridge = None

    def _clear_bridge_peers(self, channel: _Channel, *, with_call_id: bool = True) -> None:
        self.sim._varset(channel, "BRIDGEPEER", "")
        if with_call_id:
            self.sim._varset(channel, "BRIDGEPVTCALLID", "")

    async def _talk(self, contact_talk: float | None, already: float = 0.0) -> str:
        """Wait for whoever hangs up first; returns "contact" or "volunteer"."""
        volunteer = self.volunteer.hangs_up_after
        waits = [
            (seconds, who)
            for seconds, who in ((contact_talk, "contact"), (volunteer, "volunteer"))
            if seconds is not None
        ]
        if not waits:
            await asyncio.get_running_loop().create_future()
        seconds, who = min(waits)
        if who == "volunteer":
            seconds -= already
        await self.sim._sleep(seconds)
        return who

    # -- SIP trunk -------------------------------------------------------------------

    async def _dial_pjsip(self) -> None:
        sim, v, number = self.sim, self.v, self.number
        ep = self.endpoint
        if not self.shipped:
            sim._newexten(
                v, "Dial", f"PJSIP/{number}@{ep},{self.ring_timeout}", priority=self.priority + 6
            )
            self.failed_priority = self.priority + 7
        self._dial_vars_reset()
        self.dial_started = time.monotonic()
        behaviour = sim._contact_behaviour(number)
        if ep == "pstnbusy":
            behaviour = ContactBehaviour.busy()
        outcome = behaviour.outcome
        p = _Channel(
            self,
            f"PJSIP/{ep}-{next(sim._pjsip_seq):08x}",
            sim._new_uniqueid(),
            state=0,
            context="from-carrier" if self.shipped else "from-pstn",
            exten="s",
            tech="PJSIP",
            created=time.monotonic(),
        )
        self.p = p
        sim._register(p)
        sim._varset(p, "DIALEDPEERNUMBER", f"{number}@{ep}")
        # Dial() gives the new channel the extension it runs in as caller ID:
        # the number in the lab dialplan, "s" in the shipped subroutine.
        p.cid_num, p.cid_name = v.exten, v.cid_name
        p.conn_num, p.conn_name = v.cid_num, v.cid_name
        p.exten = v.exten
        sim._newexten(p, "AppDial", "(Outgoing Line)")
        sim._newcallerid(p)
        sim._newconnectedline(p)
        refusal = _SIP_REFUSALS.get(outcome)
        if refusal is not None:
            # The carrier's final answer (recorded: shipped_contact_busy,
            # _congestion, _declines, _not_found).
            cause, contact_tech, volunteer_tech, dial_status, variable = refusal
            sim._dial_begin(v, p, f"{number}@{ep}")
            v.conn_num = p.cid_num
            sim._newconnectedline(v)
            sim._hangup_request(p, cause, contact_tech)
            sim._dial_end(v, p, dial_status)
            self._after_failed_dial(variable, self.failed_priority)
            sim._qos(v)
            sim._hangup_event(v, cause, volunteer_tech)
            sim._device_state(v.device, "NOT_INUSE")
            sim._hangup_event(p, cause, contact_tech)
            self._end()
            return
        sim._newstate(p, 5)
        sim._dial_begin(v, p, f"{number}@{ep}")
        v.conn_num = p.cid_num
        sim._newconnectedline(v)
        sim._varset(v, "RINGTIME", "0")
        sim._varset(v, "RINGTIME_MS", "1")
        sim._dial_state(v, p, "RINGING")
        sim._device_state(p.device, "RINGING")
        self.contact_ringing = True
        self.stage = "ringing"
        if outcome is ContactOutcome.NO_ANSWER or behaviour.ring_seconds >= self.ring_timeout:
            await sim._sleep(self.ring_timeout)
            sim._dial_end(v, p, "NOANSWER")
            sim._hangup_event(p, 0)
            sim._device_state(p.device, "NOT_INUSE")
            self._after_failed_dial("NOANSWER", self.failed_priority)
            sim._qos(v)
            sim._hangup_event(v, 16)
            sim._device_state(v.device, "NOT_INUSE")
            self._end()
            return
        await sim._sleep(behaviour.ring_seconds)
        sim._newstate(p, 6)
        sim._device_state(p.device, "INUSE")
        bridge = self._bridge_up(p)
        # Two SIP legs: Asterisk moves the media to a native RTP bridge.
        bridge.technology = "native_rtp"
        if sim.dialplan_events:
            v_call_id, p_call_id = str(uuid.uuid4()), str(uuid.uuid4())
            for _ in range(3):
                sim._varset(v, "BRIDGEPEER", p.name)
                sim._varset(v, "BRIDGEPVTCALLID", v_call_id)
                sim._varset(p, "BRIDGEPEER", v.name)
                sim._varset(p, "BRIDGEPVTCALLID", p_call_id)
        who = await self._talk(behaviour.talk_seconds)
        if who == "volunteer":
            # The volunteer's phone sends BYE (recorded:
            # shipped_volunteer_hangs_up_during_talk).
            sim._qos_bridged(v, p)
            sim._hangup_request(v, 16)
            self._clear_bridge_peers(v)
            self._clear_bridge_peers(p)
            self._leave(v)
            self._leave(p)
            self._destroy_bridge()
            self._dial_times()
            sim._soft_hangup_request(v, 16)
            sim._qos(p)
            sim._hangup_event(p, 16)
            sim._hangup_event(v, 16)
            sim._device_state(p.device, "NOT_INUSE")
            sim._device_state(v.device, "NOT_INUSE")
            self._end()
            return
        # The contact sends BYE (recorded: pjsip_contact_answers_then_hangs_up).
        sim._qos_bridged(p, v)
        sim._hangup_request(p, 16)
        self._clear_bridge_peers(p)
        self._clear_bridge_peers(v)
        self._leave(p)
        self._leave(v)
        self._dial_times()
        sim._soft_hangup_request(v, 16)
        sim._qos(v)
        self._destroy_bridge()
        sim._hangup_event(v, 16)
        sim._device_state(v.device, "NOT_INUSE")
        sim._hangup_event(p, 16)
        sim._device_state(p.device, "NOT_INUSE")
        self._end()

    # -- Local channel through the fake-pstn context ----------------------------------

    async def _dial_local(self) -> None:
        sim, v, number = self.sim, self.v, self.number
        target = f"{number}@fake-pstn"
        sim._newexten(v, "Dial", f"Local/{target},{self.ring_timeout}", priority=self.priority + 4)
        self._dial_vars_reset()
        self.dial_started = time.monotonic()
        behaviour = sim._contact_behaviour(number)
        outcome = behaviour.outcome
        base = f"Local/{target}-{next(sim._local_seq):08x}"
        now = time.monotonic()
        l1 = _Channel(self, f"{base};1", sim._new_uniqueid(), state=0, context="fake-pstn",
                      exten=number, tech="Local", created=now)  # fmt: skip
        l2 = _Channel(self, f"{base};2", sim._new_uniqueid(), state=4, context="fake-pstn",
                      exten=number, tech="Local", created=now)  # fmt: skip
        self.l1, self.l2 = l1, l2
        sim._register(l1)
        sim._register(l2)
        sim._varset(l1, "DIALEDPEERNUMBER", target)
        l1.cid_num, l1.cid_name = number, v.cid_name
        l1.conn_num, l1.conn_name = v.cid_num, v.cid_name
        sim._newexten(l1, "AppDial", "(Outgoing Line)")
        sim._newcallerid(l1)
        sim._newconnectedline(l1)
        sim._varset(l2, "DIALEDPEERNUMBER", target)
        l2.cid_num, l2.cid_name = v.cid_num, v.cid_name
        l2.conn_num, l2.conn_name = number, v.cid_name
        sim._newcallerid(l2)
        sim._newconnectedline(l2)
        sim._local_bridge(l1, l2, number)
        sim._dial_begin(v, l1, target)
        device = l1.device
        failed_priority = self.failed_priority = self.priority + 5

        if outcome in (ContactOutcome.CONGESTION, ContactOutcome.BUSY):
            app, status, cause = (
                ("Congestion", "CONGESTION", 34)
                if outcome is ContactOutcome.CONGESTION
                else ("Busy", "BUSY", 17)
            )
            sim._newexten(l2, app, "5")
            sim._newstate(l2, 7)
            sim._device_state(device, "INUSE")
            sim._dial_end(v, l1, status)
            sim._hangup_request(l2, 0)
            sim._hangup_event(l1, 0)
            sim._soft_hangup_request(l2, 16)
            sim._varset(v, "DIALSTATUS", status)
            sim._hangup_event(l2, cause)
            sim._newexten(v, "Hangup", "", priority=failed_priority)
            sim._soft_hangup_request(v, 16)
            sim._device_state(device, "NOT_INUSE")
            sim._device_state(device, "NOT_INUSE")
            sim._qos(v)
            sim._hangup_event(v, 16)
            sim._device_state(v.device, "NOT_INUSE")
            self._end()
            return
        if outcome in (ContactOutcome.REJECTED, ContactOutcome.UNREACHABLE):
            cause = 21 if outcome is ContactOutcome.REJECTED else 27
            sim._newexten(l2, "Hangup", str(cause))
            sim._soft_hangup_request(l2, 16)
            self._local_contact_gone(cause, failed_priority)
            return

        sim._newexten(l2, "Ringing", "")
        sim._newstate(l1, 5)
        never = outcome is ContactOutcome.NO_ANSWER or behaviour.ring_seconds >= self.ring_timeout
        sim._newexten(l2, "Wait", "3600" if never else _seconds(behaviour.ring_seconds), priority=2)
        sim._device_state(device, "INUSE")
        sim._varset(v, "RINGTIME", "0")
        sim._varset(v, "RINGTIME_MS", "1")
        sim._dial_state(v, l1, "RINGING")
        self.contact_ringing = True
        self.stage = "ringing"
        if never:
            await sim._sleep(self.ring_timeout)
            sim._dial_end(v, l1, "NOANSWER")
            sim._hangup_request(l2, 0)
            sim._hangup_event(l1, 0)
            self._after_failed_dial("NOANSWER", failed_priority)
            sim._qos(v)
            sim._device_state(device, "NOT_INUSE")
            sim._hangup_event(v, 16)
            sim._device_state(v.device, "NOT_INUSE")
            sim._soft_hangup_request(l2, 16)
            sim._hangup_event(l2, 0)
            sim._device_state(device, "NOT_INUSE")
            self._end()
            return
        await sim._sleep(behaviour.ring_seconds)
        sim._newexten(l2, "Answer", "", priority=3)
        sim._newstate(l2, 6)
        sim._newstate(l1, 6)
        sim._device_state(device, "INUSE")
        sim._device_state(device, "INUSE")
        self._bridge_up(l1)
        if sim.dialplan_events:
            sim._varset(l1, "BRIDGEPEER", v.name)
            sim._varset(l1, "BRIDGEPVTCALLID", str(uuid.uuid4()))
            sim._varset(v, "BRIDGEPEER", l1.name)
        # Answer() takes half a second before the dialplan moves on.
        await sim._sleep(0.5)
        talk = behaviour.talk_seconds
        sim._newexten(l2, "Wait", "3600" if talk is None else _seconds(talk), priority=4)
        self.waiting_long = True
        who = await self._talk(talk, already=0.5)
        if who == "volunteer":
            sim._hangup_request(v, 16)
            self._caller_leaves_bridge(16)
            self._end()
            return
        # The fake-pstn dialplan hangs up (recorded: concurrent_three_calls, c0012).
        sim._newexten(l2, "Hangup", "16", priority=5)
        sim._soft_hangup_request(l2, 16)
        self._far_end_hangs_up(16)
        self._end()

    def _local_contact_gone(self, cause: int, failed_priority: int) -> None:
        """The ;2 half hung up before answering (recorded: call rejected)."""
        sim, v = self.sim, self.v
        l1, l2 = self.l1, self.l2
        assert l1 is not None and l2 is not None
        sim._hangup_request(l1, cause)
        sim._hangup_event(l2, cause)
        sim._device_state(l1.device, "NOT_INUSE")
        sim._dial_end(v, l1, "NOANSWER")
        sim._hangup_event(l1, cause)
        self._after_failed_dial("CHANUNAVAIL", failed_priority)
        sim._device_state(l1.device, "NOT_INUSE")
        sim._qos(v)
        sim._hangup_event(v, cause, 403 if cause == 21 else None)
        sim._device_state(v.device, "NOT_INUSE")
        self._end()

    def _far_end_hangs_up(self, cause: int) -> None:
        """The ;2 half of a bridged Local call ended; ;1 and the volunteer follow."""
        sim, v = self.sim, self.v
        l1, l2 = self.l1, self.l2
        assert l1 is not None and l2 is not None
        sim._hangup_request(l1, cause)
        self._clear_bridge_peers(l1)
        sim._hangup_event(l2, cause)
        sim._device_state(l1.device, "NOT_INUSE")
        self._clear_bridge_peers(v, with_call_id=False)
        self._leave(l1)
        sim._hangup_event(l1, cause)
        self._leave(v)
        self._destroy_bridge()
        self._dial_times()
        sim._soft_hangup_request(v, 16)
        sim._device_state(l1.device, "NOT_INUSE")
        sim._qos(v)
        sim._hangup_event(v, 16)
        sim._device_state(v.device, "NOT_INUSE")

    # -- endings forced from outside the script --------------------------------------

    def hangup_by_action(self, channel: _Channel, cause: int) -> None:
        """The ``Hangup`` action hit ``channel`` while the script was waiting."""
        self.cancel_task()
        if self.stage == "vol":
            self._volunteer_cancelled(cause)
        elif self.stage == "ringing":
            if channel is self.v:
                self._caller_cancels_dial(cause)
            else:
                self._callee_gone_while_ringing(channel, cause)
        elif self.stage == "bridged":
            if channel is self.v:
                self._caller_leaves_bridge(cause)
            else:
                self._callee_leaves_bridge(channel, cause)
        self._end()

    def teardown_for_restart(self) -> None:
        """After the SoftHangupRequest(4) of every channel (restart_1)."""
        if self.stage == "bridged" and self.trunk == "local":
            sim, v = self.sim, self.v
            l1, l2 = self.l1, self.l2
            assert l1 is not None and l2 is not None
            self._clear_bridge_peers(v, with_call_id=False)
            self._clear_bridge_peers(l1)
            self._leave(v)
            self._dial_times()
            sim._soft_hangup_request(v, 16)
            sim._qos(v)
            self._leave(l1)
            self._destroy_bridge()
            sim._hangup_event(v, 16)
            sim._hangup_request(l2, 16)
            sim._hangup_event(l1, 16)
            sim._soft_hangup_request(l2, 16)
            sim._hangup_event(l2, 0)
            sim._device_state(v.device, "NOT_INUSE")
            sim._device_state(l1.device, "NOT_INUSE")
            sim._device_state(l1.device, "NOT_INUSE")
        elif self.stage == "vol":
            self._volunteer_cancelled(16)
        elif self.stage == "ringing":
            self._caller_cancels_dial(16)
        elif self.stage == "bridged":
            self._caller_leaves_bridge(16)
        self._end()

    def _volunteer_cancelled(self, cause: int) -> None:
        sim, v = self.sim, self.v
        if self.v_ringing:
            sim._dial_end(None, v, "CANCEL")
        self._originate_failed(1)
        sim._hangup_event(v, cause)
        if self.v_ringing:
            sim._device_state(v.device, "NOT_INUSE")

    def _caller_cancels_dial(self, cause: int) -> None:
        sim, v = self.sim, self.v
        if self.p is not None:
            sim._dial_end(v, self.p, "CANCEL")
            sim._hangup_event(self.p, 16)
            sim._device_state(self.p.device, "NOT_INUSE")
        elif self.l1 is not None and self.l2 is not None:
            sim._dial_end(v, self.l1, "CANCEL")
            sim._hangup_request(self.l2, 16)
            sim._hangup_event(self.l1, 16)
            sim._soft_hangup_request(self.l2, 16)
            sim._hangup_event(self.l2, 16)
            sim._device_state(self.l1.device, "NOT_INUSE")
            sim._device_state(self.l1.device, "NOT_INUSE")
        sim._varset(v, "DIALSTATUS", "CANCEL")
        sim._soft_hangup_request(v, 16)
        sim._qos(v)
        sim._hangup_event(v, cause)
        sim._device_state(v.device, "NOT_INUSE")

    def _callee_gone_while_ringing(self, channel: _Channel, cause: int) -> None:
        sim, v = self.sim, self.v
        if self.p is not None:
            # Recorded: shipped_hangup_by_volunteer_while_contact_rings.
            p = self.p
            sim._dial_end(v, p, "NOANSWER")
            sim._hangup_event(p, cause)
            sim._device_state(p.device, "NOT_INUSE")
            self._after_failed_dial("NOANSWER", self.failed_priority)
            sim._qos(v)
            sim._hangup_event(v, 16)
            sim._device_state(v.device, "NOT_INUSE")
            return
        l1, l2 = self.l1, self.l2
        assert l1 is not None and l2 is not None
        if channel is l1:
            sim._hangup_request(l2, cause)
            sim._hangup_event(l1, cause)
            sim._dial_end(v, l1, "NOANSWER")
            sim._soft_hangup_request(l2, 16)
            sim._hangup_event(l2, cause)
            sim._device_state(l1.device, "NOT_INUSE")
            sim._device_state(l1.device, "NOT_INUSE")
            self._after_failed_dial("CHANUNAVAIL", self.failed_priority)
            sim._qos(v)
            sim._hangup_event(v, cause)
            sim._device_state(v.device, "NOT_INUSE")
        else:
            self._local_contact_gone(cause, self.failed_priority)

    def _caller_leaves_bridge(self, cause: int) -> None:
        """The volunteer's leg goes (recorded: reconnect_2, hangup by channel regex)."""
        sim, v = self.sim, self.v
        contact = self._contact()
        if self.trunk == "local":
            l2 = self.l2
            assert l2 is not None
            self._clear_bridge_peers(v, with_call_id=False)
            self._clear_bridge_peers(contact)
            self._leave(v)
            self._leave(contact)
            self._destroy_bridge()
            self._dial_times()
            sim._hangup_request(l2, 16)
            sim._soft_hangup_request(l2, 16)
            sim._soft_hangup_request(v, 16)
            sim._hangup_event(l2, 16)
            sim._qos(v)
            sim._device_state(contact.device, "NOT_INUSE")
            sim._hangup_event(v, cause)
            sim._device_state(v.device, "NOT_INUSE")
            sim._hangup_event(contact, 16)
            sim._device_state(contact.device, "NOT_INUSE")
            return
        self._clear_bridge_peers(v)
        self._clear_bridge_peers(contact)
        self._leave(v)
        self._leave(contact)
        self._destroy_bridge()
        self._dial_times()
        sim._soft_hangup_request(v, 16)
        sim._qos(v)
        sim._hangup_event(v, cause)
        sim._device_state(v.device, "NOT_INUSE")
        sim._qos(contact)
        sim._hangup_event(contact, 16)
        sim._device_state(contact.device, "NOT_INUSE")

    def _callee_leaves_bridge(self, channel: _Channel, cause: int) -> None:
        """A contact leg is hung up (recorded for ;1: pjsip_hangup_by_action_during_talk)."""
        sim, v = self.sim, self.v
        if self.trunk == "local":
            l1, l2 = self.l1, self.l2
            assert l1 is not None and l2 is not None
            if channel is l2:
                self._far_end_hangs_up(cause)
                return
            self._clear_bridge_peers(l1)
            self._clear_bridge_peers(v, with_call_id=False)
            self._leave(l1)
            sim._hangup_request(l2, cause)
            sim._hangup_event(l1, cause)
            self._leave(v)
            self._destroy_bridge()
            self._dial_times()
            sim._device_state(l1.device, "NOT_INUSE")
            sim._soft_hangup_request(l2, 16)
            sim._hangup_event(l2, 16)
            sim._soft_hangup_request(v, 16)
            sim._device_state(l1.device, "NOT_INUSE")
            sim._qos(v)
            sim._hangup_event(v, 16)
            sim._device_state(v.device, "NOT_INUSE")
            return
        # Recorded: shipped_hangup_by_operator_during_talk.
        p = self._contact()
        self._clear_bridge_peers(p)
        self._clear_bridge_peers(v)
        self._leave(p)
        self._leave(v)
        self._dial_times()
        self._destroy_bridge()
        sim._soft_hangup_request(v, 16)
        sim._qos(p)
        sim._qos(v)
        sim._hangup_event(v, 16)
        sim._hangup_event(p, cause)
        sim._device_state(v.device, "NOT_INUSE")
        sim._device_state(p.device, "NOT_INUSE")


def _number_key(number: str) -> str:
    return number.removeprefix("+")


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _parse_event_mask(text: str) -> frozenset[str]:
    lowered = text.strip().lower()
    if lowered in ("on", "yes", "true", "1"):
        return _EVENT_CLASSES
    if lowered in ("off", "no", "false", "0", ""):
        return frozenset()
    return frozenset(part.strip() for part in lowered.split(",")) & _EVENT_CLASSES


def _parse_caller_id(text: str | None) -> tuple[str | None, str | None]:
    """``"Name" <num>`` / ``Name <num>`` / ``num`` -> (num, name)."""
    if not text:
        return None, None
    match = _CALLER_ID.match(text)
    if match is None:
        return text.strip(), ""
    name = match.group("qname")
    if name is None:
        name = match.group("name") or ""
    return match.group("num").strip(), name.strip()


async def run_simulator(
    host: str,
    port: int,
    *,
    username: str,
    secret: str,
    least_privilege: bool = False,
    time_scale: float = 1.0,
    default_trunk: Trunk = "carrier",
    dialplan_events: bool = True,
) -> None:
    """Serve the simulator until cancelled (``dialer simulate-pbx``)."""
    sim = AmiSimulator(
        host=host,
        port=port,
        username=username,
        secret=secret,
        least_privilege=least_privilege,
        time_scale=time_scale,
        default_trunk=default_trunk,
        dialplan_events=dialplan_events,
    )
    await sim.start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # A clean exit on `kill` too (supervisors and benchmarks send SIGTERM).
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stopped.set)
    try:
        await stopped.wait()
    finally:
        await sim.stop()


class RawAmiClient:
    """A bare AMI connection for tests and benchmarks: no reconnects, no
    routing, every message kept in arrival order in ``messages``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder = Decoder()
        self.banner: str | None = None
        self.messages: list[Message] = []
        self.closed = asyncio.Event()
        self._changed = asyncio.Condition()
        self._ids = itertools.count(1)
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, host: str, port: int) -> RawAmiClient:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def _read(self) -> None:
        try:
            while data := await self._reader.read(65536):
                for message in self._decoder.feed(data):
                    if message.is_banner:
                        self.banner = message.banner
                    else:
                        self.messages.append(message)
                async with self._changed:
                    self._changed.notify_all()
        except ConnectionError:
            pass
        finally:
            self.closed.set()
            async with self._changed:
                self._changed.notify_all()

    def send(self, action: Action) -> str:
        """Write ``action`` (through the encoder); returns its ActionID."""
        if action.action_id is None:
            action = Action(action.name, action.headers, action.variables, f"t{next(self._ids)}")
        self._writer.write(encode_action(action))
        assert action.action_id is not None
        return action.action_id

    def send_bytes(self, data: bytes) -> None:
        self._writer.write(data)

    async def wait_for(
        self,
        predicate: Callable[[Message], bool],
        *,
        start: int = 0,
        within: float = 5.0,
    ) -> Message:
        """The first message from index ``start`` on that satisfies ``predicate``."""
        async with asyncio.timeout(within), self._changed:
            while True:
                for message in self.messages[start:]:
                    if predicate(message):
                        return message
                if self.closed.is_set():
                    raise ConnectionError("connection closed while waiting")
                await self._changed.wait()

    async def wait_until(self, condition: Callable[[], bool], *, within: float = 5.0) -> None:
        async with asyncio.timeout(within), self._changed:
            while not condition():
                if self.closed.is_set():
                    raise ConnectionError("connection closed while waiting")
                await self._changed.wait()

    async def request(self, action: Action, *, within: float = 5.0) -> Message:
        """Send ``action`` and return its response (not the list that may follow)."""
        start = len(self.messages)
        action_id = self.send(action)
        return await self.wait_for(
            lambda m: m.response is not None and m.event is None and m.action_id == action_id,
            start=start,
            within=within,
        )

    async def request_list(self, action: Action, *, within: float = 5.0) -> list[Message]:
        """Send a list action; return the response, the items and the Complete event."""
        start = len(self.messages)
        action_id = self.send(action)
        await self.wait_for(
            lambda m: (
                m.action_id == action_id
                and (m.get("EventList") == "Complete" or m.response == "Error")
            ),
            start=start,
            within=within,
        )
        return [m for m in self.messages[start:] if m.action_id == action_id]

    async def login(self, username: str, secret: str) -> Message:
        return await self.request(Action.build("Login", {"Username": username, "Secret": secret}))

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
