"""The ;2 half of a Local volunteer leg (the Originate's OtherChannelId,
``<call id>-o``) is the volunteer's side: its cause never stands for the
contact's, whatever the half runs (a power session's conference, the
volunteer's own number)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ami_bridge.codec import Message
from ami_bridge.stream import Received
from ami_bridge.tracker import CallTracker
from dialer.domain.vocabulary import CallOutcome, CallState

T0 = datetime(2026, 8, 1, tzinfo=UTC)
ONE = "Local/19@dialer-power-join-00000005;1"
TWO = "Local/19@dialer-power-join-00000005;2"


def _feed(tracker: CallTracker, second: int, **fields: str) -> None:
    tracker.feed(Received(Message(fields=fields), T0 + timedelta(seconds=second)))


def _newchannel(
    tracker: CallTracker, second: int, channel: str, uniqueid: str, state: str, linkedid: str
) -> None:
    _feed(
        tracker,
        second,
        Event="Newchannel",
        Channel=channel,
        Uniqueid=uniqueid,
        Linkedid=linkedid,
        ChannelState=state,
    )


def test_a_half_that_hangs_up_before_any_dial_says_nothing_of_the_contact() -> None:
    # A power contact dialed after the volunteer left: [dialer-power-join]
    # hangs the ;2 half up (16) before the ;1 half is even answered.
    tracker = CallTracker()
    tracker.register(
        "s1",
        volunteer_channel="Local/19@dialer-power-join/n",
        contact_number="15145550100",
        at=T0,
        action_id="s1",
    )
    _newchannel(tracker, 1, ONE, "s1-v", "0", "s1-v")
    _newchannel(tracker, 1, TWO, "s1-o", "4", "s1-v")
    _feed(tracker, 2, Event="Hangup", Channel=TWO, Uniqueid="s1-o", Cause="16")
    _feed(tracker, 2, Event="DialEnd", DestUniqueid="s1-v", DialStatus="NOANSWER")
    _feed(
        tracker,
        2,
        Event="OriginateResponse",
        ActionID="s1",
        Response="Failure",
        Uniqueid="s1-v",
        Reason="0",
    )
    _feed(tracker, 2, Event="Hangup", Channel=ONE, Uniqueid="s1-v", Cause="16")
    ended = tracker.get("s1")
    assert ended is not None
    assert (ended.state, ended.outcome) == (CallState.ENDED, CallOutcome.VOLUNTEER_UNREACHABLE)
    assert (ended.volunteer_hangup_cause, ended.contact_hangup_cause) == (16, None)
    assert ended.contact_channel is None


def test_a_contact_local_half_still_speaks_for_the_contact() -> None:
    # The lab's Local contact: its ;2 half has an Asterisk-made Uniqueid,
    # and its cause is the contact's when the ;1 half says 0.
    tracker = CallTracker()
    tracker.register(
        "c1", volunteer_channel="PJSIP/1001", contact_number="15145550183", at=T0, action_id="c1"
    )
    _feed(tracker, 1, Event="Newchannel", Channel="PJSIP/1001-01", Uniqueid="c1-v",
          Linkedid="c1-v", ChannelState="6")  # fmt: skip
    _feed(tracker, 2, Event="DialBegin", Uniqueid="c1-v", DestUniqueid="k1",
          DestChannel="Local/15145550183@fake-pstn-01;1")  # fmt: skip
    _newchannel(tracker, 2, "Local/15145550183@fake-pstn-01;2", "k2", "4", "c1-v")
    _feed(tracker, 3, Event="DialEnd", Uniqueid="c1-v", DestUniqueid="k1", DialStatus="CONGESTION")
    _feed(tracker, 3, Event="Hangup", Uniqueid="k1", Cause="0")
    _feed(tracker, 3, Event="Hangup", Uniqueid="k2", Cause="34")
    _feed(tracker, 4, Event="Hangup", Uniqueid="c1-v", Cause="16")
    ended = tracker.get("c1")
    assert ended is not None
    assert (ended.outcome, ended.contact_hangup_cause) == (CallOutcome.CONTACT_CONGESTION, 34)
