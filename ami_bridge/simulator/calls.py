"""The script of one Originate: the volunteer's leg first (unreachable,
busy, declining, ringing out, or answering after its delay), then the
dialplan the call's trunk picks, played step by step as its Newexten and
VarSet events show it (the shipped ``dialer-outbound``,
``dialer-place-call`` and ``dialer-refuse`` contexts, or the lab
``dialer-outbound``), up to the Dial() of the contact.
"""

from __future__ import annotations

import asyncio
import time

from ami_bridge.simulator.behaviour import VolunteerOutcome
from ami_bridge.simulator.dialing import ContactDialing
from ami_bridge.simulator.dialplan import format_seconds, shipped_refusal


class Call(ContactDialing):
    """One Originate: the volunteer's leg, then the contact's leg(s)."""

    # -- the script ----------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            # Whoever cancelled (a Hangup action, a restart) tells the story.
            return

    async def _run(self) -> None:
        sim, v = self.sim, self.v
        volunteer = self.volunteer
        if volunteer.outcome is VolunteerOutcome.UNREACHABLE:
            # Refused before a channel exists (recorded:
            # shipped_volunteer_unplugged): nothing but the OriginateResponse,
            # which still names the ChannelId and the Originate's CallerID.
            cid_num, cid_name = self.cid
            v.cid_num, v.cid_name = cid_num or "<unknown>", cid_name or "<unknown>"
            self._originate_failed(0)
            self._end()
            return
        v.created = time.monotonic()
        sim._register(v)
        sim._newexten(v, "AppDial2", "(Outgoing Line)")
        for name, value in reversed(self.variables):
            sim._varset(v, name, value)
        cid_num, cid_name = self.cid
        if cid_num is not None:
            v.cid_num, v.cid_name = cid_num, cid_name or ""
            sim._newcallerid(v)
            v.conn_num, v.conn_name = v.cid_num, v.cid_name
            sim._newconnectedline(v)
        sim._dial_begin(None, v, self.resource)
        if volunteer.outcome is VolunteerOutcome.NO_RESPONSE:
            await sim._sleep(self.timeout)
            self._originate_failed(3)
            sim._hangup_event(v, 19, 480)
            self._end()
            return
        if volunteer.outcome in (VolunteerOutcome.BUSY, VolunteerOutcome.DECLINED):
            # The phone's final answer (recorded: shipped_volunteer_busy and
            # _declines): the Originate says Reason 0, not 5; the cause tells.
            cause, tech_cause, status = (
                (17, 486, "BUSY") if volunteer.outcome is VolunteerOutcome.BUSY
                else (21, 603, "NOANSWER")
            )  # fmt: skip
            sim._hangup_request(v, cause, tech_cause)
            sim._dial_end(None, v, status)
            self._originate_failed(0)
            sim._hangup_event(v, cause, tech_cause)
            self._end()
            return
        sim._newstate(v, 5)
        self._volunteer_device("RINGING")
        sim._dial_state(None, v, "RINGING")
        self.v_ringing = True
        if (
            volunteer.outcome is VolunteerOutcome.NO_ANSWER
            or volunteer.answer_after >= self.timeout
        ):
            # The Originate gives up (recorded: shipped_volunteer_no_answer):
            # no DialEnd, the phone gets CANCEL.
            await sim._sleep(self.timeout)
            self._originate_failed(3)
            sim._hangup_event(v, 19, 480)
            sim._device_state(v.device, "NOT_INUSE")
            self._end()
            return
        if volunteer.answer_after > 0:
            await sim._sleep(volunteer.answer_after)
        self._originate_succeeded()
        sim._newstate(v, 6)
        sim._dial_end(None, v, "ANSWER")
        self._volunteer_device("INUSE")
        self.v_ringing = False
        await self._answered()

    async def _answered(self) -> None:
        """What the answered leg runs: the contact's dialplan, here."""
        if self.shipped:
            if self._run_shipped_dialplan():
                await self._dial_pjsip()
        elif self.trunk == "pjsip":
            self._run_dialplan()
            await self._dial_pjsip()
        else:
            self._run_dialplan()
            await self._dial_local()

    def _volunteer_device(self, state: str) -> None:
        """The volunteer's device state as the phone's endpoint reports it."""
        if self.shipped:
            # device_state_busy_at = 1: one call of any kind makes the
            # device BUSY, from the first ring to the hangup.
            if state == "INUSE":
                return
            state = "BUSY"
        self.sim._device_state(self.v.device, state)

    # -- the dialplan, up to the Dial() of the contact ---------------------------------

    def _run_shipped_dialplan(self) -> bool:
        """[dialer-outbound] then [dialer-place-call] up to its Dial(), or
        [dialer-refuse]: whether the contact is to be dialed."""
        sim, v, number = self.sim, self.v, self.number
        v.context, v.exten = self.context, number
        # FILTER(-A-Za-z0-9_,${DIALER_CALL_ID}), as the dialplan logs it.
        call_id = "".join(
            c
            for c in self.vars.get("DIALER_CALL_ID", "")
            if c.isascii() and (c.isalnum() or c in "-_")
        )
        refusal = shipped_refusal(number)
        if refusal is not None:
            sim._newexten(
                v, "Gosub", f"dialer-refuse,s,1({refusal},{number})", priority=self.priority
            )
            self._refuse(call_id, refusal, number)
            return False
        sim._newexten(v, "Gosub", f"dialer-place-call,s,1({number})", priority=self.priority)
        sim._varset(v, "LOCAL(ARG1)", number)
        sim._varset(v, "LOCAL(ARGC)", "1")
        v.context, v.exten = "dialer-place-call", "s"
        sim._newexten(v, "NoOp", f"dialer call {call_id} to {number}", priority=1)
        given = self.vars.get("DIALER_CALLERID")
        # Not the dialer's Originate (a hand-written one in a test): dialed
        # with its own CallerID rather than refused.
        presented = given if given is not None else self.cid[0] or ""
        digits = "".join(c for c in presented if c.isdigit())
        sim._newexten(v, "Set", f"CALLERID_DIGITS={digits}", priority=2)
        sim._varset(v, "CALLERID_DIGITS", digits)
        unusable = given is not None and not 8 <= len(digits) <= 15
        sim._newexten(v, "GotoIf", f"{int(unusable)}?nocallerid", priority=3)
        if unusable:
            sim._newexten(v, "Gosub", f"dialer-refuse,s,1(no-caller-id,{number})", priority=8)
            self._refuse(call_id, "no-caller-id", number)
            return False
        sim._newexten(v, "Set", f"CALLERID(num)={digits}", priority=4)
        v.cid_num = digits
        sim._newcallerid(v)
        # The Originate's caller name is the contact's own: not for the contact.
        sim._newexten(v, "Set", "CALLERID(name)=", priority=5)
        v.cid_name = ""
        sim._newcallerid(v)
        timeout = format_seconds(self.ring_timeout)
        sim._newexten(v, "Dial", f"PJSIP/{number}@{self.endpoint},{timeout}", priority=6)
        self.failed_priority = 7
        return True

    def _refuse(self, call_id: str, reason: str, number: str) -> None:
        """[dialer-refuse]: Log, then Hangup(34) (recorded: shipped_refused_by_dialplan)."""
        sim, v = self.sim, self.v
        sim._varset(v, "LOCAL(ARG1)", reason)
        sim._varset(v, "LOCAL(ARG2)", number)
        sim._varset(v, "LOCAL(ARGC)", "2")
        v.context, v.exten = "dialer-refuse", "s"
        sim._newexten(
            v, "Log", f"WARNING,dialer call {call_id} to {number} refused: {reason}", priority=1
        )
        sim._newexten(v, "Hangup", "34", priority=2)
        sim._soft_hangup_request(v, 16)
        sim._qos(v)
        sim._hangup_event(v, 34, 503)
        sim._device_state(v.device, "NOT_INUSE")
        self._end()

    def _run_dialplan(self) -> None:
        sim, v = self.sim, self.v
        v.context, v.exten = self.context, self.number
        caller_id = self.vars.get("DIALER_CALLERID", self.cid[0] or "")
        sim._newexten(v, "NoOp", f"dial contact {self.number}", priority=self.priority)
        sim._newexten(v, "Set", f"CALLERID(num)={caller_id}", priority=self.priority + 1)
        sim._newexten(v, "Set", f"TRUNK={self.trunk}", priority=self.priority + 2)
        sim._varset(v, "TRUNK", self.trunk)
        sip = 1 if self.trunk == "pjsip" else 0
        sim._newexten(v, "GotoIf", f"{sip}?sip", priority=self.priority + 3)
