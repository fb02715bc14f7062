"""The channels and bridges of simulated calls: each :class:`Channel` holds
the state a real channel shows in its events (state, caller and connected
line, dialplan position, application, bridge), renders the snapshot every
channel event and list item carries, and knows the call it belongs to only
as a :class:`CallHandle`, so that this module needs nothing of how calls
are played.
"""

from __future__ import annotations

import uuid
from typing import Protocol

_STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up", 7: "Busy"}


class CallHandle(Protocol):
    """A call as the rest of the simulator drives it: the Hangup action
    reaches it through one of its channels, a restart tears it down."""

    @property
    def linkedid(self) -> str: ...

    def cancel_task(self) -> None: ...

    def live_channels(self, *, contact_first: bool = False) -> list[Channel]: ...

    def hangup_by_action(self, channel: Channel, cause: int) -> None: ...

    def teardown_for_restart(self) -> None: ...


class Channel:
    """One channel of a call, as its events and the list actions show it."""

    __slots__ = (
        "app_data", "application", "bridge_id", "call", "cause", "cid_name", "cid_num",
        "conn_name", "conn_num", "context", "created", "device", "exten", "linkedid", "name",
        "priority", "state", "tech", "uniqueid",
    )  # fmt: skip

    def __init__(
        self,
        call: CallHandle,
        name: str,
        uniqueid: str,
        *,
        state: int,
        context: str,
        exten: str,
        tech: str,
        created: float,
    ) -> None:
        self.call = call
        self.name = name
        self.uniqueid = uniqueid
        self.linkedid = call.linkedid
        self.state = state
        self.cid_num = self.cid_name = self.conn_num = self.conn_name = "<unknown>"
        self.context = context
        self.exten = exten
        self.priority = 1
        self.application = ""
        self.app_data = ""
        self.bridge_id = ""
        self.tech = tech
        self.created = created
        # The cause of its Hangup event, once hung up.
        self.cause: int | None = None
        # Devices are the channel name without the "-<sequence>" suffix.
        self.device = name.rsplit("-", 1)[0]

    def block(self, p: str = "") -> str:
        """The channel snapshot every channel event carries, optionally prefixed."""
        return (
            f"{p}Channel: {self.name}\r\n{p}ChannelState: {self.state}\r\n"
            f"{p}ChannelStateDesc: {_STATE_DESC.get(self.state, 'Unknown')}\r\n"
            f"{p}CallerIDNum: {self.cid_num}\r\n{p}CallerIDName: {self.cid_name}\r\n"
            f"{p}ConnectedLineNum: {self.conn_num}\r\n{p}ConnectedLineName: {self.conn_name}\r\n"
            f"{p}Language: en\r\n{p}AccountCode: \r\n{p}Context: {self.context}\r\n"
            f"{p}Exten: {self.exten}\r\n{p}Priority: {self.priority}\r\n"
            f"{p}Uniqueid: {self.uniqueid}\r\n{p}Linkedid: {self.linkedid}\r\n"
        )


class Bridge:
    """A basic bridge joining a call's volunteer and contact legs, or a
    conference's mixing bridge."""

    __slots__ = ("channels", "creator", "hidden", "id", "kind", "name", "technology")

    def __init__(
        self,
        *,
        technology: str = "simple_bridge",
        kind: str = "basic",
        creator: str = "<unknown>",
        name: str = "<unknown>",
    ) -> None:
        self.id = str(uuid.uuid4())
        self.technology = technology
        self.kind = kind
        self.creator = creator
        self.name = name
        self.channels: list[Channel] = []
        # Members no event names (ConfBridge's announcer channel), which
        # BridgeNumChannels still counts.
        self.hidden = 0

    def block(self) -> str:
        return (
            f"BridgeUniqueid: {self.id}\r\nBridgeType: {self.kind}\r\n"
            f"BridgeTechnology: {self.technology}\r\nBridgeCreator: {self.creator}\r\n"
            f"BridgeName: {self.name}\r\n"
            f"BridgeNumChannels: {len(self.channels) + self.hidden}\r\n"
            "BridgeVideoSourceMode: none\r\n"
        )


class Conference:
    """A ConfBridge conference of power mode: the volunteer's session leg
    (the marked user) and the ;2 halves of the contacts' calls joined to it."""

    __slots__ = ("bridge", "marked", "members", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.bridge = Bridge(technology="softmix", kind="base", creator="ConfBridge", name=name)
        self.marked: Channel | None = None
        self.members: list[Channel] = []

    @property
    def announcer(self) -> str:
        return f"CBAnn/{self.name}-00000000;2"
