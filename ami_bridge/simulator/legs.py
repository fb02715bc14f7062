"""A call's legs: the state of one Originate (its channels, bridge and
stage), the bookkeeping that keeps it in the simulator's tables, the
answers to its Originate, the steps every way of dialing the contact
shares (the Dial() variables, entering and leaving the bridge, waiting for
whoever hangs up first), and every way the legs end when something outside
the script ends them: the Hangup action, a restart, the ``Local`` far end.
:class:`CallLegs` is the base of the call's script in
:mod:`ami_bridge.simulator.calls`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Literal

from ami_bridge.simulator.channels import Bridge, Channel
from ami_bridge.simulator.dialplan import TRUNKS, Trunk
from ami_bridge.simulator.exchange import Exchange
from ami_bridge.simulator.session import Session

_DIAL_VARIABLES = (
    "DIALSTATUS", "DIALEDPEERNUMBER", "DIALEDPEERNAME", "ANSWEREDTIME", "ANSWEREDTIME_MS",
    "DIALEDTIME", "DIALEDTIME_MS", "RINGTIME", "RINGTIME_MS", "PROGRESSTIME", "PROGRESSTIME_MS",
)  # fmt: skip


class CallLegs:
    """One Originate's legs and the steps they share; see :class:`Call`."""

    def __init__(
        self,
        sim: Exchange,
        *,
        request: str,
        resource: str,
        context: str,
        exten: str,
        priority: int,
        timeout: float,
        channel_id: str | None,
        other_channel_id: str | None = None,
        variables: list[tuple[str, str]],
        cid: tuple[str | None, str | None],
        action_id: str | None,
        sync_session: Session | None,
    ) -> None:
        self.sim = sim
        self.request = request
        self.resource = resource
        self.context = context
        self.number = exten
        self.priority = priority
        self.timeout = timeout
        self.variables = variables
        self.vars = dict(variables)
        self.cid = cid
        self.action_id = action_id
        self.sync_session = sync_session
        self.linkedid = channel_id or sim._new_uniqueid()
        self.other_channel_id = other_channel_id
        self.task: asyncio.Task[None] | None = None
        self.stage: Literal["vol", "ringing", "bridged", "ended"] = "vol"
        self.v = self._volunteer_channel()
        trunk = self.vars.get("DIALER_TRUNK", sim.default_trunk).lower()
        self.trunk: Trunk = next((t for t in TRUNKS if t == trunk), sim.default_trunk)
        # The shipped dialplan (and its desk phones) rather than the lab one.
        self.shipped = self.trunk == "carrier"
        self.ring_timeout: float
        if self.shipped:
            self.endpoint = "carrier"
            self.ring_timeout = sim.ring_timeout
            # The shipped endpoints' callerid ("Volunteer 1001" <1001>).
            self.v.cid_num, self.v.cid_name = resource, f"Volunteer {resource}"
        else:
            self.endpoint = self.vars.get("DIALER_TRUNK_EP", "pstn")
            try:
                self.ring_timeout = int(self.vars.get("DIALER_RING_TIMEOUT", "30"))
            except ValueError:
                self.ring_timeout = 30
        # The dialplan's Hangup() after a failed Dial(): set by the dialplan.
        self.failed_priority = 0
        self.volunteer = sim._volunteer_behaviour(resource)
        self.p: Channel | None = None
        self.l1: Channel | None = None
        self.l2: Channel | None = None
        self.bridge: Bridge | None = None
        self.v_ringing = False
        self.contact_ringing = False
        self.dial_started = 0.0
        self.answered = 0.0
        self.waiting_long = False

    def _volunteer_channel(self) -> Channel:
        """The leg the Originate rings: a desk phone's PJSIP channel."""
        return Channel(
            self,
            f"PJSIP/{self.resource}-{next(self.sim._pjsip_seq):08x}",
            self.linkedid,
            state=0,
            context="from-phones",
            exten="s",
            tech="PJSIP",
            created=time.monotonic(),
        )

    # -- bookkeeping -------------------------------------------------------------

    def cancel_task(self) -> None:
        task = self.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    def _end(self) -> None:
        self.stage = "ended"
        self.sim._calls.pop(self.linkedid, None)

    def live_channels(self, *, contact_first: bool = False) -> list[Channel]:
        legs = [c for c in (self.p, self.l1, self.l2) if c is not None]
        ordered = [*legs, self.v] if contact_first else [self.v, *legs]
        return [c for c in ordered if c.name in self.sim._channels]

    def _contact(self) -> Channel:
        contact = self.p or self.l1
        assert contact is not None
        return contact

    # -- the Originate's answer --------------------------------------------------------

    def _originate_succeeded(self) -> None:
        v = self.v
        if self.sync_session is not None:
            self.sim._respond(
                self.sync_session, self.action_id, "Success", "Originate successfully queued"
            )
            return
        self.sim._originate_response(
            self.action_id, "Success", v.name, self.context, self.number, 4, v.uniqueid,
            v.cid_num, v.cid_name,
        )  # fmt: skip

    def _originate_failed(self, reason: int) -> None:
        v = self.v
        if self.sync_session is not None:
            self.sim._respond(self.sync_session, self.action_id, "Error", "Originate failed")
            return
        self.sim._originate_response(
            self.action_id, "Failure", self.request, self.context, self.number, reason,
            v.uniqueid, v.cid_num, v.cid_name,
        )  # fmt: skip

    # -- steps both ways of dialing the contact share ----------------------------------

    def _dial_vars_reset(self) -> None:
        for variable in _DIAL_VARIABLES:
            self.sim._varset(self.v, variable, "")

    def _dial_times(self) -> None:
        now = time.monotonic()
        scale = self.sim.time_scale
        answered = (now - self.answered) / scale
        dialed = (now - self.dial_started) / scale
        sim, v = self.sim, self.v
        sim._varset(v, "ANSWEREDTIME", str(int(answered)))
        sim._varset(v, "ANSWEREDTIME_MS", str(int(answered * 1000)))
        sim._varset(v, "DIALEDTIME", str(int(dialed)))
        sim._varset(v, "DIALEDTIME_MS", str(int(dialed * 1000)))
        sim._varset(v, "DIALSTATUS", "ANSWER")

    def _after_failed_dial(self, dial_status: str, priority: int) -> None:
        """The dialplan's Hangup() after Dial() gave up."""
        self.sim._varset(self.v, "DIALSTATUS", dial_status)
        self.sim._newexten(self.v, "Hangup", "", priority=priority)
        self.sim._soft_hangup_request(self.v, 16)

    def _bridge_up(self, contact: Channel) -> Bridge:
        """DialEnd ANSWER, then both legs enter a new bridge."""
        sim, v = self.sim, self.v
        sim._varset(v, "DIALSTATUS", "ANSWER")
        sim._varset(v, "DIALEDPEERNAME", contact.name)
        suffix = "fake-pstn" if self.trunk == "local" else self.endpoint
        sim._varset(v, "DIALEDPEERNUMBER", f"{self.number}@{suffix}")
        contact.exten = ""
        sim._dial_end(v, contact, "ANSWER")
        bridge = Bridge()
        sim._bridge_event("BridgeCreate", bridge)
        sim._newexten(contact, "AppDial", "(Outgoing Line)")
        for channel in (contact, v):
            bridge.channels.append(channel)
            channel.bridge_id = bridge.id
            sim._bridge_event("BridgeEnter", bridge, channel)
        self.bridge = bridge
        self.answered = time.monotonic()
        self.stage = "bridged"
        return bridge

    def _leave(self, channel: Channel) -> None:
        bridge = self.bridge
        if bridge is None or channel not in bridge.channels:
            return
        bridge.channels.remove(channel)
        channel.bridge_id = ""
        self.sim._bridge_event("BridgeLeave", bridge, channel)

    def _destroy_bridge(self) -> None:
        if self.bridge is not None:
            self.sim._bridge_event("BridgeDestroy", self.bridge)
            self.bridge = None

    def _clear_bridge_peers(self, channel: Channel, *, with_call_id: bool = True) -> None:
        self.sim._varset(channel, "BRIDGEPEER", "")
        if with_call_id:
            self.sim._varset(channel, "BRIDGEPVTCALLID", "")

    async def _talk(self, contact_talk: float | None, already: float = 0.0) -> str:
        """Wait for whoever hangs up first; returns "contact" or "volunteer"."""
        volunteer = self.volunteer.hangs_up_after
        waits = [
            (seconds, who)
            for seconds, who in ((contact_talk, "contact"), (volunteer, "volunteer"))
            if seconds is not None
        ]
        if not waits:
            await asyncio.get_running_loop().create_future()
        seconds, who = min(waits)
        if who == "volunteer":
            seconds -= already
        await self.sim._sleep(seconds)
        return who

    # -- the Local far end -----------------------------------------------------------

    def _local_contact_gone(self, cause: int, failed_priority: int) -> None:
        """The ;2 half hung up before answering (recorded: call rejected)."""
        sim, v = self.sim, self.v
        l1, l2 = self.l1, self.l2
        assert l1 is not None and l2 is not None
        sim._hangup_request(l1, cause)
        sim._hangup_event(l2, cause)
        sim._device_state(l1.device, "NOT_INUSE")
        sim._dial_end(v, l1, "NOANSWER")
        sim._hangup_event(l1, cause)
        self._after_failed_dial("CHANUNAVAIL", failed_priority)
        sim._device_state(l1.device, "NOT_INUSE")
        sim._qos(v)
        sim._hangup_event(v, cause, 403 if cause == 21 else None)
        sim._device_state(v.device, "NOT_INUSE")
        self._end()

    def _far_end_hangs_up(self, cause: int) -> None:
        """The ;2 half of a bridged Local call ended; ;1 and the volunteer follow."""
        sim, v = self.sim, self.v
        l1, l2 = self.l1, self.l2
        assert l1 is not None and l2 is not None
        sim._hangup_request(l1, cause)
        self._clear_bridge_peers(l1)
        sim._hangup_event(l2, cause)
        sim._device_state(l1.device, "NOT_INUSE")
        self._clear_bridge_peers(v, with_call_id=False)
        self._leave(l1)
        sim._hangup_event(l1, cause)
        self._leave(v)
        self._destroy_bridge()
        self._dial_times()
        sim._soft_hangup_request(v, 16)
        sim._device_state(l1.device, "NOT_INUSE")
        sim._qos(v)
        sim._hangup_event(v, 16)
        sim._device_state(v.device, "NOT_INUSE")

    # -- endings forced from outside the script --------------------------------------

    def hangup_by_action(self, channel: Channel, cause: int) -> None:
        """The ``Hangup`` action hit ``channel`` while the script was waiting."""
        self.cancel_task()
        if self.stage == "vol":
            self._volunteer_cancelled(cause)
        elif self.stage == "ringing":
            if channel is self.v:
                self._caller_cancels_dial(cause)
            else:
                self._callee_gone_while_ringing(channel, cause)
        elif self.stage == "bridged":
            if channel is self.v:
                self._caller_leaves_bridge(cause)
            else:
                self._callee_leaves_bridge(channel, cause)
        self._end()

    def teardown_for_restart(self) -> None:
        """After the SoftHangupRequest(4) of every channel (restart_1)."""
        if self.stage == "bridged" and self.trunk == "local":
            sim, v = self.sim, self.v
            l1, l2 = self.l1, self.l2
            assert l1 is not None and l2 is not None
            self._clear_bridge_peers(v, with_call_id=False)
            self._clear_bridge_peers(l1)
            self._leave(v)
            self._dial_times()
            sim._soft_hangup_request(v, 16)
            sim._qos(v)
            self._leave(l1)
            self._destroy_bridge()
            sim._hangup_event(v, 16)
            sim._hangup_request(l2, 16)
            sim._hangup_event(l1, 16)
            sim._soft_hangup_request(l2, 16)
            sim._hangup_event(l2, 0)
            sim._device_state(v.device, "NOT_INUSE")
            sim._device_state(l1.device, "NOT_INUSE")
            sim._device_state(l1.device, "NOT_INUSE")
        elif self.stage == "vol":
            self._volunteer_cancelled(16)
        elif self.stage == "ringing":
            self._caller_cancels_dial(16)
        elif self.stage == "bridged":
            self._caller_leaves_bridge(16)
        self._end()

    def _volunteer_cancelled(self, cause: int) -> None:
        sim, v = self.sim, self.v
        if self.v_ringing:
            sim._dial_end(None, v, "CANCEL")
        self._originate_failed(1)
        sim._hangup_event(v, cause)
        if self.v_ringing:
            sim._device_state(v.device, "NOT_INUSE")

    def _caller_cancels_dial(self, cause: int) -> None:
        sim, v = self.sim, self.v
        if self.p is not None:
            sim._dial_end(v, self.p, "CANCEL")
            sim._hangup_event(self.p, 16)
            sim._device_state(self.p.device, "NOT_INUSE")
        elif self.l1 is not None and self.l2 is not None:
            sim._dial_end(v, self.l1, "CANCEL")
            sim._hangup_request(self.l2, 16)
            sim._hangup_event(self.l1, 16)
            sim._soft_hangup_request(self.l2, 16)
            sim._hangup_event(self.l2, 16)
            sim._device_state(self.l1.device, "NOT_INUSE")
            sim._device_state(self.l1.device, "NOT_INUSE")
        sim._varset(v, "DIALSTATUS", "CANCEL")
        sim._soft_hangup_request(v, 16)
        sim._qos(v)
        sim._hangup_event(v, cause)
        sim._device_state(v.device, "NOT_INUSE")

    def _callee_gone_while_ringing(self, channel: Channel, cause: int) -> None:
        sim, v = self.sim, self.v
        if self.p is not None:
            # Recorded: shipped_hangup_by_volunteer_while_contact_rings.
            p = self.p
            sim._dial_end(v, p, "NOANSWER")
            sim._hangup_event(p, cause)
            sim._device_state(p.device, "NOT_INUSE")
            self._after_failed_dial("NOANSWER", self.failed_priority)
            sim._qos(v)
            sim._hangup_event(v, 16)
            sim._device_state(v.device, "NOT_INUSE")
            return
        l1, l2 = self.l1, self.l2
        assert l1 is not None and l2 is not None
        if channel is l1:
            sim._hangup_request(l2, cause)
            sim._hangup_event(l1, cause)
            sim._dial_end(v, l1, "NOANSWER")
            sim._soft_hangup_request(l2, 16)
            sim._hangup_event(l2, cause)
            sim._device_state(l1.device, "NOT_INUSE")
            sim._device_state(l1.device, "NOT_INUSE")
            self._after_failed_dial("CHANUNAVAIL", self.failed_priority)
            sim._qos(v)
            sim._hangup_event(v, cause)
            sim._device_state(v.device, "NOT_INUSE")
        else:
            self._local_contact_gone(cause, self.failed_priority)

    def _caller_leaves_bridge(self, cause: int) -> None:
        """The volunteer's leg goes (recorded: reconnect_2, hangup by channel regex)."""
        sim, v = self.sim, self.v
        contact = self._contact()
        if self.trunk == "local":
            l2 = self.l2
            assert l2 is not None
            self._clear_bridge_peers(v, with_call_id=False)
            self._clear_bridge_peers(contact)
            self._leave(v)
            self._leave(contact)
            self._destroy_bridge()
            self._dial_times()
            sim._hangup_request(l2, 16)
            sim._soft_hangup_request(l2, 16)
            sim._soft_hangup_request(v, 16)
            sim._hangup_event(l2, 16)
            sim._qos(v)
            sim._device_state(contact.device, "NOT_INUSE")
            sim._hangup_event(v, cause)
            sim._device_state(v.device, "NOT_INUSE")
            sim._hangup_event(contact, 16)
            sim._device_state(contact.device, "NOT_INUSE")
            return
        self._clear_bridge_peers(v)
        self._clear_bridge_peers(contact)
        self._leave(v)
        self._leave(contact)
        self._destroy_bridge()
        self._dial_times()
        sim._soft_hangup_request(v, 16)
        sim._qos(v)
        sim._hangup_event(v, cause)
        sim._device_state(v.device, "NOT_INUSE")
        sim._qos(contact)
        sim._hangup_event(contact, 16)
        sim._device_state(contact.device, "NOT_INUSE")

    def _callee_leaves_bridge(self, channel: Channel, cause: int) -> None:
        """A contact leg is hung up (recorded for ;1: pjsip_hangup_by_action_during_talk)."""
        sim, v = self.sim, self.v
        if self.trunk == "local":
            l1, l2 = self.l1, self.l2
            assert l1 is not None and l2 is not None
            if channel is l2:
                self._far_end_hangs_up(cause)
                return
            self._clear_bridge_peers(l1)
            self._clear_bridge_peers(v, with_call_id=False)
            self._leave(l1)
            sim._hangup_request(l2, cause)
            sim._hangup_event(l1, cause)
            self._leave(v)
            self._destroy_bridge()
            self._dial_times()
            sim._device_state(l1.device, "NOT_INUSE")
            sim._soft_hangup_request(l2, 16)
            sim._hangup_event(l2, 16)
            sim._soft_hangup_request(v, 16)
            sim._device_state(l1.device, "NOT_INUSE")
            sim._qos(v)
            sim._hangup_event(v, 16)
            sim._device_state(v.device, "NOT_INUSE")
            return
        # Recorded: shipped_hangup_by_operator_during_talk.
        p = self._contact()
        self._clear_bridge_peers(p)
        self._clear_bridge_peers(v)
        self._leave(p)
        self._leave(v)
        self._dial_times()
        self._destroy_bridge()
        sim._soft_hangup_request(v, 16)
        sim._qos(p)
        sim._qos(v)
        sim._hangup_event(v, 16)
        sim._hangup_event(p, cause)
        sim._device_state(v.device, "NOT_INUSE")
        sim._device_state(p.device, "NOT_INUSE")
