"""The volunteers' power-session legs, followed on the ordered AMI stream.

Pure, like :mod:`ami_bridge.tracker`: stream items in, leg updates out.

A session's leg is one Originate (``ChannelId: ps<session>-s``, ``ActionID:
power-<session>``) into ``[dialer-power]``, where it waits in a conference
of its own.  It is not a call of the tracker's (its id ends in neither
``-v`` nor ``-o``); it matters by being up or not: while it is up the
session's contacts are dialed, and when it goes the session ends.  Seen on
the real Asterisk (tests/pbx/test_power.py):

* ``Newstate`` ChannelState 6 on ``ps<session>-s``: the phone answered
  (a Local ``;1`` half, for a volunteer whose phone is their own number,
  when its ``;2`` half's dial is answered);
* ``OriginateResponse`` Failure with that ActionID: it never was (Reason 3
  no answer, 5 busy, 8 congestion, 0 or 1 anything else);
* ``Hangup`` on ``ps<session>-s``: the volunteer hung up, or their phone
  went.  A resync that no longer lists it says the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from ami_bridge.codec import Message
from ami_bridge.stream import ConnectionLost, Received, Resynced, StreamItem
from dialer.domain.ports import SessionLegUpdate

_LEG_ID = re.compile(r"^ps(\d+)-s$")
_ACTION_ID = re.compile(r"^power-(\d+)$")

# OriginateResponse Reason codes (AST_CONTROL_*): why a phone never answered.
_NOT_ANSWERED = {
    "3": "the phone was not answered",
    "5": "the phone was busy",
    "8": "the phone could not be reached (congestion)",
}


def leg_channel_id(session_id: int) -> str:
    return f"ps{session_id}-s"


def leg_action_id(session_id: int) -> str:
    return f"power-{session_id}"


def is_session_leg_originate(action_id: str | None) -> bool:
    """Whether an Originate (by its ActionID) calls a session's volunteer in,
    rather than placing a call of the tracker's."""
    return _ACTION_ID.match(action_id or "") is not None


@dataclass
class _Leg:
    channel: str | None = None
    answered_at: datetime | None = None
    # Its channel was seen (or it was adopted after a restart): a resync
    # that does not list it means it is gone.  One whose Originate has not
    # made a channel yet is left to its OriginateResponse, or to the
    # worker's deadline when that was lost with the connection.
    seen: bool = False


class SessionLegs:
    def __init__(self) -> None:
        self._legs: dict[int, _Leg] = {}

    def expect(self, session_id: int) -> None:
        """A leg is being called: follow it from its first event."""
        self._legs.setdefault(session_id, _Leg())

    def adopt(self, session_id: int, *, up: bool, at: datetime) -> None:
        """A leg placed before a restart: the next resync settles it."""
        self._legs.setdefault(session_id, _Leg(answered_at=at if up else None, seen=True))

    def forget(self, session_id: int) -> None:
        """Its Originate was never sent: nothing of it will come."""
        self._legs.pop(session_id, None)

    def channel(self, session_id: int) -> str | None:
        leg = self._legs.get(session_id)
        return leg.channel if leg is not None else None

    def feed(self, item: StreamItem) -> list[SessionLegUpdate]:
        if isinstance(item, Received):
            return self._on_message(item.message, item.at)
        if isinstance(item, Resynced):
            return self._on_resync(item.channels, item.at)
        if isinstance(item, ConnectionLost):
            return []
        return []

    def _on_message(self, message: Message, at: datetime) -> list[SessionLegUpdate]:
        fields = message.fields
        event = fields.get("Event")
        if event == "OriginateResponse":
            found = _ACTION_ID.match(fields.get("ActionID", ""))
            if found is None or fields.get("Response") != "Failure":
                return []
            session_id = int(found.group(1))
            if session_id not in self._legs:
                return []
            reason = _NOT_ANSWERED.get(fields.get("Reason", ""), "the phone could not be called")
            return self._gone(session_id, at, reason)
        if event not in ("Newchannel", "Newstate", "Hangup"):
            return []
        found = _LEG_ID.match(fields.get("Uniqueid", ""))
        if found is None:
            return []
        session_id = int(found.group(1))
        leg = self._legs.get(session_id)
        if leg is None:
            # Not one this worker called or adopted (or already settled).
            return []
        leg.channel = fields.get("Channel") or leg.channel
        leg.seen = True
        if event == "Hangup":
            cause = fields.get("Cause-txt") or fields.get("Cause") or "hung up"
            return self._gone(session_id, at, cause)
        if event == "Newstate" and fields.get("ChannelState") == "6" and leg.answered_at is None:
            leg.answered_at = at
            return [
                SessionLegUpdate(session_id, up=True, at=at, channel=leg.channel, answered_at=at)
            ]
        return []

    def _on_resync(self, channels: tuple[Message, ...], at: datetime) -> list[SessionLegUpdate]:
        listed: dict[int, str | None] = {}
        answered: set[int] = set()
        for channel in channels:
            found = _LEG_ID.match(channel.fields.get("Uniqueid", ""))
            if found is not None:
                listed[int(found.group(1))] = channel.fields.get("Channel")
                if channel.fields.get("ChannelState") == "6":
                    answered.add(int(found.group(1)))
        updates: list[SessionLegUpdate] = []
        for session_id, leg in list(self._legs.items()):
            if session_id not in listed and leg.seen:
                updates += self._gone(session_id, at, "gone while the PBX link was down")
        for session_id, name in listed.items():
            leg = self._legs.setdefault(session_id, _Leg())
            leg.channel = name or leg.channel
            leg.seen = True
            if leg.answered_at is None and session_id in answered:
                # A leg answered while nobody watched.
                leg.answered_at = at
                updates.append(
                    SessionLegUpdate(
                        session_id, up=True, at=at, channel=leg.channel, answered_at=at
                    )
                )
        return updates

    def _gone(self, session_id: int, at: datetime, reason: str) -> list[SessionLegUpdate]:
        leg = self._legs.pop(session_id, None)
        if leg is None:
            return []
        return [
            SessionLegUpdate(
                session_id,
                up=False,
                at=at,
                channel=leg.channel,
                answered_at=leg.answered_at,
                reason=reason,
            )
        ]
