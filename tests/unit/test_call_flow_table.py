"""The tracker's call-flow table, checked as data: no event loop, no socket, no recording."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ami_bridge.codec import Message
from ami_bridge.stream import Received, Resynced
from ami_bridge.tracker import (
    COMMANDS,
    STATE_RULES,
    TRANSITIONS,
    TRIGGER_FOR_STATE,
    CallTracker,
    CallUpdate,
    Command,
    Stake,
    Trigger,
    decide,
)
from dialer.domain.vocabulary import LIVE_CALL_STATES, CallOutcome, CallState

S = CallState
T = Trigger
ORDER = list(CallState)
T0 = datetime(2026, 8, 1, tzinfo=UTC)
STAMPS = frozenset(Command) - {Command.FINISH}


def _later(state: CallState) -> list[CallState]:
    return ORDER[ORDER.index(state) + 1 :]


# ------------------------------------------------------------- transitions


def test_every_state_has_a_row_in_every_table() -> None:
    assert set(TRANSITIONS) == set(CallState)
    assert set(STATE_RULES) == set(CallState)
    assert set(COMMANDS) == set(Trigger)


@pytest.mark.parametrize("state", list(CallState))
@pytest.mark.parametrize("trigger", list(Trigger))
def test_every_pair_gives_a_state_and_commands(state: CallState, trigger: Trigger) -> None:
    new_state, commands = decide(state, trigger)
    assert isinstance(new_state, CallState)
    assert all(isinstance(command, Command) for command in commands)
    if trigger in TRANSITIONS[state]:
        assert new_state is TRANSITIONS[state][trigger]
        assert new_state in _later(state)
        assert commands == COMMANDS[trigger]
        assert commands
    else:
        # Illegal here: ignored, never raised.
        assert (new_state, commands) == (state, ())


def test_the_allowed_transitions() -> None:
    allowed = {
        (state, trigger): new_state
        for state, row in TRANSITIONS.items()
        for trigger, new_state in row.items()
    }
    assert allowed == {
        (S.REQUESTED, T.VOLUNTEER_RINGING): S.RINGING_VOLUNTEER,
        (S.REQUESTED, T.VOLUNTEER_ANSWERED): S.VOLUNTEER_ANSWERED,
        (S.REQUESTED, T.CONTACT_RINGING): S.RINGING_CONTACT,
        (S.REQUESTED, T.CONTACT_ANSWERED): S.TALKING,
        (S.REQUESTED, T.ENDED): S.ENDED,
        (S.RINGING_VOLUNTEER, T.VOLUNTEER_ANSWERED): S.VOLUNTEER_ANSWERED,
        (S.RINGING_VOLUNTEER, T.CONTACT_RINGING): S.RINGING_CONTACT,
        (S.RINGING_VOLUNTEER, T.CONTACT_ANSWERED): S.TALKING,
        (S.RINGING_VOLUNTEER, T.ENDED): S.ENDED,
        (S.VOLUNTEER_ANSWERED, T.CONTACT_RINGING): S.RINGING_CONTACT,
        (S.VOLUNTEER_ANSWERED, T.CONTACT_ANSWERED): S.TALKING,
        (S.VOLUNTEER_ANSWERED, T.ENDED): S.ENDED,
        (S.RINGING_CONTACT, T.CONTACT_ANSWERED): S.TALKING,
        (S.RINGING_CONTACT, T.ENDED): S.ENDED,
        (S.TALKING, T.ENDED): S.ENDED,
    }


def test_a_trigger_always_leads_to_the_same_state() -> None:
    # What a trigger means does not depend on where the call stands: only
    # whether it is still ahead.
    for trigger in Trigger:
        targets = {row[trigger] for row in TRANSITIONS.values() if trigger in row}
        assert len(targets) == 1


@pytest.mark.parametrize("state", sorted(LIVE_CALL_STATES, key=ORDER.index))
def test_every_live_state_can_end(state: CallState) -> None:
    assert decide(state, T.ENDED) == (S.ENDED, (Command.FINISH,))


@pytest.mark.parametrize("trigger", list(Trigger))
def test_ended_is_terminal(trigger: Trigger) -> None:
    assert decide(S.ENDED, trigger) == (S.ENDED, ())


def test_the_commands_of_each_trigger() -> None:
    assert COMMANDS == {
        T.VOLUNTEER_RINGING: (Command.STAMP_VOLUNTEER_RINGING,),
        T.VOLUNTEER_ANSWERED: (Command.STAMP_VOLUNTEER_ANSWERED,),
        T.CONTACT_RINGING: (Command.STAMP_CONTACT_RINGING,),
        T.CONTACT_ANSWERED: (Command.STAMP_CONTACT_ANSWERED,),
        T.ENDED: (Command.FINISH,),
    }
    # Only the end finishes a call.
    assert [t for t, commands in COMMANDS.items() if Command.FINISH in commands] == [T.ENDED]


def test_every_command_has_a_runner() -> None:
    assert set(CallTracker()._commands) == set(Command)


# -------------------------------------------------------------- state rules


def test_whose_outcome_an_end_decides() -> None:
    assert {state: rules.at_stake for state, rules in STATE_RULES.items()} == {
        S.REQUESTED: Stake.VOLUNTEER,
        S.RINGING_VOLUNTEER: Stake.VOLUNTEER,
        S.VOLUNTEER_ANSWERED: Stake.CONTACT,
        S.RINGING_CONTACT: Stake.CONTACT,
        S.TALKING: Stake.CONVERSATION,
        S.ENDED: None,
    }
    # Judged once and for all on the way in: only the final state has no stake.
    assert {s for s, rules in STATE_RULES.items() if rules.at_stake is None} == {S.ENDED}


def test_the_stake_only_moves_forward() -> None:
    stakes = [STATE_RULES[state].at_stake for state in ORDER if state in LIVE_CALL_STATES]
    ranks = [list(Stake).index(stake) for stake in stakes if stake is not None]
    assert ranks == sorted(ranks)


def test_where_the_volunteer_hanging_up_is_giving_up_on_the_contact() -> None:
    gives_up = {s for s, rules in STATE_RULES.items() if rules.volunteer_hangup_gives_up}
    # Answered, and the contact not (yet) on the line.
    assert gives_up == {S.VOLUNTEER_ANSWERED, S.RINGING_CONTACT}
    assert all(STATE_RULES[state].at_stake is Stake.CONTACT for state in gives_up)


def test_what_a_resync_listing_dates_from_the_contact_leg() -> None:
    dated = {
        state: rules.listing_dates_contact_step
        for state, rules in STATE_RULES.items()
        if rules.listing_dates_contact_step is not None
    }
    assert dated == {
        S.RINGING_CONTACT: Command.STAMP_CONTACT_RINGING,
        S.TALKING: Command.STAMP_CONTACT_ANSWERED,
    }
    assert set(dated.values()) <= STAMPS


def test_final_states_are_exactly_those_nothing_leaves() -> None:
    final = {s for s, rules in STATE_RULES.items() if rules.final}
    assert final == {S.ENDED}
    assert final == {s for s, row in TRANSITIONS.items() if not row}
    assert final == set(CallState) - LIVE_CALL_STATES


def test_a_resync_can_bring_a_call_to_any_state_between_requested_and_ended() -> None:
    assert set(TRIGGER_FOR_STATE) == LIVE_CALL_STATES - {S.REQUESTED}
    for target, trigger in TRIGGER_FOR_STATE.items():
        assert decide(S.REQUESTED, trigger)[0] is target
        for state in ORDER[: ORDER.index(target)]:
            assert decide(state, trigger)[0] is target
        for state in ORDER[ORDER.index(target) :]:
            assert decide(state, trigger) == (state, ())


# ------------------------------------------- the rules as the tracker uses them


def _at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _feed(tracker: CallTracker, seconds: int, **fields: str) -> list[CallUpdate]:
    return tracker.feed(Received(Message(fields=fields), _at(seconds)))


def _call_reaching(state: CallState) -> CallTracker:
    """A tracker holding call c1 (volunteer leg c1-v, contact leg k1) in ``state``."""
    tracker = CallTracker()
    tracker.register("c1", volunteer_channel="PJSIP/1001", contact_number="100", at=_at(0))
    _feed(
        tracker,
        1,
        Event="Newchannel",
        Uniqueid="c1-v",
        Linkedid="c1-v",
        Channel="PJSIP/1001-01",
        ChannelState="0",
    )
    steps: list[dict[str, str]] = [
        {"Event": "Newstate", "Uniqueid": "c1-v", "ChannelState": "5"},
        {"Event": "Newstate", "Uniqueid": "c1-v", "ChannelState": "6"},
        {
            "Event": "DialBegin",
            "Uniqueid": "c1-v",
            "DestUniqueid": "k1",
            "DestChannel": "PJSIP/carrier-02",
        },
        {"Event": "DialEnd", "Uniqueid": "c1-v", "DestUniqueid": "k1", "DialStatus": "ANSWER"},
    ]
    for seconds, fields in enumerate(steps[: ORDER.index(state)], start=2):
        _feed(tracker, seconds, **fields)
    live = tracker.get("c1")
    assert live is not None
    assert live.state is state
    return tracker


def _hang_up_volunteer_first(tracker: CallTracker) -> CallUpdate:
    _feed(tracker, 10, Event="HangupRequest", Uniqueid="c1-v")
    _feed(tracker, 11, Event="Hangup", Uniqueid="c1-v", Cause="16")
    _feed(tracker, 12, Event="Hangup", Uniqueid="k1", Cause="16")
    ended = tracker.get("c1")
    assert ended is not None
    assert ended.ended
    return ended


@pytest.mark.parametrize(
    ("state", "outcome"),
    [
        # The volunteer's phone never answered: its leg's cause tells.
        (S.RINGING_VOLUNTEER, CallOutcome.FAILED),
        # Answered, the contact not on the line: the volunteer gave up.
        (S.VOLUNTEER_ANSWERED, CallOutcome.HUNG_UP_BY_VOLUNTEER),
        (S.RINGING_CONTACT, CallOutcome.HUNG_UP_BY_VOLUNTEER),
        # Both talked: whoever hangs up, the call completed.
        (S.TALKING, CallOutcome.COMPLETED),
    ],
)
def test_the_volunteer_hanging_up_is_judged_by_the_state(
    state: CallState, outcome: CallOutcome
) -> None:
    ended = _hang_up_volunteer_first(_call_reaching(state))
    assert ended.outcome is outcome
    assert ended.previous_state is state


def test_a_volunteer_who_rang_then_hung_up_is_judged_on_the_volunteer_side() -> None:
    tracker = _call_reaching(S.RINGING_VOLUNTEER)
    _feed(tracker, 10, Event="Hangup", Uniqueid="c1-v", Cause="19")
    ended = tracker.get("c1")
    assert ended is not None
    assert ended.outcome is CallOutcome.VOLUNTEER_NO_ANSWER


def test_the_same_cause_is_read_for_the_contact_once_the_volunteer_answered() -> None:
    tracker = _call_reaching(S.RINGING_CONTACT)
    _feed(tracker, 10, Event="Hangup", Uniqueid="k1", Cause="17")
    _feed(tracker, 11, Event="Hangup", Uniqueid="c1-v", Cause="16")
    ended = tracker.get("c1")
    assert ended is not None
    assert ended.outcome is CallOutcome.CONTACT_BUSY


def test_a_hangup_request_before_the_answer_does_not_count_as_giving_up() -> None:
    tracker = _call_reaching(S.RINGING_VOLUNTEER)
    # A request that came to nothing: the phone answered after all.
    _feed(tracker, 10, Event="HangupRequest", Uniqueid="c1-v")
    _feed(tracker, 11, Event="Newstate", Uniqueid="c1-v", ChannelState="6")
    _feed(
        tracker,
        12,
        Event="DialBegin",
        Uniqueid="c1-v",
        DestUniqueid="k1",
        DestChannel="PJSIP/carrier-02",
    )
    _feed(tracker, 13, Event="Hangup", Uniqueid="k1", Cause="17")
    _feed(tracker, 14, Event="Hangup", Uniqueid="c1-v", Cause="16")
    ended = tracker.get("c1")
    assert ended is not None
    assert ended.outcome is CallOutcome.CONTACT_BUSY


def test_an_ended_call_is_remembered_and_later_events_are_ignored() -> None:
    tracker = _call_reaching(S.TALKING)
    ended = _hang_up_volunteer_first(tracker)
    assert tracker.live_calls() == []
    for fields in (
        {"Event": "Newstate", "Uniqueid": "c1-v", "ChannelState": "6"},
        {"Event": "DialEnd", "Uniqueid": "c1-v", "DestUniqueid": "k1", "DialStatus": "ANSWER"},
        {"Event": "Hangup", "Uniqueid": "c1-v", "Cause": "16"},
    ):
        assert _feed(tracker, 20, **fields) == []
    assert tracker.get("c1") == ended


def test_a_late_trigger_is_ignored_without_an_update() -> None:
    tracker = _call_reaching(S.RINGING_CONTACT)
    # A ringing phone after its answer: a step already passed.
    assert _feed(tracker, 10, Event="Newstate", Uniqueid="c1-v", ChannelState="5") == []
    live = tracker.get("c1")
    assert live is not None
    assert live.state is S.RINGING_CONTACT


@pytest.mark.parametrize(
    ("bridged", "target", "ringing", "answered"),
    [
        (False, S.RINGING_CONTACT, _at(100 - 20), None),
        (True, S.TALKING, None, _at(100 - 20)),
    ],
)
def test_a_call_first_seen_in_a_resync_is_dated_by_its_state(
    bridged: bool, target: CallState, ringing: datetime | None, answered: datetime | None
) -> None:
    tracker = CallTracker()
    volunteer = {
        "Event": "CoreShowChannel",
        "Uniqueid": "c1-v",
        "Linkedid": "c1-v",
        "Channel": "PJSIP/1001-01",
        "ChannelState": "6",
        "Duration": "00:00:30",
    }
    if bridged:
        volunteer["BridgeId"] = "b1"
    contact = {
        "Event": "CoreShowChannel",
        "Uniqueid": "k1",
        "Linkedid": "c1-v",
        "Channel": "PJSIP/carrier-02",
        "ChannelState": "6" if bridged else "5",
        "Application": "AppDial",
        "Duration": "00:00:20",
    }
    updates = tracker.feed(Resynced((Message(fields=volunteer), Message(fields=contact)), _at(100)))
    assert [update.state for update in updates] == [target]
    (update,) = updates
    assert update.discovered
    assert update.volunteer_ringing_at == _at(100 - 30)
    assert update.volunteer_answered_at == _at(100 - 20)
    assert update.contact_ringing_at == ringing
    assert update.contact_answered_at == answered
