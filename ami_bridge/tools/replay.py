"""Replay recorded AMI sessions (``.ami`` files) through the decoder and the tracker.

What the server sent becomes the ordered stream the live AMI client would
produce; what the client sent stands in for the dialer service: an
``Originate`` is a :meth:`CallTracker.register`, a ``Hangup`` a
:meth:`CallTracker.note_hangup_requested` by the operator.  Several files
replay as one session with a reconnect between them: a ``ConnectionLost``
after each file, and the new connection's first ``CoreShowChannels`` list
delivered as the ``Resynced`` a real client would build after logging in.

Recordings hold only seconds since each connection opened, so times are
placed on an arbitrary fixed date; the gap between two files is estimated
from the channel ages (``Duration``) the resync reports.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

from ami_bridge.codec import Decoder, Message
from ami_bridge.pbx import SPY_CHANNEL_VARIABLE
from ami_bridge.power_legs import is_session_leg_originate
from ami_bridge.stream import ConnectionLost, Received, Resynced, StreamItem
from ami_bridge.tools.transcript import Frame, read_transcript
from ami_bridge.tracker import CallTracker, CallUpdate

REPLAY_EPOCH = datetime(2026, 8, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class OriginateSent:
    """The client sent an Originate: the service would register the call."""

    call_id: str
    action_id: str | None
    volunteer_channel: str
    contact_number: str
    at: datetime


@dataclass(frozen=True, slots=True)
class HangupSent:
    """The client sent a Hangup; ``channel`` may be Asterisk's ``/regex/`` form."""

    channel: str
    at: datetime


ReplayStep = StreamItem | OriginateSent | HangupSent


def call_id_of_originate(action: Message) -> str | None:
    """The call id an Originate carries, as the dialer sets it."""
    channel_id = action.get("ChannelId")
    if channel_id and channel_id.endswith("-v"):
        return channel_id[:-2]
    for assignment in action.getall("Variable"):
        name, _, value = assignment.partition("=")
        if name == "DIALER_CALL_ID" and value:
            return value
    # Hand-written Originates (bad_actions.ami) carry neither.
    return action.action_id


def is_supervision(action: Message) -> bool:
    """Whether an Originate rings an organizer into a call (ami_bridge.pbx.spy_on_call)."""
    return any(
        assignment.partition("=")[0] == SPY_CHANNEL_VARIABLE
        for assignment in action.getall("Variable")
    )


def _duration_seconds(text: str | None) -> int | None:
    if not text:
        return None
    parts = text.split(":")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        return None
    hours, minutes, seconds = (int(part) for part in parts)
    return hours * 3600 + minutes * 60 + seconds


def _client_actions(frame: Frame) -> list[Message]:
    return Decoder(expect_banner=False).feed(frame.data)


def _resync_listing(frames: list[Frame]) -> tuple[set[str], list[tuple[Message, float]]]:
    """The ActionIDs of CoreShowChannels sent right after login, and their items.

    Only a list asked for before any Originate is a resync; one asked
    mid-call (as in pjsip_hangup_by_action_during_talk.ami) is just events.
    """
    action_ids: set[str] = set()
    originated = False
    for frame in frames:
        if frame.direction != "client" or frame.note:
            continue
        for action in _client_actions(frame):
            name = (action.action or "").lower()
            if name == "originate":
                originated = True
                break
            if name == "coreshowchannels" and action.action_id:
                action_ids.add(action.action_id)
        if originated:
            break
    items: list[tuple[Message, float]] = []
    if action_ids:
        decoder = Decoder()
        for frame in frames:
            if frame.direction == "server" and not frame.note:
                for message in decoder.feed(frame.data):
                    if message.event == "CoreShowChannel" and message.action_id in action_ids:
                        items.append((message, frame.t))
    return action_ids, items


def replay_steps(
    paths: Sequence[str | Path], *, start: datetime = REPLAY_EPOCH
) -> Iterator[ReplayStep]:
    """The steps of one session recorded in one or more files, in order."""
    offset = 0.0
    previous_end: float | None = None
    created: dict[str, float] = {}
    for index, path in enumerate(paths):
        frames = read_transcript(path)
        resync_ids, listing = _resync_listing(frames)
        if previous_end is not None:
            # The files do not say how long the client was away; the age of
            # each listed channel gives a lower bound (whole seconds).
            offset = previous_end
            for message, t in listing:
                born = created.get(message.get("Uniqueid") or "")
                age = _duration_seconds(message.get("Duration"))
                if born is not None and age is not None:
                    offset = max(offset, born + age - t)
        decoder = Decoder()
        pending: list[Message] = []
        closed = "end of recording"
        last_t = 0.0
        for frame in frames:
            last_t = frame.t
            at = start + timedelta(seconds=offset + frame.t)
            if frame.note is not None:
                closed = frame.note
                continue
            if frame.direction == "client":
                yield from _client_steps(frame, at)
                continue
            for message in decoder.feed(frame.data):
                if message.is_banner:
                    continue
                event = message.event
                if event == "CoreShowChannel" and message.action_id in resync_ids:
                    pending.append(message)
                    continue
                if event == "CoreShowChannelsComplete" and message.action_id in resync_ids:
                    yield Resynced(tuple(pending), at)
                    pending = []
                    continue
                if event == "Newchannel":
                    uniqueid = message.get("Uniqueid")
                    if uniqueid:
                        created[uniqueid] = offset + frame.t
                yield Received(message, at)
        previous_end = offset + last_t
        if index + 1 < len(paths):
            yield ConnectionLost(closed, start + timedelta(seconds=previous_end))


def _client_steps(frame: Frame, at: datetime) -> Iterator[ReplayStep]:
    for action in _client_actions(frame):
        name = (action.action or "").lower()
        if name == "originate":
            if is_supervision(action) or is_session_leg_originate(action.action_id):
                # The dialer does not track an organizer's phone, or a power
                # session's volunteer leg, as a call.
                continue
            call_id = call_id_of_originate(action)
            if call_id:
                yield OriginateSent(
                    call_id=call_id,
                    action_id=action.action_id,
                    volunteer_channel=action.get("Channel") or "",
                    contact_number=action.get("Exten") or "",
                    at=at,
                )
        elif name == "hangup":
            channel = action.get("Channel")
            if channel:
                yield HangupSent(channel, at)


def _hangup_target(tracker: CallTracker, channel: str) -> str | None:
    if len(channel) > 2 and channel.startswith("/") and channel.endswith("/"):
        try:
            pattern = re.compile(channel[1:-1])
        except re.error:
            return None
        for call in tracker.live_calls():
            for name in (call.volunteer_channel, call.contact_channel):
                if name and pattern.search(name):
                    return call.call_id
        return None
    return tracker.call_id_for_channel(channel)


def run(
    steps: Iterable[ReplayStep], tracker: CallTracker | None = None, *, client_hints: bool = True
) -> dict[str, CallUpdate]:
    """Drive a tracker through ``steps``; the last snapshot of every call.

    With ``client_hints=False`` only what Asterisk sent is used, as if the
    tracker had never been told about any call.
    """
    tracker = tracker if tracker is not None else CallTracker()
    calls: dict[str, CallUpdate] = {}
    for step in steps:
        if isinstance(step, OriginateSent):
            if not client_hints:
                continue
            updates = tracker.register(
                step.call_id,
                volunteer_channel=step.volunteer_channel,
                contact_number=step.contact_number,
                at=step.at,
                action_id=step.action_id,
            )
        elif isinstance(step, HangupSent):
            if not client_hints:
                continue
            call_id = _hangup_target(tracker, step.channel)
            if call_id is None:
                continue
            updates = tracker.note_hangup_requested(call_id, by="operator", at=step.at)
        else:
            updates = tracker.feed(step)
        for update in updates:
            calls[update.call_id] = update
    return calls


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def call_summary(update: CallUpdate) -> dict[str, object]:
    """One call as a JSON-able dict."""
    return {
        "call_id": update.call_id,
        "state": update.state.value,
        "outcome": update.outcome.value if update.outcome is not None else None,
        "failure_reason": update.failure_reason,
        "contact_number": update.contact_number,
        "volunteer_channel": update.volunteer_channel,
        "volunteer_uniqueid": update.volunteer_uniqueid,
        "contact_channel": update.contact_channel,
        "contact_uniqueid": update.contact_uniqueid,
        "linkedid": update.linkedid,
        "bridge_id": update.bridge_id,
        "dial_status": update.dial_status,
        "volunteer_hangup_cause": update.volunteer_hangup_cause,
        "volunteer_hangup_cause_text": update.volunteer_hangup_cause_text,
        "contact_hangup_cause": update.contact_hangup_cause,
        "contact_hangup_cause_text": update.contact_hangup_cause_text,
        "originate_reason": update.originate_reason,
        "hangup_requested_by": update.hangup_requested_by,
        "ring_seconds": _round(update.ring_seconds),
        "talk_seconds": _round(update.talk_seconds),
        "discovered": update.discovered,
    }


def replay(*paths: str | Path, client_hints: bool = True) -> list[dict[str, object]]:
    """Every call in a recorded session (one file, or several in order)."""
    calls = run(replay_steps(paths), client_hints=client_hints)
    return [call_summary(update) for update in calls.values()]


def main_replay(path: str | Sequence[str], out: TextIO) -> int:
    """``dialer replay FILE.ami [MORE.ami...]``: one JSON line per call."""
    paths = [path] if isinstance(path, str) else list(path)
    try:
        calls = replay(*paths)
    except (OSError, ValueError) as error:
        print(f"replay: {error}", file=sys.stderr)
        return 1
    for call in calls:
        out.write(json.dumps(call, ensure_ascii=False) + "\n")
    return 0
