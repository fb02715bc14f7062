"""What the dialer service needs from the PBX side, as a Protocol.

``ami_bridge`` implements it; the service and its tests depend only on this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class OriginateRequest:
    call_id: str
    # The volunteer's dial string, from DIALER_VOLUNTEER_CHANNEL.
    channel: str
    context: str
    # The contact's number as E.164 digits without '+', the dialplan's ${EXTEN}.
    exten: str
    caller_id_name: str
    caller_id_number: str
    timeout_ms: int
    variables: dict[str, str] = field(default_factory=dict)


class PbxError(Exception):
    """Base of everything the PBX side raises to the service."""


class PbxUnavailable(PbxError):
    """Not connected: the action was not sent at all."""


class OriginateRejected(PbxError):
    """The PBX answered the Originate with an error; nothing is ringing."""


class OriginateOutcomeUnknown(PbxError):
    """The connection dropped after the Originate was written.

    It may or may not be ringing; it must not be sent again.  The resync
    after the reconnect tells.
    """


class PbxPort(Protocol):
    @property
    def connected(self) -> bool: ...

    async def originate(self, request: OriginateRequest) -> None: ...

    async def hangup(self, channel: str) -> None: ...
