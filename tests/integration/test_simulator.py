"""The AMI simulator over real TCP: protocol details, call outcomes, faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from ami_bridge.asterisk_conf import load_config, parse_dialplan
from ami_bridge.codec import Action, Message
from ami_bridge.simulator import (
    SHIPPED_REFUSALS,
    AmiSimulator,
    ContactBehaviour,
    ContactOutcome,
    RawAmiClient,
    VolunteerBehaviour,
    VolunteerOutcome,
    default_contact_behaviour,
    default_volunteer_behaviour,
    shipped_refusal,
)

ASTERISK_CONFIG = Path(__file__).resolve().parents[2] / "asterisk-config"

SCALE = 0.01
USER, SECRET = "dialer", "dialer-secret"


@pytest.fixture
async def sim() -> AsyncIterator[AmiSimulator]:
    simulator = AmiSimulator(time_scale=SCALE)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def ami(sim: AmiSimulator) -> AsyncIterator[RawAmiClient]:
    client = await RawAmiClient.connect("127.0.0.1", sim.port)
    response = await client.login(USER, SECRET)
    assert response.response == "Success"
    yield client
    await client.close()


def originate(
    exten: str,
    call: str,
    *,
    volunteer: str = "1001",
    variables: dict[str, str] | None = None,
    asynchronous: bool = True,
    timeout_ms: int = 15000,
) -> Action:
    return Action.build(
        "Originate",
        {
            "Channel": f"PJSIP/{volunteer}",
            "Context": "dialer-outbound",
            "Exten": exten,
            "Priority": 1,
            "CallerID": '"Phone bank" <15145550000>',
            "Timeout": timeout_ms,
            "Async": asynchronous,
            "ChannelId": f"{call}-v",
            "OtherChannelId": f"{call}-o",
        },
        variables={"DIALER_CALL_ID": call, "DIALER_CALLERID": "15145550000", **(variables or {})},
    )


def is_hangup_of(uniqueid: str) -> Callable[[Message], bool]:
    return lambda m: m.event == "Hangup" and m.get("Uniqueid") == uniqueid


def call_events(client: RawAmiClient, call: str) -> list[Message]:
    return [m for m in client.messages if m.get("Linkedid") == f"{call}-v"]


async def test_banner_login_and_fully_booted(sim: AmiSimulator) -> None:
    client = await RawAmiClient.connect("127.0.0.1", sim.port)
    try:
        response = await client.login(USER, SECRET)
        assert client.banner == "Asterisk Call Manager/13.0.0"
        assert response.fields == {
            "Response": "Success",
            "ActionID": response.action_id,
            "Message": "Authentication accepted",
        }
        booted = await client.wait_for(lambda m: m.event == "FullyBooted")
        assert booted["Privilege"] == "system,all"
        assert booted["Status"] == "Fully Booted"
    finally:
        await client.close()


async def test_wrong_secret_is_refused_after_a_delay_and_the_session_ends(
    sim: AmiSimulator,
) -> None:
    client = await RawAmiClient.connect("127.0.0.1", sim.port)
    started = time.monotonic()
    response = await client.login(USER, "wrong")
    assert time.monotonic() - started >= SCALE * 0.9  # Asterisk's 1 s, scaled
    assert response.response == "Error"
    assert response["Message"] == "Authentication failed"
    await asyncio.wait_for(client.closed.wait(), 1.0)
    assert not any(m.event == "FullyBooted" for m in client.messages)
    assert sim.logged_in_count == 0


async def test_actions_before_login_are_denied(sim: AmiSimulator) -> None:
    client = await RawAmiClient.connect("127.0.0.1", sim.port)
    try:
        response = await client.request(originate("15145550180", "x"))
        assert (response.response, response["Message"]) == ("Error", "Permission denied")
        assert sim.active_calls == 0
    finally:
        await client.close()


async def test_unknown_and_malformed_actions(ami: RawAmiClient) -> None:
    response = await ami.request(Action("NoSuchAction"))
    assert response["Message"] == (
        "Invalid/unknown command: NoSuchAction. "
        "Use Action: ListCommands to show available commands."
    )
    start = len(ami.messages)
    ami.send_bytes(b"Foo: bar\r\nActionID: m1\r\n\r\n")
    response = await ami.wait_for(lambda m: m.action_id == "m1", start=start)
    assert response["Message"] == "Missing action in request"
    # "command" is not in the write permissions of the recorded user either.
    response = await ami.request(Action.build("Command", {"Command": "core show version"}))
    assert response["Message"] == "Permission denied"


async def test_ping_events_and_logoff(ami: RawAmiClient, sim: AmiSimulator) -> None:
    pong = await ami.request(Action("Ping"))
    assert pong["Ping"] == "Pong" and float(pong["Timestamp"]) > 0
    off = await ami.request(Action.build("Events", {"EventMask": "off"}))
    assert off["Events"] == "Off"
    start = len(ami.messages)
    await ami.request(originate("15145550134", "q1"))  # answers after 1 s and stays
    await asyncio.sleep(3 * SCALE)
    assert [m for m in ami.messages[start:] if m.event] == []
    on = await ami.request(Action.build("Events", {"EventMask": "on"}))
    assert on["Events"] == "On"
    await ami.request(Action.build("Hangup", {"Channel": "/^PJSIP/1001-/"}))
    await ami.wait_for(is_hangup_of("q1-v"), start=start)
    goodbye = await ami.request(Action("Logoff"))
    assert (goodbye.response, goodbye["Message"]) == ("Goodbye", "Thanks for all the fish.")
    await asyncio.wait_for(ami.closed.wait(), 1.0)


async def test_originate_failures_as_in_bad_actions(ami: RawAmiClient) -> None:
    base: dict[str, str | int | bool] = {
        "Context": "dialer-outbound",
        "Exten": "15145550180",
        "Priority": 1,
        "Async": True,
    }
    queued = await ami.request(Action.build("Originate", {"Channel": "PJSIP/nosuch", **base}))
    assert queued["Message"] == "Originate successfully queued"
    failure = await ami.wait_for(
        lambda m: m.event == "OriginateResponse" and m.action_id == queued.action_id
    )
    assert (failure["Response"], failure["Reason"], failure["Uniqueid"]) == (
        "Failure",
        "0",
        "<unknown>",
    )
    assert failure["Channel"] == "PJSIP/nosuch"
    queued = await ami.request(Action.build("Originate", {"Channel": "Bogus/1001", **base}))
    failure = await ami.wait_for(
        lambda m: m.event == "OriginateResponse" and m.action_id == queued.action_id
    )
    assert failure["Reason"] == "0"
    refused = await ami.request(
        Action.build("Originate", {**base, "Channel": "Bogus/1001", "Exten": "1"})
    )
    assert (refused.response, refused["Message"]) == ("Error", "Extension does not exist.")
    missing = await ami.request(Action.build("Hangup", {"Channel": "PJSIP/1001-00009999"}))
    assert (missing.response, missing["Message"]) == ("Error", "No such channel")


async def test_a_local_volunteer_leg_is_refused_as_not_simulated(ami: RawAmiClient) -> None:
    """A volunteer whose phone is their own number: no recording to imitate yet."""
    action = originate("15145550180", "c9")
    headers = tuple(
        (key, "Local/15145550125@dialer-outbound/n" if key == "Channel" else value)
        for key, value in action.headers
    )
    refused = await ami.request(replace(action, headers=headers))
    assert (refused.response, refused["Message"]) == (
        "Error",
        "A Local volunteer channel is not simulated",
    )


async def test_a_call_has_the_recorded_identity(ami: RawAmiClient) -> None:
    await ami.request(originate("15145550180", "c1"))
    await ami.wait_for(is_hangup_of("c1-v"))
    events = call_events(ami, "c1")
    volunteer = [m for m in events if m.get("Uniqueid") == "c1-v"]
    contact = [m for m in events if m.get("Uniqueid") not in (None, "c1-v")]
    assert volunteer[0].event == "Newchannel"
    assert volunteer[0]["Channel"].startswith("PJSIP/1001-")
    assert contact and all(m["Channel"].startswith("PJSIP/carrier-") for m in contact)
    assert {m["Linkedid"] for m in events} == {"c1-v"}
    assert {m["Privilege"] for m in events} == {"call,all", "dialplan,all"}
    response = next(m for m in ami.messages if m.event == "OriginateResponse")
    assert (response["Response"], response["Reason"], response["Uniqueid"]) == (
        "Success",
        "4",
        "c1-v",
    )
    # The Originate's variables come back as VarSet, in reverse order.
    variables = [(m["Variable"], m["Value"]) for m in volunteer if m.event == "VarSet"]
    assert variables[:2] == [("DIALER_CALLERID", "15145550000"), ("DIALER_CALL_ID", "c1")]
    # The shipped dialplan, step by step, and the caller ID the contact sees.
    steps = [
        (m["Context"], m["Priority"], m["Application"], m["AppData"])
        for m in volunteer
        if m.event == "Newexten"
    ]
    assert steps == [
        ("from-phones", "1", "AppDial2", "(Outgoing Line)"),
        ("dialer-outbound", "1", "Gosub", "dialer-place-call,s,1(15145550180)"),
        ("dialer-place-call", "1", "NoOp", "dialer call c1 to 15145550180"),
        ("dialer-place-call", "2", "Set", "CALLERID_DIGITS=15145550000"),
        ("dialer-place-call", "3", "GotoIf", "0?nocallerid"),
        ("dialer-place-call", "4", "Set", "CALLERID(num)=15145550000"),
        ("dialer-place-call", "5", "Set", "CALLERID(name)="),
        ("dialer-place-call", "6", "Dial", "PJSIP/15145550180@carrier,30"),
    ]
    dial = next(m for m in events if m.event == "DialBegin" and "Channel" in m)
    assert (dial["CallerIDNum"], dial["CallerIDName"], dial["DialString"]) == (
        "15145550000",
        "",
        "15145550180@carrier",
    )
    # device_state_busy_at = 1 on the shipped phones: BUSY from the first ring.
    devices = [(m["Device"], m["State"]) for m in ami.messages if m.event == "DeviceStateChange"]
    assert [state for device, state in devices if device == "PJSIP/1001"] == ["BUSY", "NOT_INUSE"]
    assert [state for device, state in devices if device == "PJSIP/carrier"] == [
        "RINGING",
        "INUSE",
        "NOT_INUSE",
    ]


@pytest.mark.parametrize(
    ("number", "variables", "reason"),
    [
        ("15145551212", {}, "directory-assistance"),
        ("19005550100", {}, "premium-rate"),
        ("18095550100", {}, "international-rate"),
        ("15145550180", {"DIALER_CALLERID": ""}, "no-caller-id"),
        ("15145550180", {"DIALER_CALLERID": "1234"}, "no-caller-id"),
    ],
)
async def test_the_shipped_dialplan_refuses_after_the_volunteer_answered(
    ami: RawAmiClient, number: str, variables: dict[str, str], reason: str
) -> None:
    await ami.request(originate(number, "f1", variables=variables))
    hangup = await ami.wait_for(is_hangup_of("f1-v"))
    assert (hangup["Cause"], hangup["TechCause"]) == ("34", "503")
    events = call_events(ami, "f1")
    assert not [m for m in events if m.get("Uniqueid") != "f1-v"]
    logged = next(m for m in events if m.event == "Newexten" and m["Application"] == "Log")
    assert logged["AppData"] == f"WARNING,dialer call f1 to {number} refused: {reason}"
    response = next(m for m in ami.messages if m.event == "OriginateResponse")
    assert response["Reason"] == "4"


async def test_the_dialplan_steps_are_the_shipped_dialplans(ami: RawAmiClient) -> None:
    dialplan = parse_dialplan(load_config(ASTERISK_CONFIG / "extensions.conf"))
    shipped = [
        (str(step.priority), step.app)
        for step in dialplan["dialer-place-call"].priorities
        if step.extension == "s"
    ]
    played: list[tuple[str, str]] = []
    for call, variables in (("p1", {}), ("p2", {"DIALER_CALLERID": "1"})):
        await ami.request(originate("15145550181", call, variables=variables))  # busy
        await ami.wait_for(is_hangup_of(f"{call}-v"))
        played += [
            (m["Priority"], m["Application"])
            for m in call_events(ami, call)
            if m.event == "Newexten" and m["Context"] == "dialer-place-call"
        ]
    # Every step once: the failed Dial() then Hangup(), and the refusal's Gosub.
    assert sorted(set(played)) == sorted(shipped)


def test_the_refusals_are_the_shipped_dialplans() -> None:
    dialplan = parse_dialplan(load_config(ASTERISK_CONFIG / "extensions.conf"))
    refused = {
        (step.extension, step.args()[2].split("(")[1].split(",")[0])
        for step in dialplan["dialer-outbound"].priorities
        if step.priority == 1 and step.args()[0] == "dialer-refuse"
    }
    # The catch-all and the invalid extension refuse what the simulator dials
    # anyway (numbers outside +1; see the module's docstring).
    refused -= {("_X.", "not-allowed"), ("i", "invalid")}
    assert refused == set(SHIPPED_REFUSALS)
    assert shipped_refusal("15145550180") is None
    assert shipped_refusal("33142685300") is None


def dial_end_statuses(events: list[Message]) -> list[str]:
    return [m["DialStatus"] for m in events if m.event == "DialEnd" and "Channel" in m]


# What a SIP trunk answers, as recorded from a real carrier (shipped_contact_*):
# DialStatus, the volunteer leg's cause, and the contact leg's cause.
SIP_OUTCOMES = {
    "0": ("ANSWER", "16", "16"),
    "1": ("BUSY", "17", "17"),
    "2": ("NOANSWER", "16", "0"),
    "3": ("CONGESTION", "34", "34"),
    "5": ("NOANSWER", "21", "21"),
    "6": ("NOANSWER", "1", "1"),
    "7": ("ANSWER", "16", "16"),
}
LOCAL_OUTCOMES = {
    "0": ("ANSWER", "16", "16"),
    "1": ("BUSY", "16", "17"),
    "2": ("NOANSWER", "16", "0"),
    "3": ("CONGESTION", "16", "34"),
    "5": ("NOANSWER", "21", "21"),
    "6": ("NOANSWER", "27", "27"),
    "7": ("ANSWER", "16", "16"),
}


@pytest.mark.parametrize("trunk", ["carrier", "pjsip", "local"])
@pytest.mark.parametrize("digit", list(SIP_OUTCOMES))
async def test_contact_outcomes_by_last_digit(ami: RawAmiClient, trunk: str, digit: str) -> None:
    call = f"d{digit}{trunk}"
    await ami.request(
        originate(
            f"1514555018{digit}",
            call,
            variables={"DIALER_TRUNK": trunk, "DIALER_RING_TIMEOUT": "2"},
        )
    )
    hangup = await ami.wait_for(is_hangup_of(f"{call}-v"))
    await ami.wait_for(
        lambda m: m.event == "DeviceStateChange" and m["Device"] == "PJSIP/1001",
        start=ami.messages.index(hangup),
    )
    events = call_events(ami, call)
    dial_status, volunteer_cause, contact_cause = (
        LOCAL_OUTCOMES if trunk == "local" else SIP_OUTCOMES
    )[digit]
    assert dial_end_statuses(events) == [dial_status]
    assert hangup["Cause"] == volunteer_cause
    contact_causes = [
        m["Cause"] for m in events if m.event == "Hangup" and m["Uniqueid"] != f"{call}-v"
    ]
    assert contact_cause in contact_causes
    dial_variable = [m["Value"] for m in events if m.get("Variable") == "DIALSTATUS"][-1]
    expected_variable = {
        "0": "ANSWER",
        "1": "BUSY",
        "2": "NOANSWER",
        "3": "CONGESTION",
        "5": "CHANUNAVAIL",
        "6": "CHANUNAVAIL",
        "7": "ANSWER",
    }[digit]
    assert dial_variable == expected_variable
    answered = any(m.event == "BridgeEnter" for m in events)
    assert answered == (digit in "07")
    # Every leg of the call is gone, and nothing else is left behind.
    assert ami.messages and not [
        n
        for n in (await ami.request_list(Action("CoreShowChannels")))
        if n.event == "CoreShowChannel"
    ]


async def test_contact_that_stays_is_hung_up_by_action(
    ami: RawAmiClient, sim: AmiSimulator
) -> None:
    await ami.request(originate("15145550184", "s1"))
    await ami.wait_for(lambda m: m.event == "BridgeEnter" and m.get("Uniqueid") == "s1-v")
    await asyncio.sleep(20 * SCALE)
    listing = await ami.request_list(Action("CoreShowChannels"))
    channels = [m for m in listing if m.event == "CoreShowChannel"]
    assert len(channels) == 2
    contact = next(m["Channel"] for m in channels if m["Uniqueid"] != "s1-v")
    status = await ami.request_list(Action("Status"))
    assert [m.event for m in status][-1] == "StatusComplete"
    assert {m["Channel"] for m in status if m.event == "Status"} == set(sim.channel_names)
    response = await ami.request(Action.build("Hangup", {"Channel": contact, "Cause": 16}))
    assert response["Message"] == "Channel Hungup"
    await ami.wait_for(is_hangup_of("s1-v"))
    assert sim.channel_names == []


async def test_hangup_by_regex_lists_the_channels(ami: RawAmiClient, sim: AmiSimulator) -> None:
    await ami.request(originate("15145550184", "r1", volunteer="1002"))
    await ami.wait_for(lambda m: m.event == "BridgeEnter" and m.get("Uniqueid") == "r1-v")
    items = await ami.request_list(Action.build("Hangup", {"Channel": r"/^PJSIP\/1002-.*$/"}))
    assert items[0]["Message"] == "Channels hung up will follow"
    assert [m.event for m in items[1:]] == ["ChannelHungup", "ChannelsHungupListComplete"]
    assert items[-1]["ListItems"] == "1"
    await ami.wait_for(is_hangup_of("r1-v"))
    assert sim.active_calls == 0


async def test_an_unplugged_volunteer_phone_is_refused_at_once(ami: RawAmiClient) -> None:
    started = time.monotonic()
    start = len(ami.messages)
    await ami.request(originate("15145550180", "u1", volunteer="1099", timeout_ms=300_000))
    response = await ami.wait_for(lambda m: m.event == "OriginateResponse")
    # Long before the Originate's Timeout (3 s here), and no channel at all.
    assert time.monotonic() - started < 1.0
    assert (response["Response"], response["Reason"], response["Channel"]) == (
        "Failure",
        "0",
        "PJSIP/1099",
    )
    assert (response["Uniqueid"], response["CallerIDNum"]) == ("u1-v", "15145550000")
    await asyncio.sleep(5 * SCALE)
    assert [m.event for m in ami.messages[start:] if m.event] == ["OriginateResponse"]


@pytest.mark.parametrize(
    ("extension", "reason", "cause", "rings"),
    [
        ("1098", "3", ("19", "480"), True),
        ("1097", "0", ("17", "486"), False),
        ("1096", "0", ("21", "603"), False),
        ("1095", "3", ("19", "480"), False),
    ],
)
async def test_volunteer_outcomes(
    ami: RawAmiClient,
    sim: AmiSimulator,
    extension: str,
    reason: str,
    cause: tuple[str, str],
    rings: bool,
) -> None:
    sim.script_volunteer("1096", VolunteerBehaviour(VolunteerOutcome.DECLINED))
    sim.script_volunteer("1095", VolunteerBehaviour(VolunteerOutcome.NO_RESPONSE))
    call = f"v{extension}"
    await ami.request(originate("15145550180", call, volunteer=extension, timeout_ms=5000))
    response = await ami.wait_for(lambda m: m.event == "OriginateResponse")
    assert (response["Response"], response["Reason"]) == ("Failure", reason)
    hangup = await ami.wait_for(is_hangup_of(f"{call}-v"))
    assert (hangup["Cause"], hangup["TechCause"]) == cause
    events = call_events(ami, call)
    assert any(m.event == "Newstate" for m in events) == rings
    assert not any(m.event == "Newexten" and m["Application"] == "Dial" for m in events)
    # The Originate's own dial of the phone ends only when the phone answered
    # something; a timeout leaves it without a DialEnd.
    ends = [
        m["DialStatus"]
        for m in ami.messages
        if m.event == "DialEnd" and m["DestUniqueid"] == f"{call}-v"
    ]
    assert ends == {"3": [], "0": ["BUSY" if extension == "1097" else "NOANSWER"]}[reason]


async def test_time_scale_shrinks_a_call(ami: RawAmiClient) -> None:
    started = time.monotonic()
    await ami.request(originate("15145550180", "t1"))  # rings 1 s, talks 4 s
    await ami.wait_for(is_hangup_of("t1-v"))
    elapsed = time.monotonic() - started
    assert 5 * SCALE * 0.9 <= elapsed < 5 * SCALE + 0.5


async def test_scripted_behaviours_override_the_rule(ami: RawAmiClient, sim: AmiSimulator) -> None:
    sim.script_contact("+15145550180", ContactBehaviour.busy())  # the + is optional
    sim.script_volunteer("1005", VolunteerBehaviour(answer_after=2.0, hangs_up_after=1.0))
    await ami.request(originate("15145550180", "b1"))
    await ami.wait_for(is_hangup_of("b1-v"))
    assert dial_end_statuses(call_events(ami, "b1")) == ["BUSY"]
    sim.script_contact("15145550188", ContactBehaviour.answers(after=0.5))
    await ami.request(originate("15145550188", "b2", volunteer="1005"))
    await ami.wait_for(is_hangup_of("b2-v"))
    events = call_events(ami, "b2")
    requests = [m for m in events if m.event == "HangupRequest"]
    assert requests[0]["Uniqueid"] == "b2-v"  # the volunteer hung up first


async def test_synchronous_originate_answers_after_the_outcome(ami: RawAmiClient) -> None:
    response = await ami.request(originate("15145550184", "y1", asynchronous=False))
    assert response["Message"] == "Originate successfully queued"
    assert any(m.event == "DialEnd" and m["DialStatus"] == "ANSWER" for m in ami.messages)
    assert not any(m.event == "OriginateResponse" for m in ami.messages)
    failed = await ami.request(originate("15145550180", "y2", volunteer="1097", asynchronous=False))
    assert (failed.response, failed["Message"]) == ("Error", "Originate failed")


async def test_least_privilege_user() -> None:
    sim = AmiSimulator(time_scale=SCALE, least_privilege=True)
    await sim.start()
    client = await RawAmiClient.connect("127.0.0.1", sim.port)
    try:
        await client.login(USER, SECRET)
        await client.request(originate("15145550180", "lp"))
        await client.wait_for(is_hangup_of("lp-v"))
        names = {m.event for m in client.messages}
        assert not names & {"FullyBooted", "VarSet", "Newexten"}
        assert {"Newchannel", "DialEnd", "BridgeEnter", "OriginateResponse"} <= names
        listing = await client.request_list(Action("CoreShowChannels"))
        assert listing[-1]["ListItems"] == "0"
        refused = await client.request(Action.build("Command", {"Command": "core show channels"}))
        assert (refused.response, refused["Message"]) == ("Error", "Permission denied")
    finally:
        await client.close()
        await sim.stop()


async def test_drop_clients_keeps_the_calls(ami: RawAmiClient, sim: AmiSimulator) -> None:
    await ami.request(originate("15145550184", "k1"))
    await ami.wait_for(lambda m: m.event == "BridgeEnter" and m.get("Uniqueid") == "k1-v")
    sim.drop_clients()
    await asyncio.wait_for(ami.closed.wait(), 1.0)
    again = await RawAmiClient.connect("127.0.0.1", sim.port)
    try:
        await again.login(USER, SECRET)
        listing = await again.request_list(Action("CoreShowChannels"))
        assert {m["Linkedid"] for m in listing if m.event == "CoreShowChannel"} == {"k1-v"}
        assert listing[-1]["ListItems"] == "2"
    finally:
        await again.close()


async def test_stall_delays_replies_until_it_ends(ami: RawAmiClient, sim: AmiSimulator) -> None:
    sim.stall(0.2)
    started = time.monotonic()
    await ami.request(Action("Ping"), within=2.0)
    assert time.monotonic() - started >= 0.18


async def test_garbage_is_sent_and_the_session_goes_on(
    ami: RawAmiClient, sim: AmiSimulator
) -> None:
    before = len(ami.messages)
    sim.send_garbage()
    pong = await ami.request(Action("Ping"))
    assert pong["Ping"] == "Pong"
    assert len(ami.messages) > before + 1  # the garbage arrived as a message of its own


async def test_restart_hangs_everything_up_and_says_so(
    ami: RawAmiClient, sim: AmiSimulator
) -> None:
    await ami.request(originate("15145550184", "z1", variables={"DIALER_TRUNK": "local"}))
    await ami.wait_for(lambda m: m.event == "BridgeEnter" and m.get("Uniqueid") == "z1-v")
    start = len(ami.messages)
    await sim.restart()
    await asyncio.wait_for(ami.closed.wait(), 1.0)
    after = ami.messages[start:]
    soft = [m for m in after if m.event == "SoftHangupRequest" and m["Cause"] == "4"]
    assert len(soft) == 3
    assert len([m for m in after if m.event == "Hangup"]) == 3
    assert after[-1].event == "Shutdown" and after[-1]["Restart"] == "True"
    again = await RawAmiClient.connect("127.0.0.1", sim.port)
    try:
        await again.login(USER, SECRET)
        listing = await again.request_list(Action("CoreShowChannels"))
        assert listing[-1]["ListItems"] == "0"
    finally:
        await again.close()


async def test_crash_closes_without_a_word(ami: RawAmiClient, sim: AmiSimulator) -> None:
    await ami.request(originate("15145550184", "x1"))
    await ami.wait_for(lambda m: m.event == "BridgeEnter" and m.get("Uniqueid") == "x1-v")
    await asyncio.sleep(5 * SCALE)
    start = len(ami.messages)
    await sim.crash(down_for=0.1)
    await asyncio.wait_for(ami.closed.wait(), 1.0)
    assert ami.messages[start:] == []
    with pytest.raises(OSError):
        await RawAmiClient.connect("127.0.0.1", sim.port)
    await asyncio.sleep(0.2)
    again = await RawAmiClient.connect("127.0.0.1", sim.port)
    try:
        await again.login(USER, SECRET)
        listing = await again.request_list(Action("CoreShowChannels"))
        assert listing[-1]["ListItems"] == "0"
    finally:
        await again.close()


async def test_drop_on_next_originate_loses_the_response_not_the_call(
    ami: RawAmiClient, sim: AmiSimulator
) -> None:
    sim.drop_on_next("Originate")
    start = len(ami.messages)
    ami.send(originate("15145550184", "w1"))
    await asyncio.wait_for(ami.closed.wait(), 1.0)
    assert ami.messages[start:] == []
    assert sim.action_counts["Originate"] == 1
    await asyncio.sleep(5 * SCALE)
    assert sim.active_calls == 1


async def test_a_client_that_stops_reading_is_dropped(ami: RawAmiClient, sim: AmiSimulator) -> None:
    # What the transport reports when its buffer fills up because the peer
    # does not read; Asterisk gives up on such a client after 100 ms.
    session = next(iter(sim._sessions))
    session.pause_writing()
    await asyncio.wait_for(ami.closed.wait(), 1.0)


def test_default_rule() -> None:
    assert default_contact_behaviour("15145550184") == ContactBehaviour.answers(after=1.0)
    assert default_contact_behaviour("15145550180").talk_seconds == 4.0
    assert default_contact_behaviour("15145550189").talk_seconds == 3.0
    assert default_contact_behaviour("15145550186").outcome is ContactOutcome.UNREACHABLE
    assert default_volunteer_behaviour("1099").outcome is VolunteerOutcome.UNREACHABLE
    assert default_volunteer_behaviour("1098").outcome is VolunteerOutcome.NO_ANSWER
    assert default_volunteer_behaviour("1097").outcome is VolunteerOutcome.BUSY
    assert default_volunteer_behaviour("1001").outcome is VolunteerOutcome.ANSWER
