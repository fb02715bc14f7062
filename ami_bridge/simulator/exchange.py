"""The simulated PBX as its calls see it: the channels and calls in
progress, the connected sessions, simulated time, the scripted behaviours,
responses to a client and the fan-out of each event to the sessions whose
user may read its class, and every channel, dial and bridge event a call
produces, built from :class:`~ami_bridge.simulator.channels.Channel`
snapshots as the recorded Asterisk wrote them.  :class:`Exchange` is a
base of :class:`~ami_bridge.simulator.server.AmiSimulator`, which sets its
state up.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable

from ami_bridge.simulator.behaviour import ContactBehaviour, VolunteerBehaviour, number_key
from ami_bridge.simulator.channels import Bridge, CallHandle, Channel, Conference
from ami_bridge.simulator.dialplan import Trunk
from ami_bridge.simulator.session import Session

_CAUSE_TEXT = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    3: "No route to destination",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    20: "Subscriber absent",
    21: "Call Rejected",
    27: "Destination out of order",
    31: "Normal, unspecified",
    34: "Circuit/channel congestion",
}

_QOS_TAIL = (
    ";themssrc=0;lp=0;rxjitter=0.000000;rxcount=0;txjitter=0.000000;txcount=0;rlp=0;"
    "rtt=0.000000;rxmes=0.000000;txmes=0.000000"
)
_QOS_VALUES = (
    (
        "RTPAUDIOQOSJITTER",
        "minrxjitter=000.000000;maxrxjitter=000.000000;avgrxjitter=000.000000;"
        "stdevrxjitter=000.000000;mintxjitter=000.000000;maxtxjitter=000.000000;"
        "avgtxjitter=000.000000;stdevtxjitter=000.000000;",
    ),
    (
        "RTPAUDIOQOSLOSS",
        "  minrxlost=000.000000;  maxrxlost=000.000000;  avgrxlost=000.000000;  "
        "stdevrxlost=000.000000;  mintxlost=000.000000;  maxtxlost=000.000000;  "
        "avgtxlost=000.000000;  stdevtxlost=000.000000;",
    ),
    (
        "RTPAUDIOQOSRTT",
        "     minrtt=000.000000;     maxrtt=000.000000;     avgrtt=000.000000;     "
        "stdevrtt=000.000000;",
    ),
    (
        "RTPAUDIOQOSMES",
        "   minrxmes=000.000000;   maxrxmes=000.000000;   avgrxmes=000.000000;   "
        "stdevrxmes=000.000000;   mintxmes=000.000000;   maxtxmes=000.000000;   "
        "avgtxmes=000.000000;   stdevtxmes=000.000000;",
    ),
)


class Exchange:
    """The calls' view of the simulator.  Its state is only declared here:
    ``AmiSimulator.__init__`` sets it up, so that calls need not import the
    server."""

    time_scale: float
    default_trunk: Trunk
    dialplan_events: bool
    ring_timeout: float
    _contacts: dict[str, ContactBehaviour]
    _volunteers: dict[str, VolunteerBehaviour]
    _contact_rule: Callable[[str], ContactBehaviour]
    _volunteer_rule: Callable[[str], VolunteerBehaviour]
    _sessions: set[Session]
    _channels: dict[str, Channel]
    _uniqueids: set[str]
    # Set when the channel of that name hangs up (a ChanSpy waiting on it).
    _hangup_watchers: dict[str, asyncio.Event]
    _calls: dict[str, CallHandle]
    # Power mode's conferences, by name (dialer-power-<session>).
    _conferences: dict[str, Conference]
    _started_at: float
    _epoch: int
    _uniqueid_seq: itertools.count[int]
    _pjsip_seq: itertools.count[int]
    _local_seq: itertools.count[int]

    # -- timing --------------------------------------------------------------

    def _now(self) -> float:
        """Simulated seconds since start."""
        return (time.monotonic() - self._started_at) / self.time_scale

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) * self.time_scale)

    # -- scripted behaviours ------------------------------------------------

    def _contact_behaviour(self, number: str) -> ContactBehaviour:
        found = self._contacts.get(number_key(number))
        return found if found is not None else self._contact_rule(number)

    def _volunteer_behaviour(self, extension: str) -> VolunteerBehaviour:
        found = self._volunteers.get(extension)
        return found if found is not None else self._volunteer_rule(extension)

    # -- responses and the event fan-out -------------------------------------

    @staticmethod
    def _id_line(action_id: str | None) -> str:
        return f"ActionID: {action_id}\r\n" if action_id is not None else ""

    def _respond(
        self,
        session: Session,
        action_id: str | None,
        response: str,
        message: str | None = None,
        extra: str = "",
    ) -> None:
        text = f"Response: {response}\r\n{self._id_line(action_id)}{extra}"
        if message is not None:
            text += f"Message: {message}\r\n"
        session.write((text + "\r\n").encode())

    def _emit(self, category: str, name: str, body: str) -> None:
        sessions = [s for s in self._sessions if category in s.receive]
        if not sessions:
            return
        data = f"Event: {name}\r\nPrivilege: {category},all\r\n{body}\r\n".encode()
        for session in sessions:
            session.write(data)

    # -- channel, dial and bridge events -------------------------------------

    def _new_uniqueid(self) -> str:
        return f"{self._epoch}.{next(self._uniqueid_seq)}"

    def _watch_hangup(self, channel: Channel) -> asyncio.Event:
        """An event set when ``channel`` hangs up (at once if it is gone)."""
        gone = self._hangup_watchers.setdefault(channel.name, asyncio.Event())
        if channel.name not in self._channels:
            gone.set()
        return gone

    def _register(self, channel: Channel) -> None:
        self._channels[channel.name] = channel
        self._uniqueids.add(channel.uniqueid)
        self._emit("call", "Newchannel", channel.block())

    def _newexten(
        self,
        channel: Channel,
        application: str,
        data: str,
        *,
        priority: int | None = None,
    ) -> None:
        if priority is not None:
            channel.priority = priority
        channel.application = application
        channel.app_data = data
        if self.dialplan_events:
            self._emit(
                "dialplan",
                "Newexten",
                f"{channel.block()}Extension: {channel.exten}\r\n"
                f"Application: {application}\r\nAppData: {data}\r\n",
            )

    def _varset(self, channel: Channel, variable: str, value: str) -> None:
        if self.dialplan_events:
            self._emit(
                "dialplan", "VarSet", f"{channel.block()}Variable: {variable}\r\nValue: {value}\r\n"
            )

    def _qos(self, channel: Channel) -> None:
        # A Local channel carries no media of its own: no RTP statistics.
        if not self.dialplan_events or channel.tech == "Local":
            return
        self._varset(channel, "RTPAUDIOQOS", f"ssrc={random.getrandbits(31)}{_QOS_TAIL}")
        for variable, value in _QOS_VALUES:
            self._varset(channel, variable, value)

    def _qos_bridged(self, contact: Channel, volunteer: Channel) -> None:
        if not self.dialplan_events:
            return
        first = f"ssrc={random.getrandbits(31)}{_QOS_TAIL}"
        for variable, value in (("RTPAUDIOQOS", first), *_QOS_VALUES):
            if contact.tech != "Local":
                self._varset(contact, variable, value)
            self._varset(volunteer, f"{variable}BRIDGED", value)

    def _newcallerid(self, channel: Channel) -> None:
        self._emit(
            "call",
            "NewCallerid",
            f"{channel.block()}CID-CallingPres: 0 (Presentation Allowed, Not Screened)\r\n",
        )

    def _newconnectedline(self, channel: Channel) -> None:
        self._emit("call", "NewConnectedLine", channel.block())

    def _newstate(self, channel: Channel, state: int) -> None:
        channel.state = state
        self._emit("call", "Newstate", channel.block())

    def _dial(
        self, name: str, caller: Channel | None, dest: Channel, header: str, value: str
    ) -> None:
        body = (caller.block() if caller else "") + dest.block("Dest") + f"{header}: {value}\r\n"
        self._emit("call", name, body)

    def _dial_begin(self, caller: Channel | None, dest: Channel, dial_string: str) -> None:
        self._dial("DialBegin", caller, dest, "DialString", dial_string)

    def _dial_state(self, caller: Channel | None, dest: Channel, status: str) -> None:
        self._dial("DialState", caller, dest, "DialStatus", status)

    def _dial_end(self, caller: Channel | None, dest: Channel, status: str) -> None:
        self._dial("DialEnd", caller, dest, "DialStatus", status)

    def _device_state(self, device: str, state: str) -> None:
        self._emit("call", "DeviceStateChange", f"Device: {device}\r\nState: {state}\r\n")

    def _hangup_request(self, channel: Channel, cause: int, tech_cause: int | None = None) -> None:
        tech = f"TechCause: {tech_cause}\r\n" if tech_cause else ""
        self._emit("call", "HangupRequest", f"{channel.block()}Cause: {cause}\r\n{tech}")

    def _soft_hangup_request(self, channel: Channel, cause: int) -> None:
        self._emit("call", "SoftHangupRequest", f"{channel.block()}Cause: {cause}\r\n")

    def _hangup_event(self, channel: Channel, cause: int, tech_cause: int | None = None) -> None:
        channel.cause = cause
        self._channels.pop(channel.name, None)
        self._uniqueids.discard(channel.uniqueid)
        watcher = self._hangup_watchers.pop(channel.name, None)
        if watcher is not None:
            watcher.set()
        tech = f"TechCause: {tech_cause}\r\n" if tech_cause else ""
        self._emit(
            "call",
            "Hangup",
            f"{channel.block()}Cause: {cause}\r\n"
            f"Cause-txt: {_CAUSE_TEXT.get(cause, 'Unknown')}\r\n{tech}",
        )

    def _bridge_event(self, name: str, bridge: Bridge, channel: Channel | None = None) -> None:
        self._emit("call", name, bridge.block() + (channel.block() if channel else ""))

    def _local_bridge(
        self,
        one: Channel,
        two: Channel,
        number: str,
        *,
        context: str = "fake-pstn",
        optimization: bool = True,
    ) -> None:
        self._emit(
            "call",
            "LocalBridge",
            f"{one.block('LocalOne')}{two.block('LocalTwo')}Context: {context}\r\n"
            f"Exten: {number}\r\nLocalOptimization: {'Yes' if optimization else 'No'}\r\n",
        )

    def _originate_response(
        self,
        action_id: str | None,
        response: str,
        channel: str,
        context: str,
        exten: str,
        reason: int,
        uniqueid: str,
        cid_num: str,
        cid_name: str,
    ) -> None:
        self._emit(
            "call",
            "OriginateResponse",
            f"{self._id_line(action_id)}Response: {response}\r\nChannel: {channel}\r\n"
            f"Context: {context}\r\nExten: {exten}\r\nReason: {reason}\r\n"
            f"Uniqueid: {uniqueid}\r\nCallerIDNum: {cid_num}\r\nCallerIDName: {cid_name}\r\n",
        )
