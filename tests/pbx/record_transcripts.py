"""Record AMI sessions from a real Asterisk running the shipped ``asterisk-config/``.

    .venv/bin/python -m tests.pbx.record_transcripts [--out tests/fixtures/ami] [NAME ...]

Starts its own Asterisk through the real-PBX harness (the shipped
configuration with the operator's edits, on free ports), with SIPp desk
phones and the carrier of ``tests/pbx/scenarios/carrier.xml``, plus one
extra AMI user, ``recorder``, that reads every event class the dialer's
least-privilege user cannot (``dialplan``, ``system``...) and has no event
filter: the recordings then hold every event, VarSet and Newexten
included, like the lab recordings in ``tests/fixtures/ami/``.

Each scenario is one AMI connection and one file, ``shipped_<name>.ami``,
written by the product's own AMI client with its wire trace on
(:mod:`ami_bridge.wiretrace`): the Login, the resync ``CoreShowChannels``,
the ``Originate`` built exactly as the worker builds it
(:class:`ami_bridge.pbx.AmiPbx` with an ``OriginateRequest`` shaped like
``dialer.worker.call_worker``'s), a ``Hangup`` where someone presses Hang up in the
app, then the ``Logoff`` a second after the call ended.  Secrets are masked.
A power session (:class:`PowerSession`) is one connection too: the session
leg's Originate into ``[dialer-power]``, then each contact's call in turn
(``Local/<session>@dialer-power-join/n`` into ``[dialer-outbound]``), the
next once the last one ended, and a ``Hangup`` of the session's channel
where the volunteer leaves.

Scenarios run one after the other in a fixed order on one fresh Asterisk,
with fixed call ids, so channel names (``PJSIP/1001-00000003``) come out
the same on every run; what changes from run to run is only what Asterisk
makes up itself (times, the contact leg's ``Uniqueid``, bridge ids, RTP
numbers).  After re-recording, update the pinned values in
``tests/golden/test_transcripts.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import re
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from ami_bridge.client import AmiClient
from ami_bridge.pbx import AmiPbx
from ami_bridge.spy_legs import spy_channel_id
from ami_bridge.stream import Received, StreamItem
from ami_bridge.tracker import CallTracker, CallUpdate
from dialer.domain.ports import HangupBy, OriginateRequest, SpyMode, SpyRequest
from dialer.domain.vocabulary import CallOutcome, CallState
from tests.pbx.conftest import (
    STANDARD_UAS,
    UNPLUGGED,
    VOLUNTEER_BUSY,
    VOLUNTEER_DECLINES,
    VOLUNTEER_HANGS_UP,
    VOLUNTEER_NO_ANSWER,
    pbx_running,
    standard_phones,
    start_pbx,
)
from tests.pbx.realpbx import missing_pieces

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "tests" / "fixtures" / "ami"
O = CallOutcome  # noqa: E741
PREFIX = "shipped_"
RECORDER = "recorder"
# The campaign caller ID the dialer sends as DIALER_CALLERID (E.164 digits).
CALLER_ID = "15145550000"
CONTEXT = "dialer-outbound"
# The volunteer's phone rings this long (DIALER_ORIGINATE_TIMEOUT_MS), as in
# the lab recordings.
ORIGINATE_TIMEOUT_MS = 15_000
# Events that follow a call's end (the bridge's destruction, the last
# DeviceStateChange) arrive within milliseconds, or seconds on a loaded
# machine: a recording ends once Asterisk has said nothing for a second.
TAIL_SECONDS = 1.0


def recorder_user(secret: str) -> str:
    """The manager.conf section of the recording user: full read, no filter."""
    return (
        f"[{RECORDER}]\n"
        f"secret = {secret}\n"
        "deny = 0.0.0.0/0.0.0.0\n"
        "permit = 127.0.0.1/255.255.255.255\n"
        "read = call,system,reporting,agent,dialplan,originate\n"
        "write = call,originate,system,reporting\n"
        "writetimeout = 5000\n"
    )


@dataclass(frozen=True)
class Scenario:
    name: str
    call_id: str
    extension: str
    number: str  # E.164 digits; the carrier acts on the last digit
    # What the dialer concludes, as its tracker sees the call live.
    outcome: CallOutcome
    what: str
    # Someone presses Hang up in the app (AmiPbx.hangup_call, as the
    # service does): who, once the call reached which state, how long after.
    hangup: tuple[HangupBy, CallState, float] | None = None
    # The volunteer's phone is their own number (E.164 digits), rung over the
    # carrier through the outbound context; ``extension`` is then unused.
    own_number: str | None = None
    # An organizer listens, whispers or barges from this desk phone once the
    # call talks (AmiPbx.spy_on_call, as the worker does), before any hang-up;
    # with ChanSpy's beep or not.
    spy: tuple[SpyMode, str, bool] | None = None

    @property
    def outcomes(self) -> dict[str, CallOutcome]:
        return {self.call_id: self.outcome}


@dataclass(frozen=True)
class PowerContact:
    """One contact dialed on a power session: an ordinary call of the dialer
    whose volunteer leg is ``Local/<session>@dialer-power-join/n``."""

    call_id: str
    number: str  # E.164 digits; the carrier acts on the last digit
    outcome: CallOutcome
    what: str
    # The volunteer's session leg is hung up (the Hangup action on its
    # channel, as the dialer does when the volunteer leaves) this long
    # after the contact answered.
    volunteer_leaves_after: float | None = None


@dataclass(frozen=True)
class PowerSession:
    """A power-mode session: the volunteer's phone rung once into
    ``[dialer-power]`` (its own ConfBridge), then its contacts one after
    the other, each once the previous one ended."""

    name: str
    session: str  # the session id, digits: the conference is dialer-power-<session>
    extension: str
    contacts: tuple[PowerContact, ...]
    what: str

    @property
    def outcomes(self) -> dict[str, CallOutcome]:
        return {contact.call_id: contact.outcome for contact in self.contacts}


Recorded = Scenario | PowerSession

SCENARIOS: tuple[Recorded, ...] = (
    Scenario(
        "volunteer_unplugged", "s0001", UNPLUGGED, "15145550180",
        O.VOLUNTEER_UNREACHABLE,
        "nothing listens at the phone's SIP contact, qualify says Unavailable: "
        "OriginateResponse Failure Reason 0 at once, no channel at all",
    ),
    Scenario(
        "volunteer_busy", "s0002", VOLUNTEER_BUSY, "15145550180",
        O.VOLUNTEER_BUSY,
        "the phone answers 486 Busy Here: the volunteer leg hangs up with cause 17, "
        "OriginateResponse Failure Reason 0 (not 5)",
    ),
    Scenario(
        "volunteer_no_answer", "s0003", VOLUNTEER_NO_ANSWER, "15145550180",
        O.VOLUNTEER_NO_ANSWER,
        "the phone rings (180) until the Originate's 15 s Timeout: CANCEL, "
        "OriginateResponse Failure Reason 3",
    ),
    Scenario(
        "volunteer_declines", "s0004", VOLUNTEER_DECLINES, "15145550180",
        O.VOLUNTEER_BUSY,
        "the phone answers 603 Decline",
    ),
    Scenario(
        "contact_answers_then_hangs_up", "s0005", "1001", "15145550100",
        O.COMPLETED,
        "the contact rings 1 s, answers, talks 3 s and hangs up (BYE)",
    ),
    Scenario(
        "contact_busy", "s0006", "1002", "15145550111",
        O.CONTACT_BUSY,
        "the carrier answers 486 Busy Here",
    ),
    Scenario(
        "contact_no_answer", "s0007", "1009", "15145550122",
        O.CONTACT_NO_ANSWER,
        "the contact rings until the dialplan's 30 s DIALER_RING_TIMEOUT",
    ),
    Scenario(
        "contact_declines", "s0008", "1004", "15145550133",
        O.CONTACT_REJECTED,
        "the carrier answers 603 Decline",
    ),
    Scenario(
        "contact_congestion", "s0009", "1005", "15145550146",
        O.CONTACT_CONGESTION,
        "the carrier answers 503 Service Unavailable",
    ),
    Scenario(
        "contact_not_found", "s0010", "1006", "15145550157",
        O.CONTACT_UNREACHABLE,
        "the carrier answers 404 Not Found (an unallocated number)",
    ),
    Scenario(
        "volunteer_hangs_up_during_talk", "s0011", VOLUNTEER_HANGS_UP, "15145550185",
        O.COMPLETED,
        "the contact answers and stays; the volunteer's phone sends BYE 3 s after answering",
    ),
    Scenario(
        "hangup_by_operator_during_talk", "s0012", "1007", "15145550194",
        O.HUNG_UP_BY_OPERATOR,
        "the contact answers and stays; 1.5 s later the operator hangs the call up "
        "from the app (Hangup of the contact's channel)",
        hangup=("operator", CallState.TALKING, 1.5),
    ),
    Scenario(
        "refused_by_dialplan", "s0013", "1008", "15145551212",
        O.FAILED,
        "a billed number (directory assistance) the dialplan refuses: the volunteer "
        "answers, then the dialplan hangs the leg up with cause 34",
    ),
    Scenario(
        "hangup_by_volunteer_while_contact_rings", "s0014", "1010", "15145550202",
        O.HUNG_UP_BY_VOLUNTEER,
        "the contact rings; 1.5 s later the volunteer hangs up from the app "
        "(Hangup of the contact's ringing channel)",
        hangup=("volunteer", CallState.RINGING_CONTACT, 1.5),
    ),
    Scenario(
        "own_number_contact_answers_then_hangs_up", "s0015", "", "15145550100",
        O.COMPLETED,
        "the volunteer's own number (a Local channel into dialer-outbound) answers "
        "after 1 s and stays; the contact answers after 1 s, talks 3 s and hangs up",
        own_number="15145550125",
    ),
    Scenario(
        "own_number_busy", "s0016", "", "15145550100",
        O.VOLUNTEER_BUSY,
        "the volunteer's own number is busy (486 from the carrier)",
        own_number="15145550131",
    ),
    Scenario(
        "listen_during_talk", "s0017", "1011", "15145550105",
        O.HUNG_UP_BY_OPERATOR,
        "the contact answers and stays; an organizer listens from desk phone 1012 "
        "([dialer-supervise], ChanSpy ESq); the operator hangs up 3 s later and "
        "ChanSpy's E ends the organizer's call",
        hangup=("operator", CallState.TALKING, 3.0),
        spy=("listen", "1012", False),
    ),
    Scenario(
        "barge_with_beep", "s0018", "1013", "15145550105",
        O.HUNG_UP_BY_OPERATOR,
        "as listen_during_talk, barging with ChanSpy's beep (no q): the shipped "
        "PBX has no `beep` sound, so ChanSpy hangs the organizer up at once",
        hangup=("operator", CallState.TALKING, 3.0),
        spy=("barge", "1014", True),
    ),
    PowerSession(
        "power_session", "19", "1015",
        (
            PowerContact(
                "s0019", "15145550100", O.COMPLETED,
                "the contact rings 1 s, answers into the conference, talks 3 s and hangs up",
            ),
            PowerContact("s0020", "15145550111", O.CONTACT_BUSY, "the carrier answers 486"),
            PowerContact("s0021", "15145550133", O.CONTACT_REJECTED, "the carrier answers 603"),
            PowerContact(
                "s0022", "15145550105", O.COMPLETED,
                "the contact answers and stays; 1.5 s later the volunteer's session leg is "
                "hung up (Hangup action): ConfBridge puts the contact's ;2 half out",
                volunteer_leaves_after=1.5,
            ),
            PowerContact(
                "s0023", "15145550100", O.VOLUNTEER_UNREACHABLE,
                "dialed after the volunteer left: the ;2 half finds no volunteer in the "
                "conference and hangs up (16) before anything is dialed, Reason 0",
            ),
        ),
        "desk phone 1015 answers the session's Originate into [dialer-power] and waits "
        "in ConfBridge dialer-power-19; five contacts are dialed in turn through "
        "Local/19@dialer-power-join/n",
    ),
)  # fmt: skip

# The session leg's Originate, as the power worker sends it: ChannelId
# ps<session>-s ends in neither -v nor -o, so the tracker takes no call from it.
POWER_CONTEXT = "dialer-power"
POWER_JOIN = "dialer-power-join"


class SessionWatch(CallTracker):
    """The product's tracker, noting on the way what it ignores: the power
    session legs (their channel names, and their joining the conference)."""

    def __init__(self) -> None:
        super().__init__()
        self.session_channels: dict[str, str] = {}
        self.joined: set[str] = set()
        self.session_changed = asyncio.Event()

    def feed(self, item: StreamItem) -> list[CallUpdate]:
        if isinstance(item, Received):
            message = item.message
            uniqueid = message.get("Uniqueid") or ""
            if uniqueid.endswith("-s"):
                if message.event == "Newchannel":
                    self.session_channels[uniqueid] = message.get("Channel") or ""
                elif message.event == "ConfbridgeJoin":
                    self.joined.add(uniqueid)
                self.session_changed.set()
        return super().feed(item)


class Recording:
    """One scenario's AMI connection: the product's client and tracker, traced."""

    def __init__(self, port: int, secret: str, trace_dir: Path) -> None:
        client = AmiClient(
            "127.0.0.1",
            port,
            RECORDER,
            SecretStr(secret),
            # No Ping during a recording: it would only add noise.
            ping_interval=3600,
            trace_file=f"{trace_dir}/",
        )
        self.watch = SessionWatch()
        self.pbx = AmiPbx(client, self.watch)
        self.trace_dir = trace_dir
        self.updates: dict[str, CallUpdate] = {}
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Recording:
        await self.pbx.start(wait=True)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.pbx.close()
        if self._reader is not None:
            await self._reader

    async def _read(self) -> None:
        async for update in self.pbx.updates():
            async with self._changed:
                self.updates[update.call_id] = update
                self._changed.notify_all()

    async def until(self, call_id: str, *states: CallState, timeout: float = 90) -> CallUpdate:
        async with asyncio.timeout(timeout), self._changed:
            while True:
                update = self.updates.get(call_id)
                if update is not None and (update.state in states or update.ended):
                    return update
                await self._changed.wait()

    async def session_joined(self, uniqueid: str, timeout: float = 30) -> str:
        """The session leg's channel name, once it is in its conference."""
        async with asyncio.timeout(timeout):
            while uniqueid not in self.watch.joined:
                self.watch.session_changed.clear()
                await self.watch.session_changed.wait()
        return self.watch.session_channels[uniqueid]

    async def spy_settled(self, spy_uniqueid: str, timeout: float = 30) -> None:
        """Until the organizer's leg is spying (ChanSpyStart) or has ended.

        Read from the wire trace, which the tracker (it follows calls, not
        organizers' legs) does not report: the scenario's hang-up must come
        after the spying began, which a fixed delay did not always on a
        loaded machine (the organizer's phone answered late, and ChanSpy
        found the call already over)."""
        # read_text turns the wire's CRLF into \n.
        started = f"Event: ChanSpyStart\n(?:.+\n)*?SpyerUniqueid: {spy_uniqueid}\n"
        ended = f"Event: Hangup\n(?:.+\n)*?Uniqueid: {spy_uniqueid}\n"
        settled = re.compile(f"{started}|{ended}")
        async with asyncio.timeout(timeout):
            while not any(
                settled.search(path.read_text(errors="replace"))
                for path in self.trace_dir.glob("*.ami")
            ):
                await asyncio.sleep(0.1)

    async def quiet(self, seconds: float, timeout: float = 15) -> None:
        """Until the wire trace has not grown for ``seconds``."""
        async with asyncio.timeout(timeout):
            size = -1
            while (now := sum(p.stat().st_size for p in self.trace_dir.glob("*.ami"))) != size:
                size = now
                await asyncio.sleep(seconds)

    def trace(self) -> Path:
        [path] = self.trace_dir.glob("*.ami")
        return path


def originate_request(scenario: Scenario) -> OriginateRequest:
    """What ``dialer.worker.call_worker`` asks of the PBX port for this call."""
    return OriginateRequest(
        call_id=scenario.call_id,
        channel=(
            f"Local/{scenario.own_number}@{CONTEXT}/n"
            if scenario.own_number
            else f"PJSIP/{scenario.extension}"
        ),
        context=CONTEXT,
        exten=scenario.number,
        caller_id_name="Phone bank",
        caller_id_number=scenario.number,
        timeout_ms=ORIGINATE_TIMEOUT_MS,
        variables={"DIALER_CALL_ID": scenario.call_id, "DIALER_CALLERID": CALLER_ID},
    )


def spy_request(scenario: Scenario) -> SpyRequest:
    """What ``dialer.worker.call_worker`` asks of the PBX port for an organizer's phone."""
    assert scenario.spy is not None
    mode, phone, beep = scenario.spy
    return SpyRequest(
        request_id=1,
        call_id=scenario.call_id,
        mode=mode,
        channel=f"PJSIP/{phone}",
        context="dialer-supervise",
        caller_id_name=mode.title(),
        caller_id_number=CALLER_ID,
        timeout_ms=ORIGINATE_TIMEOUT_MS,
        beep=beep,
    )


def power_contact_request(session: PowerSession, contact: PowerContact) -> OriginateRequest:
    """A contact of a power session: a click-to-call whose volunteer is the conference."""
    return OriginateRequest(
        call_id=contact.call_id,
        channel=f"Local/{session.session}@{POWER_JOIN}/n",
        context=CONTEXT,
        exten=contact.number,
        caller_id_name="Phone bank",
        caller_id_number=contact.number,
        timeout_ms=ORIGINATE_TIMEOUT_MS,
        variables={"DIALER_CALL_ID": contact.call_id, "DIALER_CALLERID": CALLER_ID},
    )


async def play_power(session: PowerSession, recording: Recording) -> dict[str, CallUpdate]:
    leg = f"ps{session.session}-s"
    await recording.pbx.client.originate(
        f"PJSIP/{session.extension}",
        context=POWER_CONTEXT,
        exten=session.session,
        caller_id_name="Phone bank",
        caller_id_num=CALLER_ID,
        timeout_ms=ORIGINATE_TIMEOUT_MS,
        channel_id=leg,
        variables={"DIALER_CALLERID": CALLER_ID},
        action_id=f"power-{session.session}",
    )
    channel = await recording.session_joined(leg)
    finals: dict[str, CallUpdate] = {}
    for contact in session.contacts:
        await recording.pbx.originate(power_contact_request(session, contact))
        if contact.volunteer_leaves_after is not None:
            reached = await recording.until(contact.call_id, CallState.TALKING)
            if not reached.ended:
                await asyncio.sleep(contact.volunteer_leaves_after)
                await recording.pbx.client.hangup(channel)
        finals[contact.call_id] = await recording.until(contact.call_id, CallState.ENDED)
        # The next contact is dialed once the last one's events are all in,
        # as the worker does after the call's end.
        await recording.quiet(TAIL_SECONDS)
    return finals


async def play(scenario: Scenario, recording: Recording) -> dict[str, CallUpdate]:
    await recording.pbx.originate(originate_request(scenario))
    if scenario.spy is not None:
        reached = await recording.until(scenario.call_id, CallState.TALKING)
        if not reached.ended:
            await asyncio.sleep(0.5)
            await recording.pbx.spy_on_call(spy_request(scenario))
            await recording.spy_settled(spy_channel_id(spy_request(scenario)))
    if scenario.hangup is not None:
        by, state, after = scenario.hangup
        reached = await recording.until(scenario.call_id, state)
        if not reached.ended:
            await asyncio.sleep(after)
            await recording.pbx.hangup_call(scenario.call_id, by)
    final = await recording.until(scenario.call_id, CallState.ENDED)
    await recording.quiet(TAIL_SECONDS)
    return {scenario.call_id: final}


async def record(
    scenario: Recorded, port: int, secret: str, work: Path, out: Path
) -> dict[str, CallUpdate]:
    """Record ``scenario`` into ``out``; the last update of each of its calls."""
    trace_dir = work / scenario.name
    trace_dir.mkdir(parents=True)
    async with Recording(port, secret, trace_dir) as recording:
        if isinstance(scenario, PowerSession):
            finals = await play_power(scenario, recording)
        else:
            finals = await play(scenario, recording)
    target = out / f"{PREFIX}{scenario.name}.ami"
    shutil.move(recording.trace(), target)
    # Traces are private to their owner; a fixture is for everyone to read.
    target.chmod(0o644)
    return finals


@contextlib.asynccontextmanager
async def recording_pbx(folder: Path) -> AsyncIterator[tuple[int, str]]:
    """A fresh Asterisk with the standard phones and carrier: (AMI port, recorder secret)."""
    secret = f"rec{random.getrandbits(64):x}"
    asterisk, agents = await start_pbx(
        folder, STANDARD_UAS, standard_phones(), appended={"manager.conf": recorder_user(secret)}
    )
    async with pbx_running(asterisk, agents):
        # Every phone judged by qualify first: the unplugged one must be
        # refused at once, not rung, and a phone's first qualify landing in
        # the middle of a recording would add PeerStatus/ContactStatus noise
        # about a phone the call never touches.
        await asterisk.wait_for_contacts(
            {
                phone.extension: "Avail" if phone.ua else "Unavail"
                for phone in asterisk.layout.phones
            }
            | {"carrier": "Avail"},
            timeout=60,
        )
        yield asterisk.ami_port, secret


async def record_all(
    out: Path, folder: Path, scenarios: Sequence[Recorded] = SCENARIOS
) -> AsyncIterator[tuple[Recorded, dict[str, CallUpdate]]]:
    """Record ``scenarios`` in order on one fresh Asterisk kept in ``folder``;
    yields each with its calls' last updates (by call id) as the tracker saw them."""
    async with recording_pbx(folder / "pbx") as (port, secret):
        for scenario in scenarios:
            yield scenario, await record(scenario, port, secret, folder / "traces", out)


# Roughly how long each scenario keeps its Asterisk busy, in seconds: the
# ones that wait out a ring timeout dominate.
_SECONDS = {"contact_no_answer": 32.0, "volunteer_no_answer": 17.0, "power_session": 16.0}
_TALKING_SECONDS = 5.0
_QUICK_SECONDS = 2.5


def _cost(scenario: Recorded) -> float:
    if scenario.name in _SECONDS:
        return _SECONDS[scenario.name]
    talks = O.COMPLETED in scenario.outcomes.values()
    return _TALKING_SECONDS if talks else _QUICK_SECONDS


def share_out(scenarios: Sequence[Recorded], lanes: int) -> list[list[Recorded]]:
    """``scenarios`` in ``lanes`` groups of about equal length (longest first,
    each to the emptiest lane), each group keeping the scenarios' own order."""
    loads = [0.0] * lanes
    chosen: list[list[Recorded]] = [[] for _ in range(lanes)]
    for scenario in sorted(scenarios, key=_cost, reverse=True):
        lane = loads.index(min(loads))
        loads[lane] += _cost(scenario)
        chosen[lane].append(scenario)
    order = {scenario.name: index for index, scenario in enumerate(scenarios)}
    return [sorted(group, key=lambda s: order[s.name]) for group in chosen if group]


async def record_in_parallel(
    out: Path, folder: Path, scenarios: Sequence[Recorded] = SCENARIOS, *, lanes: int = 3
) -> dict[str, dict[str, CallUpdate]]:
    """Record ``scenarios`` on ``lanes`` fresh Asterisks at once; each scenario's
    calls' last updates (by call id), by name.

    For checking recordings, not for making the committed ones: channel
    names then depend on which Asterisk played which scenario, while the
    events of each call, which the checks compare, do not.
    """

    async def lane(index: int, group: list[Recorded]) -> dict[str, dict[str, CallUpdate]]:
        return {
            scenario.name: finals
            async for scenario, finals in record_all(out, folder / f"lane{index}", group)
        }

    finals: dict[str, dict[str, CallUpdate]] = {}
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(lane(index, chunk))
            for index, chunk in enumerate(share_out(scenarios, lanes))
        ]
    for task in tasks:
        finals.update(task.result())
    return finals


async def main_async(out: Path, names: Sequence[str], keep: bool) -> int:
    reason = missing_pieces()
    if reason is not None:
        print(reason, file=sys.stderr)
        return 2
    unknown = set(names) - {s.name for s in SCENARIOS}
    if unknown:
        print(f"unknown scenario(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    chosen = [s for s in SCENARIOS if not names or s.name in names]
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="dialer-record-"))
    try:
        async for scenario, finals in record_all(out, folder, chosen):
            for call_id, expected in scenario.outcomes.items():
                final = finals[call_id]
                if final.outcome is not expected:
                    print(f"expected {expected.value}:", end=" ")
                print(
                    f"{PREFIX}{scenario.name}.ami {call_id}: "
                    f"{final.outcome.value if final.outcome else '-'}"
                    f" (dial status {final.dial_status}, volunteer cause "
                    f"{final.volunteer_hangup_cause}, contact cause "
                    f"{final.contact_hangup_cause}, Reason {final.originate_reason})"
                )
    finally:
        if keep:
            print(f"Asterisk's folder kept: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.pbx.record_transcripts",
        description="Record AMI sessions from a real Asterisk running asterisk-config/.",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the .ami files go")
    parser.add_argument(
        "--keep", action="store_true", help="keep Asterisk's folder (logs, SIPp traces)"
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help="scenarios to record (default: all): "
        + ", ".join(scenario.name for scenario in SCENARIOS),
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(main_async(args.out, args.names, args.keep))


if __name__ == "__main__":
    sys.exit(main())
