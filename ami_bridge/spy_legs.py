"""The organizers' supervision legs, followed on the ordered AMI stream.

Pure, like :mod:`ami_bridge.power_legs`: stream items in, what is live out.

An organizer's leg is one Originate (``ChannelId: <call>-spy<request>``,
``ActionID: spy-<request>``) into ``[dialer-supervise]``.  It is not a call
of the tracker's; it matters so that an organizer who clicks Listen twice,
or whose phone is still ringing into the call, is not rung into it a second
time, and so that choosing another mode replaces the leg rather than adding
one (tests/pbx/test_supervision.py).  A leg is live from its Originate
until, as the real Asterisk reports it:

* ``Hangup`` on its uniqueid: the organizer hung up, or the volunteer's leg
  did and ChanSpy's ``E`` option ended the organizer's;
* ``OriginateResponse`` Failure with its ActionID: the phone never answered;
* a resync that no longer lists it;
* the end of the call it spied on.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ami_bridge.stream import Received, Resynced, StreamItem
from dialer.domain.ports import SpyMode, SpyRequest

_LEG_ID = re.compile(r"^(.+)-spy(\d+)$")
_ACTION_ID = re.compile(r"^spy-(\d+)$")


def spy_channel_id(request: SpyRequest) -> str:
    """The organizer's leg's uniqueid.  Ends in neither -v nor -o: the
    tracker must not take it for a call of its own (see ami_bridge.tracker)."""
    return f"{request.call_id}-spy{request.request_id}"


def spy_action_id(request: SpyRequest) -> str:
    return f"spy-{request.request_id}"


@dataclass(slots=True)
class SpyLeg:
    request_id: int
    call_id: str
    # The organizer's dial string (their phone), as the request named it.
    phone: str
    mode: SpyMode
    # The channel Asterisk made, once seen: what a hang-up names.
    channel: str | None = None


class SpyLegs:
    def __init__(self) -> None:
        self._legs: dict[int, SpyLeg] = {}

    def expect(self, request: SpyRequest) -> None:
        """The organizer's phone is being rung into the call: follow the leg."""
        self._legs[request.request_id] = SpyLeg(
            request.request_id, request.call_id, request.channel, request.mode
        )

    def forget(self, request_id: int) -> None:
        """Its Originate was never sent, or it is being hung up."""
        self._legs.pop(request_id, None)

    def on_call(self, call_id: str, phone: str) -> SpyLeg | None:
        """The live leg ringing ``phone`` into ``call_id``, if any."""
        for leg in self._legs.values():
            if leg.call_id == call_id and leg.phone == phone:
                return leg
        return None

    def feed(self, item: StreamItem) -> list[int]:
        """Follow the legs on ``item``; the request ids of legs it ended
        (including legs no longer followed, whose hang-up was asked)."""
        if isinstance(item, Received):
            fields = item.message.fields
            event = fields.get("Event")
            if event == "OriginateResponse":
                found = _ACTION_ID.match(fields.get("ActionID", ""))
                if found is None or fields.get("Response") != "Failure":
                    return []
                request_id = int(found.group(1))
                self._legs.pop(request_id, None)
                return [request_id]
            if event not in ("Newchannel", "Hangup"):
                return []
            found = _LEG_ID.match(fields.get("Uniqueid", ""))
            if found is None:
                return []
            request_id = int(found.group(2))
            if event == "Hangup":
                self._legs.pop(request_id, None)
                return [request_id]
            if (leg := self._legs.get(request_id)) is not None:
                leg.channel = fields.get("Channel") or leg.channel
        elif isinstance(item, Resynced):
            listed: dict[int, str | None] = {}
            for channel in item.channels:
                found = _LEG_ID.match(channel.fields.get("Uniqueid", ""))
                if found is not None:
                    listed[int(found.group(2))] = channel.fields.get("Channel")
            # An Originate makes its channel at once: a leg not listed is
            # gone, or never was (its Originate was lost with the link).
            gone = [request_id for request_id in self._legs if request_id not in listed]
            for request_id in gone:
                del self._legs[request_id]
            for request_id, name in listed.items():
                if (leg := self._legs.get(request_id)) is not None:
                    leg.channel = name or leg.channel
            return gone
        return []

    def keep_calls(self, live: Callable[[str], bool]) -> None:
        """Drop the legs of calls that are over (ChanSpy ended them with the call)."""
        for request_id, leg in list(self._legs.items()):
            if not live(leg.call_id):
                del self._legs[request_id]
