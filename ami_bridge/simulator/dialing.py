"""Dialing the contact: over a SIP trunk, where the carrier's final
answers are the recorded ones (486 busy, 503 congestion, 603 rejected, 404
for an unreachable number), or through a ``Local`` channel into the lab's
``fake-pstn`` context; each plays the contact's leg(s) from the Dial() to
the end of the call, as the recordings show it for the contact's scripted
behaviour.
"""

from __future__ import annotations

import time
import uuid

from ami_bridge.simulator.behaviour import ContactBehaviour, ContactOutcome
from ami_bridge.simulator.channels import Channel
from ami_bridge.simulator.dialplan import format_seconds
from ami_bridge.simulator.legs import CallLegs

# A SIP trunk's final answers: cause, the contact leg's TechCause (the SIP
# status), the volunteer leg's TechCause, DialStatus, then DIALSTATUS as
# Dial() leaves it.  Recorded from a real carrier (shipped_contact_*):
# unreachable plays an unallocated number (404).
_SIP_REFUSALS: dict[ContactOutcome, tuple[int, int, int, str, str]] = {
    ContactOutcome.BUSY: (17, 486, 486, "BUSY", "BUSY"),
    ContactOutcome.CONGESTION: (34, 503, 503, "CONGESTION", "CONGESTION"),
    ContactOutcome.REJECTED: (21, 603, 403, "NOANSWER", "CHANUNAVAIL"),
    ContactOutcome.UNREACHABLE: (1, 404, 404, "NOANSWER", "CHANUNAVAIL"),
}


class ContactDialing(CallLegs):
    """How a call dials its contact; see :class:`Call`."""

    # -- SIP trunk -------------------------------------------------------------------

    async def _dial_pjsip(self) -> None:
        sim, v, number = self.sim, self.v, self.number
        ep = self.endpoint
        if not self.shipped:
            sim._newexten(
                v, "Dial", f"PJSIP/{number}@{ep},{self.ring_timeout}", priority=self.priority + 6
            )
            self.failed_priority = self.priority + 7
        self._dial_vars_reset()
        self.dial_started = time.monotonic()
        behaviour = sim._contact_behaviour(number)
        if ep == "pstnbusy":
            behaviour = ContactBehaviour.busy()
        outcome = behaviour.outcome
        p = Channel(
            self,
            f"PJSIP/{ep}-{next(sim._pjsip_seq):08x}",
            sim._new_uniqueid(),
            state=0,
            context="from-carrier" if self.shipped else "from-pstn",
            exten="s",
            tech="PJSIP",
            created=time.monotonic(),
        )
        self.p = p
        sim._register(p)
        sim._varset(p, "DIALEDPEERNUMBER", f"{number}@{ep}")
        # Dial() gives the new channel the extension it runs in as caller ID:
        # the number in the lab dialplan, "s" in the shipped subroutine.
        p.cid_num, p.cid_name = v.exten, v.cid_name
        p.conn_num, p.conn_name = v.cid_num, v.cid_name
        p.exten = v.exten
        sim._newexten(p, "AppDial", "(Outgoing Line)")
        sim._newcallerid(p)
        sim._newconnectedline(p)
        refusal = _SIP_REFUSALS.get(outcome)
        if refusal is not None:
            # The carrier's final answer (recorded: shipped_contact_busy,
            # _congestion, _declines, _not_found).
            cause, contact_tech, volunteer_tech, dial_status, variable = refusal
            sim._dial_begin(v, p, f"{number}@{ep}")
            v.conn_num = p.cid_num
            sim._newconnectedline(v)
            sim._hangup_request(p, cause, contact_tech)
            sim._dial_end(v, p, dial_status)
            self._after_failed_dial(variable, self.failed_priority)
            sim._qos(v)
            sim._hangup_event(v, cause, volunteer_tech)
            sim._device_state(v.device, "NOT_INUSE")
            sim._hangup_event(p, cause, contact_tech)
            self._end()
            return
        sim._newstate(p, 5)
        sim._dial_begin(v, p, f"{number}@{ep}")
        v.conn_num = p.cid_num
        sim._newconnectedline(v)
        sim._varset(v, "RINGTIME", "0")
        sim._varset(v, "RINGTIME_MS", "1")
        sim._dial_state(v, p, "RINGING")
        sim._device_state(p.device, "RINGING")
        self.contact_ringing = True
        self.stage = "ringing"
        if outcome is ContactOutcome.NO_ANSWER or behaviour.ring_seconds >= self.ring_timeout:
            await sim._sleep(self.ring_timeout)
            sim._dial_end(v, p, "NOANSWER")
            sim._hangup_event(p, 0)
            sim._device_state(p.device, "NOT_INUSE")
            self._after_failed_dial("NOANSWER", self.failed_priority)
            sim._qos(v)
            sim._hangup_event(v, 16)
            sim._device_state(v.device, "NOT_INUSE")
            self._end()
            return
        await sim._sleep(behaviour.ring_seconds)
        sim._newstate(p, 6)
        sim._device_state(p.device, "INUSE")
        bridge = self._bridge_up(p)
        # Two SIP legs: Asterisk moves the media to a native RTP bridge.
        bridge.technology = "native_rtp"
        if sim.dialplan_events:
            v_call_id, p_call_id = str(uuid.uuid4()), str(uuid.uuid4())
            for _ in range(3):
                sim._varset(v, "BRIDGEPEER", p.name)
                sim._varset(v, "BRIDGEPVTCALLID", v_call_id)
                sim._varset(p, "BRIDGEPEER", v.name)
                sim._varset(p, "BRIDGEPVTCALLID", p_call_id)
        who = await self._talk(behaviour.talk_seconds)
        if who == "volunteer":
            self._volunteer_leaves_sip_bridge()
            return
        # The contact sends BYE (recorded: pjsip_contact_answers_then_hangs_up).
        sim._qos_bridged(p, v)
        sim._hangup_request(p, 16)
        self._clear_bridge_peers(p)
        self._clear_bridge_peers(v)
        self._leave(p)
        self._leave(v)
        self._dial_times()
        sim._soft_hangup_request(v, 16)
        sim._qos(v)
        self._destroy_bridge()
        sim._hangup_event(v, 16)
        sim._device_state(v.device, "NOT_INUSE")
        sim._hangup_event(p, 16)
        sim._device_state(p.device, "NOT_INUSE")
        self._end()

    def _volunteer_leaves_sip_bridge(self) -> None:
        """The volunteer's leg hangs up while bridged to the contact's SIP leg
        (recorded: shipped_volunteer_hangs_up_during_talk, the phone's BYE;
        shipped_power_session, a power contact's ;1 put out with its ;2)."""
        sim, v, p = self.sim, self.v, self.p
        assert p is not None
        sim._qos_bridged(v, p)
        sim._hangup_request(v, 16)
        self._clear_bridge_peers(v)
        self._clear_bridge_peers(p)
        self._leave(v)
        self._leave(p)
        self._destroy_bridge()
        self._dial_times()
        sim._soft_hangup_request(v, 16)
        sim._qos(p)
        sim._hangup_event(p, 16)
        sim._hangup_event(v, 16)
        sim._device_state(p.device, "NOT_INUSE")
        sim._device_state(v.device, "NOT_INUSE")
        self._end()

    # -- Local channel through the fake-pstn context ----------------------------------

    async def _dial_local(self) -> None:
        sim, v, number = self.sim, self.v, self.number
        target = f"{number}@fake-pstn"
        sim._newexten(v, "Dial", f"Local/{target},{self.ring_timeout}", priority=self.priority + 4)
        self._dial_vars_reset()
        self.dial_started = time.monotonic()
        behaviour = sim._contact_behaviour(number)
        outcome = behaviour.outcome
        base = f"Local/{target}-{next(sim._local_seq):08x}"
        now = time.monotonic()
        l1 = Channel(self, f"{base};1", sim._new_uniqueid(), state=0, context="fake-pstn",
                      exten=number, tech="Local", created=now)  # fmt: skip
        l2 = Channel(self, f"{base};2", sim._new_uniqueid(), state=4, context="fake-pstn",
                      exten=number, tech="Local", created=now)  # fmt: skip
        self.l1, self.l2 = l1, l2
        sim._register(l1)
        sim._register(l2)
        sim._varset(l1, "DIALEDPEERNUMBER", target)
        l1.cid_num, l1.cid_name = number, v.cid_name
        l1.conn_num, l1.conn_name = v.cid_num, v.cid_name
        sim._newexten(l1, "AppDial", "(Outgoing Line)")
        sim._newcallerid(l1)
        sim._newconnectedline(l1)
        sim._varset(l2, "DIALEDPEERNUMBER", target)
        l2.cid_num, l2.cid_name = v.cid_num, v.cid_name
        l2.conn_num, l2.conn_name = number, v.cid_name
        sim._newcallerid(l2)
        sim._newconnectedline(l2)
        sim._local_bridge(l1, l2, number)
        sim._dial_begin(v, l1, target)
        device = l1.device
        failed_priority = self.failed_priority = self.priority + 5

        if outcome in (ContactOutcome.CONGESTION, ContactOutcome.BUSY):
            app, status, cause = (
                ("Congestion", "CONGESTION", 34)
                if outcome is ContactOutcome.CONGESTION
                else ("Busy", "BUSY", 17)
            )
            sim._newexten(l2, app, "5")
            sim._newstate(l2, 7)
            sim._device_state(device, "INUSE")
            sim._dial_end(v, l1, status)
            sim._hangup_request(l2, 0)
            sim._hangup_event(l1, 0)
            sim._soft_hangup_request(l2, 16)
            sim._varset(v, "DIALSTATUS", status)
            sim._hangup_event(l2, cause)
            sim._newexten(v, "Hangup", "", priority=failed_priority)
            sim._soft_hangup_request(v, 16)
            sim._device_state(device, "NOT_INUSE")
            sim._device_state(device, "NOT_INUSE")
            sim._qos(v)
            sim._hangup_event(v, 16)
            sim._device_state(v.device, "NOT_INUSE")
            self._end()
            return
        if outcome in (ContactOutcome.REJECTED, ContactOutcome.UNREACHABLE):
            cause = 21 if outcome is ContactOutcome.REJECTED else 27
            sim._newexten(l2, "Hangup", str(cause))
            sim._soft_hangup_request(l2, 16)
            self._local_contact_gone(cause, failed_priority)
            return

        sim._newexten(l2, "Ringing", "")
        sim._newstate(l1, 5)
        never = outcome is ContactOutcome.NO_ANSWER or behaviour.ring_seconds >= self.ring_timeout
        sim._newexten(
            l2, "Wait", "3600" if never else format_seconds(behaviour.ring_seconds), priority=2
        )
        sim._device_state(device, "INUSE")
        sim._varset(v, "RINGTIME", "0")
        sim._varset(v, "RINGTIME_MS", "1")
        sim._dial_state(v, l1, "RINGING")
        self.contact_ringing = True
        self.stage = "ringing"
        if never:
            await sim._sleep(self.ring_timeout)
            sim._dial_end(v, l1, "NOANSWER")
            sim._hangup_request(l2, 0)
            sim._hangup_event(l1, 0)
            self._after_failed_dial("NOANSWER", failed_priority)
            sim._qos(v)
            sim._device_state(device, "NOT_INUSE")
            sim._hangup_event(v, 16)
            sim._device_state(v.device, "NOT_INUSE")
            sim._soft_hangup_request(l2, 16)
            sim._hangup_event(l2, 0)
            sim._device_state(device, "NOT_INUSE")
            self._end()
            return
        await sim._sleep(behaviour.ring_seconds)
        sim._newexten(l2, "Answer", "", priority=3)
        sim._newstate(l2, 6)
        sim._newstate(l1, 6)
        sim._device_state(device, "INUSE")
        sim._device_state(device, "INUSE")
        self._bridge_up(l1)
        if sim.dialplan_events:
            sim._varset(l1, "BRIDGEPEER", v.name)
            sim._varset(l1, "BRIDGEPVTCALLID", str(uuid.uuid4()))
            sim._varset(v, "BRIDGEPEER", l1.name)
        # Answer() takes half a second before the dialplan moves on.
        await sim._sleep(0.5)
        talk = behaviour.talk_seconds
        sim._newexten(l2, "Wait", "3600" if talk is None else format_seconds(talk), priority=4)
        self.waiting_long = True
        who = await self._talk(talk, already=0.5)
        if who == "volunteer":
            sim._hangup_request(v, 16)
            self._caller_leaves_bridge(16)
            self._end()
            return
        # The fake-pstn dialplan hangs up (recorded: concurrent_three_calls, c0012).
        sim._newexten(l2, "Hangup", "16", priority=5)
        sim._soft_hangup_request(l2, 16)
        self._far_end_hangs_up(16)
        self._end()
