"""Power mode's pure parts: a session's state from its facts, and its volunteer
leg followed on the AMI stream (the real recording, then what it cannot show)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ami_bridge.codec import Message
from ami_bridge.power_legs import SessionLegs, is_session_leg_originate
from ami_bridge.stream import Received, Resynced
from ami_bridge.tools.replay import replay_steps
from dialer.domain.ports import SessionLegUpdate
from dialer.domain.power import SessionFacts, session_state, waited_seconds
from dialer.domain.vocabulary import CallState, PowerSessionState

S = PowerSessionState
RECORDING = Path(__file__).parents[1] / "fixtures" / "ami" / "shipped_power_session.ami"
AT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def facts(**changed: object) -> SessionFacts:
    base: dict[str, object] = {
        "ended": False,
        "leg_up": True,
        "paused": False,
        "live_call": None,
        "outcomes_owed": 0,
    }
    base.update(changed)
    return SessionFacts(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changed", "state"),
    [
        ({"leg_up": False}, S.CONNECTING),
        ({}, S.WAITING),
        ({"live_call": CallState.REQUESTED}, S.DIALING),
        ({"live_call": CallState.RINGING_CONTACT}, S.DIALING),
        ({"live_call": CallState.TALKING}, S.TALKING),
        ({"outcomes_owed": 1}, S.WRAP_UP),
        # A campaign that dials the next contact as a call ends: one
        # outcome may be owed meanwhile, never two.
        ({"outcomes_owed": 1, "outcomes_allowed": 1}, S.WAITING),
        ({"outcomes_owed": 2, "outcomes_allowed": 1}, S.WRAP_UP),
        ({"paused": True}, S.PAUSED),
        # A pause takes effect after the call; the outcome is asked for first.
        ({"paused": True, "live_call": CallState.TALKING}, S.TALKING),
        ({"paused": True, "outcomes_owed": 1}, S.WRAP_UP),
        ({"ended": True, "live_call": CallState.TALKING}, S.ENDED),
    ],
)
def test_a_sessions_state_follows_from_its_facts(
    changed: dict[str, object], state: PowerSessionState
) -> None:
    assert session_state(facts(**changed)) is state


def test_only_time_spent_waiting_counts_as_waiting() -> None:
    later = AT + timedelta(seconds=12.5)
    assert waited_seconds(S.WAITING, AT, later, 3.0) == 15.5
    assert waited_seconds(S.TALKING, AT, later, 3.0) == 3.0
    # A clock that went back never takes waiting time away.
    assert waited_seconds(S.WAITING, later, AT, 3.0) == 3.0


def _legs_of_recording() -> list[SessionLegUpdate]:
    legs = SessionLegs()
    legs.expect(19)
    updates: list[SessionLegUpdate] = []
    for step in replay_steps([RECORDING]):
        if isinstance(step, Received | Resynced):
            updates += legs.feed(step)
    return updates


def test_the_recorded_sessions_leg_comes_up_once_and_goes_once() -> None:
    up, down = _legs_of_recording()
    assert (up.session_id, up.up, up.channel) == (19, True, "PJSIP/1015-00000000")
    assert up.answered_at == up.at
    assert (down.session_id, down.up, down.channel) == (19, False, "PJSIP/1015-00000000")
    assert down.answered_at == up.answered_at and down.at > up.at
    assert down.reason == "Normal Clearing"


def test_a_session_legs_originate_is_not_a_call() -> None:
    assert is_session_leg_originate("power-19")
    assert not is_session_leg_originate("c0019")
    assert not is_session_leg_originate("spy-3")
    assert not is_session_leg_originate(None)


def _event(**fields: str) -> Received:
    return Received(Message(fields), AT)


@pytest.mark.parametrize(
    ("reason", "said"),
    [
        ("3", "the phone was not answered"),
        ("5", "the phone was busy"),
        ("0", "the phone could not be called"),
    ],
)
def test_a_phone_that_never_answered_ends_the_leg_with_why(reason: str, said: str) -> None:
    legs = SessionLegs()
    legs.expect(7)
    [down] = legs.feed(
        _event(Event="OriginateResponse", Response="Failure", ActionID="power-7", Reason=reason)
    )
    assert (down.up, down.answered_at, down.reason) == (False, None, said)
    # Its channel's own Hangup after that is not news.
    assert legs.feed(_event(Event="Hangup", Uniqueid="ps7-s", Channel="PJSIP/1001-1")) == []


def test_a_leg_nobody_called_is_none_of_this_workers_business() -> None:
    legs = SessionLegs()
    assert legs.feed(_event(Event="Newstate", Uniqueid="ps8-s", ChannelState="6")) == []
    assert (
        legs.feed(_event(Event="OriginateResponse", Response="Failure", ActionID="power-8")) == []
    )


def _listed(uniqueid: str, state: str) -> Message:
    return Message({"Event": "CoreShowChannel", "Uniqueid": uniqueid, "ChannelState": state})


def test_a_resync_settles_the_legs_placed_before_a_restart() -> None:
    legs = SessionLegs()
    legs.adopt(1, up=True, at=AT)  # still there
    legs.adopt(2, up=True, at=AT)  # gone while nobody watched
    legs.adopt(3, up=False, at=AT)  # answered while nobody watched
    later = AT + timedelta(seconds=30)
    updates = legs.feed(Resynced((_listed("ps1-s", "6"), _listed("ps3-s", "6")), later))
    assert [(u.session_id, u.up) for u in updates] == [(2, False), (3, True)]
    assert updates[0].reason == "gone while the PBX link was down"
    assert legs.channel(1) is None  # listed without a name: none made up
