"""The recordings of tests/fixtures/ami/shipped_*.ami still say what Asterisk does.

Records every scenario of ``tests.pbx.record_transcripts`` afresh on a real
Asterisk loaded with today's ``asterisk-config/``, and compares each with its
committed recording the way ``tests/golden/test_simulator_shapes.py``
compares the simulator: per call leg, the event names with what tells them
apart.  Two runs of the real Asterisk differ where threads race, so here
each channel is a lane of its own (the own-number call's two trunk channels
interleave differently from run to run), and caller-ID, connected-line and
variable updates, which reach a channel from its peer's thread, are
counted rather than placed.  A change to the shipped dialplan, the phones'
endpoints or the Originate the dialer sends that changes the events fails
here, naming the recording to make again (see tests/fixtures/ami/README.md).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ami_bridge.codec import Message
from ami_bridge.tools.transcript import read_transcript
from ami_bridge.tracker import CallUpdate
from tests.golden.test_simulator_shapes import CONFERENCE, LaneBook, server_messages
from tests.pbx.record_transcripts import (
    DEFAULT_OUT,
    PREFIX,
    SCENARIOS,
    Recorded,
    record_in_parallel,
)

# One xdist worker for the whole module: its module fixture starts its own
# Asterisk (and waits out ring timeouts), which split tests would do twice.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pbx_transcripts_fresh")]


# Caller-ID, connected-line and variable updates reach a channel from its
# peer's thread (the other half of a Local channel, the bridged leg), so
# where they fall among the channel's own events varies from run to run on
# the real Asterisk; the tracker reads no call state from their position.
DRIFTING = frozenset({"NewCallerid", "NewConnectedLine", "VarSet"})


# A power session's contact that is busy or refused at once: the Local
# channel's ;2 half (the volunteer's side) answers, and then either joins the
# session's conference or is hung up by the busy first, as the two halves'
# threads race (a loaded machine changes the order).  Either way the contact
# never answered and nobody was bridged to it; the join is left out.
_CONFERENCE_JOIN = ("Newexten:ConfBridge", "BridgeEnter:", "BridgeLeave:")


def _without_unanswered_joins(call_lanes: dict[str, list[str]]) -> dict[str, list[str]]:
    if "P" not in call_lanes or "Newstate:Up" in call_lanes["P"]:
        return call_lanes
    return {
        lane: [s for s in sequence if not s.startswith(_CONFERENCE_JOIN)]
        if lane.startswith("L2")
        else sequence
        for lane, sequence in call_lanes.items()
        if not lane.endswith("-conf")
    }


# A power session's contacts all have their volunteer leg on one Local
# device (Local/<session>@dialer-power-join).  Its state changes come from
# Asterisk's device-state thread, which coalesces them as the calls overlap:
# their number and which call's events they fall among vary from run to run.
# The dialer reads no device state (only the simulator writes it), so that
# lane is left out.
LOCAL_DEVICE = "device-L"


# What Asterisk says of a phone's reachability: on a loaded machine a
# phone's answer to qualify comes late now and then, and Asterisk says the
# phone went unreachable and came back, whichever call is being recorded
# (the recorder waits for every phone to be judged before it starts, so a
# committed recording has none of these).
QUALIFY_EVENTS = frozenset({"PeerStatus", "ContactStatus"})


def _qualify_noise(book: LaneBook, message: Message) -> bool:
    """Qualify's reports, and the device state of a phone no channel of
    the recording uses (which changes with them)."""
    if message.event in QUALIFY_EVENTS:
        return True
    if message.event != "DeviceStateChange":
        return False
    device = message["Device"]
    return device.startswith("PJSIP/") and device not in book.device_lane


# What a SIP provisional response makes Asterisk report.  On a loaded
# machine Asterisk's INVITE is retransmitted before the 180 reaches it, the
# phone or carrier answers the copy with another 180, and Asterisk reports
# ringing twice in a row; SIPp's trace shows both INVITEs.
PROVISIONAL_ECHOES = frozenset({"DialState:RINGING", "DialState:PROGRESS"})


def _in_order(sequence: list[str]) -> list[str]:
    """The lane's events whose order holds: the drifting ones left out, and
    a provisional response's report repeated at once counted once."""
    ordered: list[str] = []
    for signature in sequence:
        if signature in DRIFTING:
            continue
        if ordered and signature == ordered[-1] and signature in PROVISIONAL_ECHOES:
            continue
        ordered.append(signature)
    return ordered


def lanes(path: Path) -> dict[str, dict[str, tuple[list[str], Counter[str]]]]:
    """Per lane, its events in order without the drifting ones, and how
    many of each drifting one there are (VarSet, whose runs the lane book
    collapses, is left out)."""
    book = LaneBook(lane_per_channel=True)
    for frame in read_transcript(path):
        if frame.direction == "server" and frame.note is None:
            book.feed(m for m in server_messages(frame) if not _qualify_noise(book, m))
    return {
        call: {
            lane: (
                _in_order(sequence),
                Counter(s for s in sequence if s in DRIFTING and s != "VarSet"),
            )
            for lane, sequence in _without_unanswered_joins(call_lanes).items()
            if lane != LOCAL_DEVICE
        }
        if call != CONFERENCE
        else {
            # ConfbridgeStart and the softmix bridge's BridgeCreate (and their
            # ends) come from two threads, in either order from run to run.
            lane: ([], Counter(sequence))
            for lane, sequence in call_lanes.items()
        }
        for call, call_lanes in book.plain_lanes().items()
    }


@pytest.fixture(scope="module")
async def fresh(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Path, dict[str, dict[str, CallUpdate]]]]:
    out = tmp_path_factory.mktemp("fresh")
    # Three Asterisks at once: the two ring timeouts (30 s and 15 s) are
    # then waited out side by side rather than one after the other.
    finals = await record_in_parallel(out, tmp_path_factory.mktemp("pbx"), lanes=3)
    yield out, finals


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[scenario.name for scenario in SCENARIOS])
async def test_the_committed_recording_still_holds(
    fresh: tuple[Path, dict[str, dict[str, CallUpdate]]], scenario: Recorded
) -> None:
    out, finals = fresh
    name = f"{PREFIX}{scenario.name}.ami"
    assert lanes(out / name) == lanes(DEFAULT_OUT / name), (
        f"Asterisk no longer plays {name} as recorded: record it again "
        "(python -m tests.pbx.record_transcripts) and update tests/golden"
    )
    for call_id, outcome in scenario.outcomes.items():
        final = finals[scenario.name][call_id]
        assert (final.ended, final.outcome) == (True, outcome), (call_id, final.failure_reason)


# -- what the comparison lets through, and what it does not ---------------------------

_RINGING_OF_THE_CONTACTS_DIAL = re.compile(
    rb"Event: DialState\r\nPrivilege: call,all\r\nChannel: (?:[^\r\n]+\r\n)*?"
    rb"DialStatus: RINGING\r\n(?:[^\r\n]+\r\n)*\r\n"
)
_DIAL_END = re.compile(rb"Event: DialEnd\r\n(?:[^\r\n]+\r\n)*\r\n")
# A phone no call of the recording uses, as qualify reports it on a loaded machine.
_QUALIFY_NOISE = (
    b"Event: PeerStatus\r\nPrivilege: system,all\r\nChannelType: PJSIP\r\n"
    b"Peer: PJSIP/1004\r\nPeerStatus: Unreachable\r\n\r\n"
    b"Event: ContactStatus\r\nPrivilege: system,all\r\nURI: sip:1004@127.0.0.1:5060\r\n"
    b"ContactStatus: Unreachable\r\nAOR: 1004\r\nEndpointName: 1004\r\n\r\n"
    b"Event: DeviceStateChange\r\nPrivilege: call,all\r\nDevice: PJSIP/1004\r\n"
    b"State: UNAVAILABLE\r\n\r\n"
)


def _edited(tmp_path: Path, name: str, edit: Callable[[bytes], bytes]) -> Path:
    path = tmp_path / name
    path.write_bytes(edit((DEFAULT_OUT / name).read_bytes()))
    return path


def _twice(pattern: re.Pattern[bytes]) -> Callable[[bytes], bytes]:
    def edit(raw: bytes) -> bytes:
        found = pattern.search(raw)
        assert found is not None
        return raw.replace(found.group(0), found.group(0) * 2, 1)

    return edit


def test_a_loaded_machines_retransmissions_and_qualify_reports_compare_equal(
    tmp_path: Path,
) -> None:
    name = f"{PREFIX}contact_answers_then_hangs_up.ami"

    def loaded(raw: bytes) -> bytes:
        raw = _twice(_RINGING_OF_THE_CONTACTS_DIAL)(raw)
        found = _RINGING_OF_THE_CONTACTS_DIAL.search(raw)
        assert found is not None
        return raw[: found.start()] + _QUALIFY_NOISE + raw[found.start() :]

    assert lanes(_edited(tmp_path, name, loaded)) == lanes(DEFAULT_OUT / name)


def test_any_other_repeated_event_still_differs(tmp_path: Path) -> None:
    name = f"{PREFIX}contact_answers_then_hangs_up.ami"
    assert lanes(_edited(tmp_path, name, _twice(_DIAL_END))) != lanes(DEFAULT_OUT / name)
