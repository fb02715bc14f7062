"""The simulator must produce what the recorded Asterisk produced.

Each recording's client side is replayed against the simulator over TCP:
an action is sent as soon as the simulator has caught up with every event
the recording shows before it (so the test does not depend on timing), with
recorded channel names swapped for the simulator's (and masked secrets for
its own).  Faults that came from the server side (the restart, the crash)
are injected at the same point.  The simulator plays the dialplan and trunk
each recording was made with, and the far ends are scripted to do what the
recorded phones and carrier did: the ``shipped_*`` recordings' carrier acts
on the number's last digit as ``tests/pbx/scenarios/carrier.xml`` says, not
as the simulator's default rule.

What is compared, per call and per leg ("lane"): the sequence of event names,
with the field that tells two events of a name apart (DialStatus, Cause,
ChannelStateDesc, Application...) and runs of VarSet collapsed to one.  The
recordings show that a real Asterisk interleaves the legs of one call
differently from run to run (its channels run in threads), so the total
order of a call is not a stable property; the order within a leg is.  The
Originate's own dial of the volunteer's phone (DialBegin, DialState and
DialEnd with no calling channel) is a lane of its own: the Originate's
thread reports it, racing the phone's channel (Newstate Ringing comes before
or after DialState RINGING from one run to the next).  The header names of
every event must also be ones the recordings use, and the responses and
list items must match.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ami_bridge.codec import Action, Decoder, Message
from ami_bridge.simulator import (
    AmiSimulator,
    ContactBehaviour,
    RawAmiClient,
    Trunk,
    VolunteerBehaviour,
    VolunteerOutcome,
    default_contact_behaviour,
)
from ami_bridge.tools.transcript import Frame, read_transcript

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ami"
TIME_SCALE = 0.05
SECRETS = {"dialer": "dialer-secret", "dialer_lp": "dialer-lp-secret", "recorder": "rec-secret"}

# Events that answer an action rather than describe a call.
LIST_EVENTS = frozenset(
    {
        "CoreShowChannel",
        "CoreShowChannelsComplete",
        "Status",
        "StatusComplete",
        "ChannelHungup",
        "ChannelsHungupListComplete",
    }
)
# Events about the PBX rather than a call.
SYSTEM_EVENTS = frozenset({"FullyBooted", "Shutdown"})
# Media reports every few seconds of a long-lived channel (a power
# session's leg): when they fall depends on the clock, not on the call, and
# the tracker reads nothing of them.
MEDIA_EVENTS = frozenset({"RTCPSent", "RTCPReceived"})
# A conference member's ConfBridge events come from the conference's own
# thread and race the channel's bridge and hangup events (BridgeEnter,
# ConfbridgeJoin in either order): they are a lane of their own per member.
CONFERENCE_MEMBER_EVENTS = frozenset({"ConfbridgeJoin", "ConfbridgeLeave"})
# Everything about a conference as a whole (its softmix bridge, start, end
# and devices) is one lane, the call "conference": it outlives the calls
# that join it.
CONFERENCE = "conference"
ORIGINATE_DIAL = frozenset({"DialBegin", "DialState", "DialEnd"})
DISCRIMINATOR = {
    "Newstate": "ChannelStateDesc",
    "DialState": "DialStatus",
    "DialEnd": "DialStatus",
    "Hangup": "Cause",
    "HangupRequest": "Cause",
    "SoftHangupRequest": "Cause",
    "DeviceStateChange": "State",
    "Newexten": "Application",
    "BridgeEnter": "BridgeNumChannels",
    "BridgeLeave": "BridgeNumChannels",
    "OriginateResponse": "Reason",
}


def server_messages(frame: Frame) -> list[Message]:
    return [m for m in Decoder(expect_banner=True).feed(frame.data) if not m.is_banner]


def keys(message: Message) -> tuple[str, ...]:
    return tuple(key for key, _ in message.pairs)


def recorded_keysets() -> dict[str, set[tuple[str, ...]]]:
    found: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for path in FIXTURES.glob("*.ami"):
        for frame in read_transcript(path):
            if frame.direction == "server" and frame.note is None:
                for message in server_messages(frame):
                    if message.event:
                        found[message.event].add(keys(message))
    return found


KEYSETS = recorded_keysets()


def role_of(channel: str, uniqueid: str, linkedid: str) -> str:
    if uniqueid == linkedid:
        return "V"
    if channel.startswith("Local/"):
        return "L" + channel[-1]
    return "P"


class LaneBook:
    """Sorts call events into lanes: one per leg, per device, plus the
    OriginateResponse, the bridge and the LocalBridge."""

    def __init__(self, *, lane_per_channel: bool = False) -> None:
        """``lane_per_channel`` gives each channel of a role its own lane
        (``P``, ``P2``...) instead of one lane per role: two recordings of
        the real Asterisk interleave two channels of a role (the own-number
        call's two trunk legs) differently, while the simulator's
        interleaving need not copy either, and is compared per role."""
        self.lane_per_channel = lane_per_channel
        self.lane_of_channel: dict[str, str] = {}
        self.lanes: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        self.role_by_name: dict[str, tuple[str, str]] = {}
        self.name_by_role: dict[tuple[str, str], str] = {}
        self.device_lane: dict[str, tuple[str, str]] = {}
        self.bridge_call: dict[str, str] = {}
        self.unplaced_bridges: dict[str, list[str]] = defaultdict(list)
        self.replies: list[Message] = []
        self.system: list[str] = []
        self.seen = 0

    def feed(self, messages: Iterable[Message]) -> None:
        for message in messages:
            self.add(message)

    def counts(self) -> dict[tuple[str, str], int]:
        return {
            (call, lane): len(seq)
            for call, lanes in self.lanes.items()
            for lane, seq in lanes.items()
        }

    def caught_up_with(self, other: LaneBook) -> bool:
        mine = self.counts()
        if len(self.replies) < len(other.replies):
            return False
        return all(mine.get(key, 0) >= count for key, count in other.counts().items())

    def _put(self, call: str, lane: str, signature: str) -> None:
        sequence = self.lanes[call][lane]
        if signature == "VarSet" and sequence and sequence[-1] == "VarSet":
            return
        sequence.append(signature)

    def add(self, m: Message) -> None:
        name = m.event
        if name is None or name in LIST_EVENTS:
            if name in ("CoreShowChannel", "Status"):
                self._learn(
                    m["Channel"], m["Linkedid"], role_of(m["Channel"], m["Uniqueid"], m["Linkedid"])
                )
            self.replies.append(m)
            return
        if name in SYSTEM_EVENTS:
            self.system.append(name)
            return
        if name in MEDIA_EVENTS:
            return
        discriminator = DISCRIMINATOR.get(name)
        signature = f"{name}:{m.get(discriminator)}" if discriminator else name
        if name == "OriginateResponse":
            self._put(m["Uniqueid"], "OR", signature)
        elif name == "DeviceStateChange":
            device = m["Device"]
            if device.startswith("CBAnn/"):
                # ConfBridge's announcer: its device reads INUSE or UNKNOWN
                # as the conference ends, from one run to the next.
                return
            if device.startswith("confbridge:"):
                self._put(CONFERENCE, "device", signature)
            else:
                call, lane = self.device_lane[device]
                self._put(call, lane, signature)
        elif name in ("ConfbridgeStart", "ConfbridgeEnd") or (
            name in ("BridgeCreate", "BridgeDestroy") and m.get("BridgeTechnology") == "softmix"
        ):
            self._put(CONFERENCE, "C", signature)
        elif name == "LocalBridge":
            self._put(m["LocalOneLinkedid"], "LocalBridge", signature)
        elif name == "BridgeCreate":
            self.unplaced_bridges[m["BridgeUniqueid"]].append(signature)
        elif name == "BridgeDestroy":
            self._put(self.bridge_call[m["BridgeUniqueid"]], "B", signature)
        elif name in ORIGINATE_DIAL and "Channel" not in m:
            # The Originate dialing the volunteer's phone: reported by the
            # Originate's thread, so it races with the channel's own events.
            call = m["DestLinkedid"]
            self._learn(m["DestChannel"], call, role_of(m["DestChannel"], m["DestUniqueid"], call))
            self._put(call, "OD", signature)
        else:
            # ChanSpyStart/Stop name two channels: the event belongs to the
            # organizer's (the spyer's) lane.
            prefix = "" if "Channel" in m else "Spyer" if "SpyerChannel" in m else "Dest"
            channel = m[f"{prefix}Channel"]
            call = m[f"{prefix}Linkedid"]
            role = role_of(channel, m[f"{prefix}Uniqueid"], call)
            self._learn(channel, call, role)
            if name in CONFERENCE_MEMBER_EVENTS:
                self._put(call, self.lane_of_channel.get(channel, role) + "-conf", signature)
                return
            if name in ("BridgeEnter", "BridgeLeave") and m.get("BridgeTechnology") != "softmix":
                bridge = m["BridgeUniqueid"]
                self.bridge_call[bridge] = call
                for pending in self.unplaced_bridges.pop(bridge, []):
                    self._put(call, "B", pending)
            self._put(call, self.lane_of_channel.get(channel, role), signature)

    def _learn(self, channel: str, call: str, role: str) -> None:
        """Channels are learnt from any event naming them: after a reconnect
        the first one may be a list item or a BridgeLeave."""
        if channel in self.role_by_name:
            return
        if self.lane_per_channel:
            same_role = sum(1 for known in self.role_by_name.values() if known == (call, role))
            if same_role:
                self.lane_of_channel[channel] = f"{role}{same_role + 1}"
        self.role_by_name[channel] = (call, role)
        self.name_by_role[(call, role)] = channel
        self.device_lane[channel.rsplit("-", 1)[0]] = (call, "device-" + role[0])

    def plain_lanes(self) -> dict[str, dict[str, list[str]]]:
        return {call: dict(lanes) for call, lanes in self.lanes.items()}


def reply_summary(book: LaneBook, message: Message) -> tuple[object, ...]:
    """What must match in a response or list item; names become roles."""
    if message.event in ("CoreShowChannel", "Status"):
        role = role_of(message["Channel"], message["Uniqueid"], message["Linkedid"])
        application_data = message.get("ApplicationData", message.get("Data"))
        bridged = bool(message.get("BridgeId", message.get("BridgeID")))
        return (message.event, role, message["Application"], application_data, bridged)
    if message.event == "ChannelHungup":
        return (message.event, book.role_by_name.get(message["Channel"], ("?", "?"))[1])
    if message.event is not None:
        return (message.event, message.get("ListItems"))
    return (message.response, message.get("Message"), message.get("Ping"))


def reply_summaries(book: LaneBook) -> list[tuple[object, ...]]:
    """Summaries in order, except that list items are sorted: Asterisk lists
    channels in the order of its hash container, not creation order."""
    out: list[tuple[object, ...]] = []
    run: list[tuple[object, ...]] = []
    for message in book.replies:
        summary = reply_summary(book, message)
        if message.event in ("CoreShowChannel", "Status", "ChannelHungup"):
            run.append(summary)
            continue
        out.extend(sorted(run, key=repr))
        run = []
        out.append(summary)
    out.extend(sorted(run, key=repr))
    return out


def carrier(number: str) -> ContactBehaviour:
    """What tests/pbx/scenarios/carrier.xml does, by the number's last digit."""
    match number[-1:]:
        case "0":
            return ContactBehaviour.answers(after=1.0, hangs_up_after=3.0)
        case "1":
            return ContactBehaviour.busy()
        case "2":
            return ContactBehaviour.no_answer()
        case "3":
            return ContactBehaviour.rejected()
        case "4":
            return ContactBehaviour.answers(after=1.0, hangs_up_after=40.0)
        case "5":
            return ContactBehaviour.answers(after=1.0, hangs_up_after=300.0)
        case "6":
            return ContactBehaviour.congestion()
        case _:
            return ContactBehaviour.unreachable()


# The desk phones of tests/pbx/conftest.py that do something else than answer.
SHIPPED_PHONES = {
    "1030": VolunteerBehaviour(answer_after=0.5, hangs_up_after=2.0),
    "1031": VolunteerBehaviour(VolunteerOutcome.BUSY),
    "1032": VolunteerBehaviour(VolunteerOutcome.NO_ANSWER),
    "1033": VolunteerBehaviour(VolunteerOutcome.DECLINED),
}
# The lab's 1099 had a contact nobody answered and qualify off.
LAB_PHONES = {"1099": VolunteerBehaviour(VolunteerOutcome.NO_RESPONSE)}


@dataclass(frozen=True)
class Scenario:
    files: tuple[str, ...]
    least_privilege: bool = False
    username: str = "dialer"
    # The dialplan and trunk the recording was made with (the lab's
    # Originates name theirs with DIALER_TRUNK), and what the far ends do.
    trunk: Trunk = "local"
    contacts: Callable[[str], ContactBehaviour] = default_contact_behaviour
    volunteers: Mapping[str, VolunteerBehaviour] = field(default_factory=lambda: LAB_PHONES)
    # The server-side faults of the restart and crash recordings.
    restart_on_cause_4: bool = False
    crash_on_close: bool = False
    # Simulated seconds between connections (the recordings' second
    # connection came about a second later).
    pause_between: float = 1.0


SCENARIOS = {
    "contact answers then hangs up": Scenario(("pjsip_contact_answers_then_hangs_up.ami",)),
    "contact busy": Scenario(("pjsip_contact_busy.ami",)),
    "volunteer unreachable": Scenario(("pjsip_volunteer_unreachable.ami",)),
    "hangup by action during talk": Scenario(("pjsip_hangup_by_action_during_talk.ami",)),
    "contact no answer": Scenario(("local_contact_no_answer.ami",)),
    "congestion then rejected": Scenario(("local_contact_congestion_and_rejected.ami",)),
    "three concurrent calls": Scenario(("concurrent_three_calls.ami",)),
    "least privilege": Scenario(
        ("least_privilege_user_call_and_resync.ami",), least_privilege=True, username="dialer_lp"
    ),
    "reconnect and resync": Scenario(
        ("reconnect_1_connection_lost_mid_call.ami", "reconnect_2_new_connection_resyncs.ami")
    ),
    "restart": Scenario(
        ("restart_1_asterisk_restarts_mid_call.ami", "restart_2_after_restart_call_is_gone.ami"),
        restart_on_cause_4=True,
    ),
    "crash": Scenario(
        ("crash_1_asterisk_killed_mid_call.ami", "crash_2_after_restart_call_is_gone.ami"),
        crash_on_close=True,
    ),
    "bad actions": Scenario(("bad_actions.ami",)),
    **{
        name.replace("_", " "): Scenario(
            (f"{name}.ami",),
            username="recorder",
            trunk="carrier",
            contacts=carrier,
            volunteers=SHIPPED_PHONES,
        )
        for name in (
            "shipped_volunteer_unplugged",
            "shipped_volunteer_busy",
            "shipped_volunteer_no_answer",
            "shipped_volunteer_declines",
            "shipped_contact_answers_then_hangs_up",
            "shipped_contact_busy",
            "shipped_contact_no_answer",
            "shipped_contact_declines",
            "shipped_contact_congestion",
            "shipped_contact_not_found",
            "shipped_volunteer_hangs_up_during_talk",
            "shipped_hangup_by_operator_during_talk",
            "shipped_refused_by_dialplan",
            "shipped_hangup_by_volunteer_while_contact_rings",
            "shipped_listen_during_talk",
            "shipped_barge_with_beep",
            "shipped_power_session",
        )
    },
}


def rebuild(message: Message, sim_book: LaneBook, recorded: LaneBook) -> Action:
    """The recorded action, with recorded channel names mapped to the simulator's."""
    headers: list[tuple[str, str]] = []
    variables: list[tuple[str, str]] = []
    for key, value in message.pairs:
        if key in ("Action", "ActionID"):
            continue
        if key == "Variable":
            name, _, var_value = value.partition("=")
            if name == "DIALER_SPY_CHANNEL" and var_value in recorded.role_by_name:
                # The leg to spy on, by the simulator's name for it.
                var_value = sim_book.name_by_role[recorded.role_by_name[var_value]]
            variables.append((name, var_value))
            continue
        if key == "Channel" and value in recorded.role_by_name:
            value = sim_book.name_by_role[recorded.role_by_name[value]]
        if key == "Secret":
            # Masked in the recordings made through the wire trace.
            value = SECRETS[message["Username"]]
        headers.append((key, value))
    return Action(message["Action"], tuple(headers), tuple(variables), message.action_id)


@dataclass
class Side:
    """One connection's recorded and simulated messages."""

    recorded: LaneBook
    simulated: LaneBook
    client: RawAmiClient

    def pull(self) -> None:
        fresh = self.client.messages[self.simulated.seen :]
        self.simulated.seen += len(fresh)
        self.simulated.feed(fresh)

    async def catch_up(self, where: str) -> None:
        def ready() -> bool:
            self.pull()
            return self.simulated.caught_up_with(self.recorded)

        try:
            await self.client.wait_until(ready, within=5.0)
        except (TimeoutError, ConnectionError):
            self.pull()
            pytest.fail(
                f"the simulator never caught up with the recording before {where}:\n"
                f"recorded {self.recorded.plain_lanes()}\n"
                f"simulated {self.simulated.plain_lanes()}"
            )


async def replay(sim: AmiSimulator, scenario: Scenario) -> list[Side]:
    sides: list[Side] = []
    restarted = False
    for index, name in enumerate(scenario.files):
        if index:
            await asyncio.sleep(scenario.pause_between * TIME_SCALE)
        side = Side(LaneBook(), LaneBook(), await RawAmiClient.connect("127.0.0.1", sim.port))
        sides.append(side)
        for frame in read_transcript(FIXTURES / name):
            if frame.direction == "client":
                if frame.note == "dropped_by_client":
                    await side.catch_up("the client drops the connection")
                    await side.client.close()
                    continue
                for action in Decoder(expect_banner=False).feed(frame.data):
                    await side.catch_up(f"sending {action.action}")
                    side.client.send(rebuild(action, side.simulated, side.recorded))
                continue
            if frame.note == "closed_by_server":
                if scenario.crash_on_close and index == 0:
                    await side.catch_up("the crash")
                    await sim.crash()
                await asyncio.wait_for(side.client.closed.wait(), 5.0)
                continue
            for message in server_messages(frame):
                if (
                    scenario.restart_on_cause_4
                    and not restarted
                    and message.event == "SoftHangupRequest"
                    and message.get("Cause") == "4"
                ):
                    await side.catch_up("the restart")
                    restarted = True
                    await sim.restart()
                side.recorded.add(message)
        await side.catch_up("the end of the recording")
        await asyncio.sleep(0.01)
        side.pull()
        await side.client.close()
    return sides


@pytest.mark.parametrize("scenario", list(SCENARIOS.values()), ids=list(SCENARIOS))
async def test_simulator_matches_recording(scenario: Scenario) -> None:
    sim = AmiSimulator(
        time_scale=TIME_SCALE,
        default_trunk=scenario.trunk,
        username=scenario.username,
        secret=SECRETS[scenario.username],
        least_privilege=scenario.least_privilege,
        contact_rule=scenario.contacts,
        volunteers=scenario.volunteers,
    )
    await sim.start()
    try:
        sides = await replay(sim, scenario)
    finally:
        await sim.stop()

    for side in sides:
        assert side.simulated.plain_lanes() == side.recorded.plain_lanes()
        assert side.simulated.system == side.recorded.system
        assert reply_summaries(side.simulated) == reply_summaries(side.recorded)
        responses = [m for m in side.simulated.replies if m.event is None]
        expected = [m for m in side.recorded.replies if m.event is None]
        assert [keys(m) for m in responses] == [keys(m) for m in expected]
        for message in side.client.messages:
            if message.event is not None:
                assert keys(message) in KEYSETS[message.event], (
                    f"{message.event} has headers {keys(message)} never seen in a recording"
                )


async def test_noise_can_be_switched_off() -> None:
    sim = AmiSimulator(time_scale=TIME_SCALE, dialplan_events=False)
    await sim.start()
    client = await RawAmiClient.connect("127.0.0.1", sim.port)
    try:
        await client.login("dialer", "dialer-secret")
        client.send(
            Action.build(
                "Originate",
                {
                    "Channel": "PJSIP/1001",
                    "Context": "dialer-outbound",
                    "Exten": "15145550180",
                    "Priority": 1,
                    "Async": True,
                    "ChannelId": "n1-v",
                },
            )
        )
        await client.wait_for(lambda m: m.event == "Hangup" and m.get("Uniqueid") == "n1-v")
        names = {m.event for m in client.messages}
        assert "Newexten" not in names and "VarSet" not in names
        assert {"Newchannel", "DialEnd", "BridgeEnter", "Hangup"} <= names
    finally:
        await client.close()
        await sim.stop()
