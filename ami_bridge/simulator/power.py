"""Power mode, as the shipped ``[dialer-power]`` and ``[dialer-power-join]``
contexts play it (recorded: shipped_power_session).

A session's leg is an Originate of the volunteer's desk phone into
``dialer-power``, extension ``<session>``: once the phone answers, ``NoOp``,
``Answer`` and ``ConfBridge(dialer-power-<session>,...)`` as the marked user
of a conference of its own (a ``softmix`` bridge with ConfBridge's announcer
in it, counted by ``BridgeNumChannels`` but never named by an event).

Each contact is an ordinary call of the dialer whose channel is
``Local/<session>@dialer-power-join/n``.  Its ;2 half (the Originate's
``OtherChannelId``) checks the conference for its volunteer: present, it
answers, which answers the ;1 half (the ``ChannelId``) at once, and joins the
conference half a second later (``Answer()`` takes that long) while the ;1
half runs ``[dialer-outbound]`` and dials the contact as any call does;
absent, it logs and hangs up (16) before anything is dialed, and the
Originate fails with Reason 0.  When the volunteer's leg leaves (the Hangup
action, or its phone's own hang-up), ConfBridge puts every contact's ;2 half
out (``end_marked``), which hangs up its ;1 half and so the contact.
"""

from __future__ import annotations

import asyncio
import re
import time

from ami_bridge.simulator.calls import Call
from ami_bridge.simulator.channels import Channel, Conference

POWER_CONTEXT = "dialer-power"
POWER_JOIN_CONTEXT = "dialer-power-join"
# The contexts' only pattern, _X!: a digit, then any more (a session id).
POWER_SESSION = re.compile(r"[0-9]+\Z")
# Local/<session>@dialer-power-join, with or without /n.
_JOIN_CHANNEL = re.compile(
    rf"Local/(?P<session>[^@/]+)@{re.escape(POWER_JOIN_CONTEXT)}(?P<options>/n)?\Z", re.IGNORECASE
)


def power_join_session(channel: str) -> str | None:
    """The session a ``Local/<session>@dialer-power-join/n`` channel joins, or None."""
    found = _JOIN_CHANNEL.match(channel)
    if found is None or not POWER_SESSION.match(found["session"]):
        return None
    return found["session"]


def conference_name(session: str) -> str:
    # FILTER(0-9,${EXTEN}) in both contexts.
    return "dialer-power-" + "".join(c for c in session if c.isdigit())


class PowerSessionCall(Call):
    """The Originate of a session's leg into ``[dialer-power]``."""

    conference: Conference | None = None

    async def _answered(self) -> None:
        sim, v = self.sim, self.v
        name = conference_name(self.number)
        v.context, v.exten = POWER_CONTEXT, self.number
        sim._newexten(v, "NoOp", f"dialer power session {name.rsplit('-', 1)[1]}", priority=1)
        sim._newexten(v, "Answer", "", priority=2)
        sim._newexten(
            v, "ConfBridge", f"{name},dialer_power_bridge,dialer_power_volunteer", priority=3
        )
        conference = Conference(name)
        self.conference = conference
        sim._conferences[name] = conference
        bridge = conference.bridge
        sim._bridge_event("BridgeCreate", bridge)
        sim._device_state(f"confbridge:{name}", "INUSE")
        bridge.hidden = 1
        sim._emit("call", "ConfbridgeStart", f"Conference: {name}\r\n{bridge.block()}")
        bridge.channels.append(v)
        v.bridge_id = bridge.id
        conference.marked = v
        sim._bridge_event("BridgeEnter", bridge, v)
        sim._varset(v, "BRIDGEPEER", conference.announcer)
        self._conference_event("ConfbridgeJoin", v, "Admin: No\r\nMuted: No\r\n")
        hangs_up_after = self.volunteer.hangs_up_after
        if hangs_up_after is None:
            await asyncio.get_running_loop().create_future()
        else:
            await sim._sleep(hangs_up_after)
        # The phone's BYE.
        sim._hangup_request(v, 16)
        self._leave_conference(16)
        self._end()

    def _conference_event(self, name: str, channel: Channel, tail: str = "Admin: No\r\n") -> None:
        conference = self.conference
        assert conference is not None
        self.sim._emit(
            "call",
            name,
            f"Conference: {conference.name}\r\n{conference.bridge.block()}{channel.block()}{tail}",
        )

    def _leave_conference(self, cause: int) -> None:
        """The marked user goes: every contact's ;2 half is put out (end_marked)."""
        sim, v, conference = self.sim, self.v, self.conference
        assert conference is not None
        bridge = conference.bridge
        members = list(conference.members)
        conference.marked = None
        sim._varset(v, "BRIDGEPEER", "")
        bridge.channels.remove(v)
        v.bridge_id = ""
        sim._bridge_event("BridgeLeave", bridge, v)
        for member in members:
            sim._varset(member, "BRIDGEPEER", conference.announcer)
        sim._varset(v, "CONFBRIDGE_RESULT", "HANGUP")
        for member in members:
            sim._varset(member, "CONFBRIDGE_RESULT", "ENDMARKED")
        self._conference_event("ConfbridgeLeave", v)
        for member in members:
            sim._varset(member, "BRIDGEPEER", "")
        sim._soft_hangup_request(v, 16)
        for member in members:
            bridge.channels.remove(member)
            member.bridge_id = ""
            sim._bridge_event("BridgeLeave", bridge, member)
            self._conference_event("ConfbridgeLeave", member)
        conference.members.clear()
        sim._qos(v)
        self._end_conference()
        for member in members:
            if isinstance(member.call, PowerContactCall):
                member.call.put_out()
        sim._hangup_event(v, cause)
        sim._device_state(v.device, "NOT_INUSE")

    def _end_conference(self) -> None:
        sim, conference = self.sim, self.conference
        assert conference is not None
        name, bridge = conference.name, conference.bridge
        sim._device_state(f"confbridge:{name}", "NOT_INUSE")
        sim._emit("call", "ConfbridgeEnd", f"Conference: {name}\r\n{bridge.block()}")
        sim._device_state(f"CBAnn/{name}", "UNKNOWN")
        sim._device_state(f"CBAnn/{name}", "UNKNOWN")
        bridge.hidden = 0
        sim._bridge_event("BridgeDestroy", bridge)
        if sim._conferences.get(name) is conference:
            del sim._conferences[name]

    @property
    def in_conference(self) -> bool:
        conference = self.conference
        return conference is not None and conference.marked is self.v

    def hangup_by_action(self, channel: Channel, cause: int) -> None:
        if not self.in_conference:
            super().hangup_by_action(channel, cause)
            return
        self.cancel_task()
        self._leave_conference(cause)
        self._end()

    def teardown_for_restart(self) -> None:
        if not self.in_conference:
            super().teardown_for_restart()
            return
        # Not recorded: the leg leaves as if hung up, and its contacts with it.
        self._leave_conference(16)
        self._end()


class PowerContactCall(Call):
    """A contact's call on a power session: the Originate of
    ``Local/<session>@dialer-power-join/n`` into ``[dialer-outbound]``."""

    half: Channel
    join_task: asyncio.Task[None] | None = None

    def _volunteer_channel(self) -> Channel:
        sim = self.sim
        session = power_join_session(self.request) or ""
        base = f"Local/{session}@{POWER_JOIN_CONTEXT}-{next(sim._local_seq):08x}"
        self.session = session
        self.conference_name = conference_name(session)
        self.half = Channel(
            self,
            f"{base};2",
            self.other_channel_id or sim._new_uniqueid(),
            state=4,
            context=POWER_JOIN_CONTEXT,
            exten=session,
            tech="Local",
            created=0.0,
        )
        return Channel(
            self,
            f"{base};1",
            self.linkedid,
            state=0,
            context=POWER_JOIN_CONTEXT,
            exten=session,
            tech="Local",
            created=0.0,
        )

    def live_channels(self, *, contact_first: bool = False) -> list[Channel]:
        channels = super().live_channels(contact_first=contact_first)
        if self.half.name in self.sim._channels:
            channels.append(self.half)
        return channels

    async def _run(self) -> None:
        sim, v, half = self.sim, self.v, self.half
        v.created = half.created = time.monotonic()
        sim._register(v)
        sim._register(half)
        sim._newexten(v, "AppDial2", "(Outgoing Line)")
        for name, value in reversed(self.variables):
            sim._varset(v, name, value)
        cid_num, cid_name = self.cid
        if cid_num is not None:
            for channel in (v, half):
                channel.cid_num, channel.cid_name = cid_num, cid_name or ""
        v.conn_num, v.conn_name = v.cid_num, v.cid_name
        if cid_num is not None:
            sim._newcallerid(v)
            sim._newconnectedline(v)
        for name, value in self.variables:
            sim._varset(half, name, value)
        half.conn_num, half.conn_name = v.cid_num, v.cid_name
        sim._newcallerid(half)
        sim._newconnectedline(half)
        sim._local_bridge(v, half, self.session, context=POWER_JOIN_CONTEXT, optimization=False)
        sim._dial_begin(None, v, self.request.split("/", 1)[1])
        room = self.conference_name
        sim._newexten(half, "Set", f"POWER_ROOM={room}", priority=1)
        sim._varset(half, "POWER_ROOM", room)
        conference = sim._conferences.get(room)
        present = conference is not None and conference.marked is not None
        sim._newexten(half, "GotoIf", f"{int(not present)}?novolunteer", priority=2)
        if not present:
            # The volunteer has left (recorded: shipped_power_session, s0023).
            sim._newexten(half, "Log", f"NOTICE,dialer power session {self.session}", priority=6)
            sim._newexten(half, "Hangup", "16", priority=7)
            sim._soft_hangup_request(half, 16)
            sim._hangup_request(v, 16)
            sim._hangup_event(half, 16)
            sim._dial_end(None, v, "NOANSWER")
            self._originate_failed(0)
            sim._hangup_event(v, 16)
            sim._device_state(v.device, "NOT_INUSE")
            sim._device_state(v.device, "NOT_INUSE")
            self._end()
            return
        sim._newexten(half, "Answer", "", priority=3)
        sim._newstate(half, 6)
        sim._newstate(v, 6)
        sim._dial_end(None, v, "ANSWER")
        sim._device_state(v.device, "INUSE")
        sim._device_state(v.device, "INUSE")
        self._originate_succeeded()
        self.join_task = asyncio.create_task(self._join())
        await self._answered()

    async def _join(self) -> None:
        """The ;2 half enters the conference once Answer() is done."""
        sim, half = self.sim, self.half
        await sim._sleep(0.5)
        if self.stage == "ended":
            return
        room = self.conference_name
        sim._newexten(
            half, "ConfBridge", f"{room},dialer_power_bridge,dialer_power_contact", priority=4
        )
        # The ;1 half's connected line (the Dial()'s caller ID) reaches it.
        half.cid_num = self.v.conn_num
        sim._newcallerid(half)
        conference = sim._conferences.get(room)
        if conference is None or conference.marked is None:
            # Not recorded: the volunteer left during the Answer(); the
            # contact is never left alone in the room.
            self.put_out()
            return
        bridge = conference.bridge
        bridge.channels.append(half)
        half.bridge_id = bridge.id
        conference.members.append(half)
        sim._bridge_event("BridgeEnter", bridge, half)
        peers = ",".join(
            c.name for c in bridge.channels if c is not conference.marked and c is not half
        )
        sim._varset(
            conference.marked,
            "BRIDGEPEER",
            ",".join(filter(None, (conference.announcer, peers, half.name))),
        )
        sim._varset(half, "BRIDGEPEER", f"{conference.announcer},{conference.marked.name}")
        sim._emit(
            "call",
            "ConfbridgeJoin",
            f"Conference: {room}\r\n{bridge.block()}{half.block()}Admin: No\r\nMuted: No\r\n",
        )

    def put_out(self) -> None:
        """ConfBridge put the ;2 half out: the dialplan's Hangup() ends it,
        and its ;1 half, and so the contact (recorded: shipped_power_session, s0022)."""
        sim, v, half = self.sim, self.v, self.half
        if self.stage == "ended":
            return
        self.cancel_task()
        sim._newexten(half, "Hangup", "", priority=5)
        sim._soft_hangup_request(half, 16)
        sim._hangup_event(half, 16)
        sim._device_state(v.device, "NOT_INUSE")
        if self.stage == "bridged" and self.p is not None:
            self._volunteer_leaves_sip_bridge()
            return
        # Not recorded: the ;1 half goes before the contact answered.
        sim._hangup_request(v, 16)
        if self.stage == "ringing":
            self._caller_cancels_dial(16)
        else:
            sim._hangup_event(v, 16)
            sim._device_state(v.device, "NOT_INUSE")
        self._end()

    def _end(self) -> None:
        """Whenever the ;1 half ends, its ;2 half follows with its cause
        (recorded: shipped_power_session, s0019 to s0021)."""
        if self.join_task is not None and self.join_task is not asyncio.current_task():
            self.join_task.cancel()
        super()._end()
        sim, half = self.sim, self.half
        if half.name not in sim._channels:
            return
        cause = self.v.cause or 16
        room = sim._conferences.get(self.conference_name)
        sim._hangup_request(half, cause)
        if room is not None and half in room.members:
            sim._varset(half, "BRIDGEPEER", "")
            sim._emit(
                "call",
                "ConfbridgeLeave",
                f"Conference: {room.name}\r\n{room.bridge.block()}{half.block()}Admin: No\r\n",
            )
            room.members.remove(half)
            room.bridge.channels.remove(half)
            half.bridge_id = ""
            sim._bridge_event("BridgeLeave", room.bridge, half)
            if room.marked is not None:
                sim._varset(room.marked, "BRIDGEPEER", room.announcer)
            sim._varset(half, "CONFBRIDGE_RESULT", "HANGUP")
            sim._soft_hangup_request(half, 16)
            sim._hangup_event(half, cause)
        else:
            sim._soft_hangup_request(half, 16)
            sim._hangup_event(half, cause)
            # The ;1 half's last caller ID reaches it after its hangup.
            half.cid_num = self.v.conn_num
            sim._newcallerid(half)
        sim._device_state(self.v.device, "NOT_INUSE")

    def hangup_by_action(self, channel: Channel, cause: int) -> None:
        if channel is not self.half:
            super().hangup_by_action(channel, cause)
            return
        # Not recorded: the ;2 half hung up alone, as when ConfBridge puts it out.
        room = self.sim._conferences.get(self.conference_name)
        if room is not None and self.half in room.members:
            room.members.remove(self.half)
            room.bridge.channels.remove(self.half)
            self.half.bridge_id = ""
            self.sim._bridge_event("BridgeLeave", room.bridge, self.half)
            self.sim._emit(
                "call",
                "ConfbridgeLeave",
                f"Conference: {room.name}\r\n{room.bridge.block()}{self.half.block()}Admin: No\r\n",
            )
        self.put_out()
