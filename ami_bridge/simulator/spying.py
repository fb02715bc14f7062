"""An organizer's phone rung into a live call: the shipped
``[dialer-supervise]`` and ``[dialer-spy]`` contexts, as the real Asterisk
plays them (tests/pbx/test_supervision.py checks the real one).

The organizer's leg rings and answers like a volunteer's; then ChanSpy()
attaches to the channel named by ``DIALER_SPY_CHANNEL``: ``ChanSpyStart``,
and, once that channel hangs up (option ``E``), ``ChanSpyStop`` and the
organizer's leg hung up with cause 16; with ``DIALER_SPY_NOTICE=yes`` the
dialplan's Originate of the tones for the volunteer shows, but not the Local
channel it makes.  A channel that is not there (the
call ended meanwhile) ends ChanSpy at once (option ``S``): no
``ChanSpyStart``, the organizer's leg hung up.  An empty target is refused
by the dialplan with cause 34 before ChanSpy runs.  No audio is simulated.
"""

from __future__ import annotations

from ami_bridge.simulator.calls import Call
from ami_bridge.simulator.channels import Channel

SUPERVISION_CONTEXT = "dialer-supervise"
# The extension the Originate names -> the options [dialer-supervise] passes.
SPY_OPTIONS = {"listen": "ES", "whisper": "wES", "barge": "BES"}
# FILTER(-A-Za-z0-9_/@.;,...) in [dialer-spy]: a channel name's characters.
_NAME_CHARACTERS = frozenset("-_/@.;abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


class SpyCall(Call):
    """One Originate into ``[dialer-supervise]``: the organizer's leg and its ChanSpy."""

    spied: Channel | None = None

    async def _answered(self) -> None:
        sim, v = self.sim, self.v
        mode = self.number
        options = SPY_OPTIONS[mode]
        v.context, v.exten = SUPERVISION_CONTEXT, mode
        sim._newexten(v, "Gosub", f"dialer-spy,s,1({options})", priority=1)
        sim._varset(v, "LOCAL(ARG1)", options)
        sim._varset(v, "LOCAL(ARGC)", "1")
        v.context, v.exten = "dialer-spy", "s"
        target = "".join(
            c for c in self.vars.get("DIALER_SPY_CHANNEL", "") if c in _NAME_CHARACTERS
        )
        sim._newexten(v, "Set", f"SPY_TARGET={target}", priority=1)
        sim._varset(v, "SPY_TARGET", target)
        sim._newexten(v, "GotoIf", f"{int(not target)}?notarget", priority=2)
        if not target:
            sim._newexten(
                v, "Log", "WARNING,dialer supervision without a channel to spy on", priority=9
            )
            sim._newexten(v, "Hangup", "34", priority=10)
            self._organizer_leaves(34)
            return
        quiet = "" if self.vars.get("DIALER_SPY_BEEP", "").lower() == "yes" else "q"
        sim._newexten(v, "Set", "SPY_QUIET=q", priority=3)
        sim._varset(v, "SPY_QUIET", "q")
        sim._newexten(v, "ExecIf", f"{int(not quiet)}?Set(SPY_QUIET=)", priority=4)
        if not quiet:
            sim._varset(v, "SPY_QUIET", "")
        notice = self.vars.get("DIALER_SPY_NOTICE", "").lower() == "yes"
        sim._newexten(v, "GotoIf", f"{int(not notice)}?spy", priority=5)
        if notice:
            # The tones whispered to the volunteer ([dialer-spy-notice]) go
            # through a Local channel of their own, which is not simulated.
            sim._newexten(
                v,
                "Originate",
                f"Local/tone@dialer-spy-notice/n,app,ChanSpy,{target}\\,qwES,,5",
                priority=6,
            )
        sim._newexten(v, "ChanSpy", f"{target},{options}{quiet}", priority=7)
        if not quiet:
            # The real ChanSpy plays `beep` to the organizer first; the
            # shipped PBX has no sound files, and the failed playback ends
            # ChanSpy before it spies: the leg hangs up with cause 0.
            self._organizer_leaves(0)
            return
        # ChanSpy's first argument is a name prefix; Asterisk's channel
        # names have a fixed-width sequence, so a full name is one channel.
        spied = next((c for n, c in sim._channels.items() if n.startswith(target)), None)
        if spied is not None and spied is not v:
            self.spied = spied
            sim._emit("call", "ChanSpyStart", v.block("Spyer") + spied.block("Spyee"))
            await sim._watch_hangup(spied).wait()
            self._stop_spying()
        sim._newexten(v, "Return", "", priority=8)
        # Return() drops the subroutine's arguments and sets its return value.
        for variable in ("ARGC", "ARG1", "GOSUB_RETVAL"):
            sim._varset(v, variable, "")
        v.context, v.exten = SUPERVISION_CONTEXT, mode
        sim._newexten(v, "Hangup", "", priority=2)
        self._organizer_leaves(16)

    def _stop_spying(self) -> None:
        spied, self.spied = self.spied, None
        if spied is not None:
            self.sim._emit("call", "ChanSpyStop", self.v.block("Spyer") + spied.block("Spyee"))

    def _organizer_leaves(self, cause: int) -> None:
        sim, v = self.sim, self.v
        sim._soft_hangup_request(v, 16)
        sim._qos(v)
        sim._hangup_event(v, cause)
        sim._device_state(v.device, "NOT_INUSE")
        self._end()

    def hangup_by_action(self, channel: Channel, cause: int) -> None:
        if not self.answered_organizer:
            super().hangup_by_action(channel, cause)
            return
        # The organizer's leg hung up from outside while it spied.
        self.cancel_task()
        self._stop_spying()
        self.sim._hangup_event(self.v, cause)
        self.sim._device_state(self.v.device, "NOT_INUSE")
        self._end()

    def teardown_for_restart(self) -> None:
        if not self.answered_organizer:
            super().teardown_for_restart()
            return
        self._stop_spying()
        self.sim._hangup_event(self.v, 16)
        self._end()

    @property
    def answered_organizer(self) -> bool:
        return self.v.state == 6 and self.v.name in self.sim._channels
