"""An organizer's supervision legs on the AMI stream (ami_bridge.spy_legs)."""

from __future__ import annotations

from datetime import UTC, datetime

from ami_bridge.codec import Message
from ami_bridge.spy_legs import SpyLegs, spy_action_id, spy_channel_id
from ami_bridge.stream import ConnectionLost, Received, Resynced
from dialer.domain.ports import SpyMode, SpyRequest

AT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
OLIVIA = "PJSIP/1007"


def _request(request_id: int, mode: SpyMode = "listen", call_id: str = "c1") -> SpyRequest:
    return SpyRequest(
        request_id=request_id,
        call_id=call_id,
        mode=mode,
        channel=OLIVIA,
        context="dialer-supervise",
        caller_id_name="Listen",
        caller_id_number="15145550000",
        timeout_ms=5000,
    )


def _event(**fields: str) -> Received:
    return Received(Message(fields), AT)


def test_a_leg_is_live_from_its_originate_until_its_hangup() -> None:
    legs = SpyLegs()
    request = _request(4)
    assert (spy_channel_id(request), spy_action_id(request)) == ("c1-spy4", "spy-4")
    legs.expect(request)
    ringing = legs.on_call("c1", OLIVIA)
    assert ringing is not None and (ringing.mode, ringing.channel) == ("listen", None)
    assert legs.on_call("c1", "PJSIP/1009") is None
    assert legs.on_call("c2", OLIVIA) is None
    assert legs.feed(_event(Event="Newchannel", Uniqueid="c1-spy4", Channel="PJSIP/1007-7")) == []
    assert ringing.channel == "PJSIP/1007-7"
    # Another call's leg, or a call's own legs, are none of its business.
    assert legs.feed(_event(Event="Hangup", Uniqueid="c1-v", Channel="PJSIP/1001-1")) == []
    assert legs.feed(ConnectionLost("reset by peer", AT)) == []
    assert legs.on_call("c1", OLIVIA) is ringing
    assert legs.feed(_event(Event="Hangup", Uniqueid="c1-spy4", Channel="PJSIP/1007-7")) == [4]
    assert legs.on_call("c1", OLIVIA) is None


def test_a_phone_that_never_answered_is_free_again() -> None:
    legs = SpyLegs()
    legs.expect(_request(5))
    assert legs.feed(_event(Event="OriginateResponse", Response="Success", ActionID="spy-5")) == []
    assert legs.on_call("c1", OLIVIA) is not None
    assert legs.feed(_event(Event="OriginateResponse", Response="Failure", ActionID="spy-5")) == [5]
    assert legs.on_call("c1", OLIVIA) is None


def test_a_resync_keeps_only_the_legs_it_lists() -> None:
    legs = SpyLegs()
    legs.expect(_request(1, call_id="c1"))
    legs.expect(_request(2, call_id="c2"))
    listed = Message({"Event": "CoreShowChannel", "Uniqueid": "c1-spy1", "Channel": "PJSIP/1007-9"})
    assert legs.feed(Resynced((listed,), AT)) == [2]
    kept = legs.on_call("c1", OLIVIA)
    assert kept is not None and kept.channel == "PJSIP/1007-9"
    assert legs.on_call("c2", OLIVIA) is None


def test_the_legs_of_calls_that_are_over_are_dropped() -> None:
    legs = SpyLegs()
    legs.expect(_request(1, call_id="c1"))
    legs.expect(_request(2, call_id="c2"))
    legs.keep_calls(lambda call_id: call_id == "c2")
    assert legs.on_call("c1", OLIVIA) is None
    assert legs.on_call("c2", OLIVIA) is not None
