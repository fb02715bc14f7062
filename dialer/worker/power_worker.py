"""The worker side of power mode: call volunteers in, dial for them, let them go.

One pass, on a wake-up (a session started, paused, asked to end; a call of
a session changed; an outcome saved) or every ``poll_interval`` otherwise:

1. call in the volunteers of new sessions ([dialer-power]);
2. hang up the legs of sessions that asked to end (left, last call done,
   list done);
3. end sessions whose volunteer's phone never answered;
4. bring back to "waiting" the sessions whose outcome was saved elsewhere;
5. dial the next contact of every session waiting for one.

The volunteer's leg coming up or going arrives on its own stream from the
PBX (:meth:`dialer.domain.ports.CallPbx.leg_updates`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta

from dialer.domain import power
from dialer.domain.ports import (
    CallPbx,
    OriginateOutcomeUnknown,
    OriginateRejected,
    PbxUnavailable,
    SessionLegRequest,
)
from dialer.domain.vocabulary import PowerSessionState
from dialer.services.power import PowerService
from dialer.store.models import CallAttempt, PowerSession

log = logging.getLogger(__name__)

# What the volunteer's phone shows when it rings for their session.
SESSION_CALLER_NAME = "Phone bank"

# Hangs a call up as an operator would (the call worker's own path).
Hangup = Callable[[str], Awaitable[None]]


class PowerWorker:
    def __init__(
        self,
        service: PowerService,
        pbx: CallPbx,
        *,
        pbx_name: str,
        context: str,
        originate_timeout_ms: int,
        hang_up_call: Hangup,
        request_expiry: timedelta = timedelta(seconds=60),
        poll_interval: float = 1.0,
        wrap_up_poll_interval: float = 2.0,
        max_dialing: int = 8,
    ) -> None:
        self.service = service
        self.pbx = pbx
        self.pbx_name = pbx_name
        self.context = context
        self.originate_timeout_ms = originate_timeout_ms
        self.hang_up_call = hang_up_call
        self.request_expiry = request_expiry
        self.poll_interval = poll_interval
        self._wakeup = asyncio.Event()
        self._due: set[int] = set()
        # Sessions in wrap-up are looked at again when an outcome is saved
        # (OUTCOMES_SETTLED), or every wrap_up_poll_interval when that news
        # is lost (SQLite has no NOTIFY): not every pass.
        self.wrap_up_poll_interval = wrap_up_poll_interval
        self._wrap_ups_due = True
        self._wrap_ups_checked = 0.0
        # Each waiting session is dialed by a task of its own, so a slow list
        # never holds up the pass or another volunteer; a bound keeps them
        # below the database pool.
        self._dialing: dict[int, asyncio.Task[None]] = {}
        self._dial_slots = asyncio.Semaphore(max_dialing)
        # The longest a leg may go unheard of after its Originate: the phone
        # rings for the Originate's timeout; the rest is the PBX's slack.
        self.answer_deadline = timedelta(milliseconds=originate_timeout_ms) + timedelta(seconds=30)

    def wake(self, _pbx: str | None = None) -> None:
        self._wakeup.set()

    def outcomes_settled(self) -> None:
        """An outcome was saved somewhere: a session in wrap-up may go on."""
        self._wrap_ups_due = True
        self._wakeup.set()

    def calls_stored(self, calls: Iterable[CallAttempt]) -> None:
        """Calls of sessions changed: their sessions' states follow at the next pass."""
        due = {call.power_session_id for call in calls if call.power_session_id is not None}
        if due:
            self._due.update(due)
            self._wakeup.set()

    async def adopt_live_sessions(self) -> None:
        """Legs placed before a restart: followed, so the resync settles them."""
        for row in await self.service.live(self.pbx_name):
            if row.leg_sent_at is not None:
                self.pbx.track_session(row.id, up=row.leg_answered_at is not None)

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._legs_loop(), name="power-legs")
                group.create_task(self._pass_loop(), name="power-sessions")
        finally:
            for task in self._dialing.values():
                task.cancel()
            await asyncio.gather(*self._dialing.values(), return_exceptions=True)

    async def _legs_loop(self) -> None:
        async for update in self.pbx.leg_updates():
            while True:
                try:
                    calls = await self.service.leg_changed(update)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # A database blip must not lose a leg's end: retry it.
                    log.exception("power session %s: could not store its leg", update.session_id)
                    await asyncio.sleep(1.0)
            for call_id in calls:
                await self.hang_up_call(call_id)
            self._wakeup.set()

    async def _pass_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self.run_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("power sessions pass failed; retrying at the next one")

    async def run_pass(self) -> None:
        if not self.pbx.connected:
            return
        for row in await self.service.claim_new(self.pbx_name, expiry=self.request_expiry):
            await self._call_in(row)
        for session_id in await self.service.to_hang_up(self.pbx_name):
            if not await self.pbx.hangup_session(session_id):
                # No leg to hang up (never answered, or gone unseen): over.
                await self.service.end(session_id, power.END_LEFT)
        for session_id in await self.service.never_answered(self.pbx_name, self.answer_deadline):
            await self.service.end(session_id, power.END_NOT_ANSWERED)
        due, self._due = self._due, set()
        states = await self.service.live_states(self.pbx_name)
        now = asyncio.get_running_loop().time()
        if self._wrap_ups_due or now - self._wrap_ups_checked >= self.wrap_up_poll_interval:
            self._wrap_ups_due = False
            self._wrap_ups_checked = now
            due |= {s.session_id for s in states if s.state is PowerSessionState.WRAP_UP}
        if due:
            await self.service.refresh(due)
            states = await self.service.live_states(self.pbx_name)
        for state in states:
            if (
                state.state is PowerSessionState.WAITING
                and not state.leaving
                and state.session_id not in self._dialing
            ):
                self._dialing[state.session_id] = asyncio.create_task(
                    self._dial(state.session_id), name=f"power-dial-{state.session_id}"
                )

    async def _dial(self, session_id: int) -> None:
        try:
            async with self._dial_slots:
                await self.service.dial_next(session_id)
        except Exception:
            log.exception("power session %s: could not dial its next contact", session_id)
        finally:
            del self._dialing[session_id]

    async def _call_in(self, row: PowerSession) -> None:
        request = SessionLegRequest(
            session_id=row.id,
            channel=self.service.calls.volunteer_channel_for(row.volunteer, row.phone),
            context=self.context,
            caller_id_name=SESSION_CALLER_NAME,
            caller_id_number=(row.caller_id or "").lstrip("+"),
            timeout_ms=self.originate_timeout_ms,
        )
        try:
            await self.pbx.ring_session(request)
        except PbxUnavailable:
            await self.service.end(row.id, power.END_PBX)
        except OriginateRejected as error:
            log.warning("power session %s: the PBX refused its leg: %s", row.id, error)
            await self.service.end(row.id, f"{power.END_PBX}: {error}")
        except OriginateOutcomeUnknown:
            log.warning("power session %s: link lost while calling the volunteer", row.id)
