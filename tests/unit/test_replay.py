"""`dialer replay`: a recorded AMI session in, one JSON line per call out."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from ami_bridge.codec import Action, Decoder, Message
from ami_bridge.stream import ConnectionLost, Received, Resynced
from ami_bridge.tools.replay import (
    HangupSent,
    OriginateSent,
    call_id_of_originate,
    main_replay,
    replay,
    replay_steps,
)

AMI = Path(__file__).parent.parent / "fixtures" / "ami"

KEYS = {
    "call_id",
    "state",
    "outcome",
    "failure_reason",
    "contact_number",
    "volunteer_channel",
    "volunteer_uniqueid",
    "contact_channel",
    "contact_uniqueid",
    "linkedid",
    "bridge_id",
    "dial_status",
    "volunteer_hangup_cause",
    "volunteer_hangup_cause_text",
    "contact_hangup_cause",
    "contact_hangup_cause_text",
    "originate_reason",
    "hangup_requested_by",
    "ring_seconds",
    "talk_seconds",
    "discovered",
}


def test_replay_one_file() -> None:
    [call] = replay(AMI / "pjsip_contact_answers_then_hangs_up.ami")
    assert set(call) == KEYS
    assert call == {
        "call_id": "c0001",
        "state": "ended",
        "outcome": "completed",
        "failure_reason": None,
        "contact_number": "15145550180",
        "volunteer_channel": "PJSIP/1001-0000001b",
        "volunteer_uniqueid": "c0001-v",
        "contact_channel": "PJSIP/pstn-0000001c",
        "contact_uniqueid": "1795374123.46",
        "linkedid": "c0001-v",
        "bridge_id": "ae6a8a17-e5e9-4992-b521-8ebaa4cf81ff",
        "dial_status": "ANSWER",
        "volunteer_hangup_cause": 16,
        "volunteer_hangup_cause_text": "Normal Clearing",
        "contact_hangup_cause": 16,
        "contact_hangup_cause_text": "Normal Clearing",
        "originate_reason": 4,
        "hangup_requested_by": None,
        "ring_seconds": 1.006,
        "talk_seconds": 3.007,
        "discovered": False,
    }


def test_main_replay_writes_one_json_line_per_call() -> None:
    out = io.StringIO()
    assert main_replay(str(AMI / "local_contact_congestion_and_rejected.ami"), out) == 0
    lines = out.getvalue().splitlines()
    calls = [json.loads(line) for line in lines]
    assert [(c["call_id"], c["outcome"], c["contact_hangup_cause"]) for c in calls] == [
        ("c0006", "contact_congestion", 34),
        ("c0007", "contact_rejected", 21),
    ]


def test_main_replay_of_a_session_over_two_connections() -> None:
    out = io.StringIO()
    files = [
        str(AMI / "crash_1_asterisk_killed_mid_call.ami"),
        str(AMI / "crash_2_after_restart_call_is_gone.ami"),
    ]
    assert main_replay(files, out) == 0
    [call] = [json.loads(line) for line in out.getvalue().splitlines()]
    assert (call["call_id"], call["outcome"], call["talk_seconds"]) == ("c0032", "lost", None)


def test_main_replay_of_a_call_still_up_at_the_end() -> None:
    out = io.StringIO()
    assert main_replay(str(AMI / "crash_1_asterisk_killed_mid_call.ami"), out) == 0
    [call] = [json.loads(line) for line in out.getvalue().splitlines()]
    assert (call["state"], call["outcome"], call["talk_seconds"]) == ("talking", None, None)


def test_main_replay_refuses_what_is_not_a_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = io.StringIO()
    assert main_replay(str(tmp_path / "missing.ami"), out) == 1
    not_ami = tmp_path / "notes.txt"
    not_ami.write_text("hello\n")
    assert main_replay(str(not_ami), out) == 1
    assert out.getvalue() == ""
    assert "not an AMI transcript" in capsys.readouterr().err


def test_a_recording_without_calls_gives_no_lines() -> None:
    out = io.StringIO()
    assert main_replay(str(AMI / "restart_2_after_restart_call_is_gone.ami"), out) == 0
    assert out.getvalue() == ""


def test_events_only_replay_cannot_see_calls_without_a_channel() -> None:
    assert replay(AMI / "bad_actions.ami", client_hints=False) == []
    assert [c["outcome"] for c in replay(AMI / "bad_actions.ami")] == [
        "volunteer_unreachable",
        "failed",
    ]


def test_call_id_of_originate() -> None:
    def decoded(action: Action) -> Message:
        [message] = Decoder(expect_banner=False).feed(action.encode())
        return message

    with_channel_id = Action.build(
        "Originate",
        {"Channel": "PJSIP/1001", "ChannelId": "c9-v"},
        variables={"DIALER_CALL_ID": "other"},
        action_id="random",
    )
    with_variable = Action.build(
        "Originate",
        {"Channel": "PJSIP/1001"},
        variables={"DIALER_TRUNK": "pjsip", "DIALER_CALL_ID": "c8"},
        action_id="random",
    )
    bare = Action.build("Originate", {"Channel": "PJSIP/1001"}, action_id="a1")
    assert call_id_of_originate(decoded(with_channel_id)) == "c9"
    assert call_id_of_originate(decoded(with_variable)) == "c8"
    assert call_id_of_originate(decoded(bare)) == "a1"


def test_steps_of_a_session_over_two_files() -> None:
    steps = list(
        replay_steps(
            [
                AMI / "reconnect_1_connection_lost_mid_call.ami",
                AMI / "reconnect_2_new_connection_resyncs.ami",
            ]
        )
    )
    kinds = [type(step) for step in steps]
    assert kinds.count(ConnectionLost) == 1
    assert kinds.count(Resynced) == 1
    lost = kinds.index(ConnectionLost)
    resynced = kinds.index(Resynced)
    assert lost < resynced
    assert steps[lost].reason == "dropped_by_client"  # type: ignore[union-attr]
    listing = steps[resynced]
    assert isinstance(listing, Resynced)
    assert sorted(m["Channel"] for m in listing.channels) == [
        "Local/15145550194@fake-pstn-00000013;1",
        "Local/15145550194@fake-pstn-00000013;2",
        "PJSIP/1002-00000037",
    ]
    # The listed items are not also fed as plain events.
    received = [step.message.event for step in steps if isinstance(step, Received)]
    assert "CoreShowChannel" not in received
    # Time only moves forward, across the gap too.
    times = [step.at for step in steps]
    assert times == sorted(times)
    originate = next(step for step in steps if isinstance(step, OriginateSent))
    assert (originate.call_id, originate.volunteer_channel, originate.contact_number) == (
        "c0030",
        "PJSIP/1002",
        "15145550194",
    )
    hangup = next(step for step in steps if isinstance(step, HangupSent))
    assert hangup.channel == "/^PJSIP\\/1002-.*$/"


def test_a_listing_asked_mid_call_is_not_a_resync() -> None:
    steps = list(replay_steps([AMI / "pjsip_hangup_by_action_during_talk.ami"]))
    assert not any(isinstance(step, Resynced | ConnectionLost) for step in steps)
    received = [step.message.event for step in steps if isinstance(step, Received)]
    assert received.count("CoreShowChannel") == 3


def _transcript(frames: list[tuple[str, float, bytes]]) -> bytes:
    out = b""
    for direction, t, body in frames:
        out += f"{direction} t={t:.3f}\n".encode() + body
    return out


def _event(name: str, **headers: str) -> bytes:
    lines = [f"Event: {name}", "Privilege: call,all"]
    lines += [f"{key.replace('_', '-')}: {value}" for key, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_an_originate_without_channel_id_is_followed_by_its_variable(tmp_path: Path) -> None:
    # No ChannelId: the channel gets an Asterisk Uniqueid, and only the
    # DIALER_CALL_ID variable ties it to the call.
    volunteer = {
        "Channel": "PJSIP/1001-00000001",
        "Uniqueid": "1795000000.1",
        "Linkedid": "1795000000.1",
    }
    contact = {"Channel": "PJSIP/pstnbusy-00000002", "Uniqueid": "1795000000.2"}
    originate = Action.build(
        "Originate",
        {"Channel": "PJSIP/1001", "Exten": "15145550181", "Async": True},
        variables={"DIALER_CALL_ID": "x42"},
        action_id="x42",
    ).encode()
    frames = [
        ("<<<", 0.0, b"Asterisk Call Manager/13.0.0\r\n"),
        (">>>", 0.001, originate),
        ("<<<", 0.002, _event("Newchannel", ChannelState="0", **volunteer)),
        (
            "<<<",
            0.002,
            _event("VarSet", ChannelState="0", Variable="DIALER_CALL_ID", Value="x42", **volunteer),
        ),
        ("<<<", 0.003, _event("Newstate", ChannelState="5", **volunteer)),
        ("<<<", 0.004, _event("Newstate", ChannelState="6", **volunteer)),
        (
            "<<<",
            0.005,
            _event("Newchannel", ChannelState="0", Linkedid="1795000000.1", **contact),
        ),
        (
            "<<<",
            0.006,
            _event(
                "DialBegin",
                DestChannel=contact["Channel"],
                DestUniqueid=contact["Uniqueid"],
                Exten="15145550181",
                **volunteer,
            ),
        ),
        (
            "<<<",
            0.007,
            _event(
                "DialEnd",
                DestChannel=contact["Channel"],
                DestUniqueid=contact["Uniqueid"],
                DialStatus="BUSY",
                **volunteer,
            ),
        ),
        ("<<<", 0.008, _event("Hangup", Cause="17", Cause_txt="User busy", **volunteer)),
        (
            "<<<",
            0.008,
            _event("Hangup", Cause="17", Cause_txt="User busy", Linkedid="1795000000.1", **contact),
        ),
    ]
    path = tmp_path / "no_channel_id.ami"
    path.write_bytes(_transcript(frames))
    [call] = replay(path)
    assert call["call_id"] == "x42"
    assert call["outcome"] == "contact_busy"
    assert call["volunteer_channel"] == "PJSIP/1001-00000001"
    assert call["contact_channel"] == "PJSIP/pstnbusy-00000002"
    assert (call["volunteer_hangup_cause"], call["contact_hangup_cause"]) == (17, 17)
    assert call["ring_seconds"] == pytest.approx(0.001)
    # From the events alone the call is invisible: nothing names it.
    assert replay(path, client_hints=False) == []
