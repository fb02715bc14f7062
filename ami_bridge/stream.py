"""What the AMI client hands to its single consumer, in order.

The client turns its socket into one ordered stream of these items; the
call tracker consumes them.  Connection changes travel in the same stream
as the events, so the tracker sees "lost", then "here is what the PBX has
now" at exactly the point in the event order where they happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ami_bridge.codec import Message


@dataclass(frozen=True, slots=True)
class Received:
    """An event (or unsolicited response) read from the PBX."""

    message: Message
    at: datetime


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """The AMI connection ended; events may have been missed from here on."""

    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Resynced:
    """After a (re)login: every ``CoreShowChannel`` event the PBX listed.

    Calls whose channels are listed are still up; calls the tracker knew
    that are not listed ended while we could not see them.
    """

    channels: tuple[Message, ...]
    at: datetime


StreamItem = Received | ConnectionLost | Resynced
