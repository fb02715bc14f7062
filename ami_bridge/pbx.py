"""The dialer's PBX port, implemented over AMI: client + call tracker.

This is the adapter ``dialer`` sees (``dialer.domain.ports.CallPbx``): it turns an
``OriginateRequest`` into one Originate, hangs calls up on the right leg,
and turns the ordered AMI stream into call updates through the tracker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from ami_bridge.client import (
    AmiActionError,
    AmiActionTimeout,
    AmiClient,
    AmiError,
    AmiNotConnected,
)
from ami_bridge.client import OriginateOutcomeUnknown as AmiOriginateUnknown
from ami_bridge.codec import AmiEncodingError
from ami_bridge.power_legs import SessionLegs, leg_action_id, leg_channel_id
from ami_bridge.spy_legs import SpyLegs, spy_action_id, spy_channel_id
from ami_bridge.tracker import CallTracker, CallUpdate
from dialer.domain.ports import (
    AnsweredTimes,
    HangupBy,
    OriginateOutcomeUnknown,
    OriginateRejected,
    OriginateRequest,
    PbxUnavailable,
    SessionLegRequest,
    SessionLegUpdate,
    SpyRequest,
    SpyStart,
)

log = logging.getLogger(__name__)

# The Originate variable naming the channel an organizer's phone spies on
# ([dialer-supervise]); an Originate carrying it is not a call of its own.
SPY_CHANNEL_VARIABLE = "DIALER_SPY_CHANNEL"
# How long an organizer's leg may take to go, hung up for another mode,
# before their phone is rung again anyway (seconds).
SPY_LEG_HANGUP_WAIT = 5.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AmiPbx:
    def __init__(
        self,
        client: AmiClient,
        tracker: CallTracker | None = None,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.client = client
        self.tracker = tracker or CallTracker()
        self.clock = clock
        self._updates: asyncio.Queue[CallUpdate | None] = asyncio.Queue()
        self.legs = SessionLegs()
        self.spies = SpyLegs()
        # Organizer legs being hung up before their phone is rung in another mode.
        self._spy_legs_gone: dict[int, asyncio.Event] = {}
        self._leg_updates: asyncio.Queue[SessionLegUpdate | None] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self.client.connected

    async def start(self, *, wait: bool = False) -> None:
        self._pump = asyncio.create_task(self._pump_stream(), name="ami-tracker")
        await self.client.start(wait=wait)

    async def close(self) -> None:
        # Log off without touching calls: they go on in Asterisk and the next
        # start re-attaches them through the resync.
        await self.client.close()
        if self._pump is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        self._updates.put_nowait(None)
        self._leg_updates.put_nowait(None)

    # -- the port ---------------------------------------------------------------

    def track(
        self,
        call_id: str,
        *,
        volunteer_channel: str,
        contact_number: str,
        at: datetime,
        known: AnsweredTimes | None = None,
    ) -> None:
        # resumed: if this connection already resynced without this call,
        # it ended while nobody watched, and is settled as lost at once.
        self._emit(
            self.tracker.register(
                call_id,
                volunteer_channel=volunteer_channel,
                contact_number=contact_number,
                at=at,
                resumed=True,
                volunteer_answered_at=known.volunteer_answered_at if known else None,
                contact_answered_at=known.contact_answered_at if known else None,
            )
        )

    async def originate(self, request: OriginateRequest) -> None:
        self._emit(
            self.tracker.register(
                request.call_id,
                volunteer_channel=request.channel,
                contact_number=request.exten,
                at=self.clock(),
            )
        )
        try:
            await self.client.originate(
                request.channel,
                context=request.context,
                exten=request.exten,
                caller_id_name=request.caller_id_name,
                caller_id_num=request.caller_id_number,
                timeout_ms=request.timeout_ms,
                channel_id=f"{request.call_id}-v",
                other_channel_id=f"{request.call_id}-o",
                variables=request.variables,
                action_id=request.call_id,
            )
        except AmiOriginateUnknown as error:
            raise OriginateOutcomeUnknown(str(error)) from error
        except (AmiNotConnected, AmiActionTimeout) as error:
            # AmiActionTimeout reaching here was never sent (no free slot).
            self._refused(request.call_id, "the PBX is not connected")
            raise PbxUnavailable(str(error)) from error
        except AmiActionError as error:
            self._refused(request.call_id, error.message or "refused")
            raise OriginateRejected(error.message) from error
        except AmiEncodingError as error:
            self._refused(request.call_id, f"unsafe value in {error.field}")
            raise OriginateRejected(str(error)) from error

    def _refused(self, call_id: str, message: str) -> None:
        self._emit(self.tracker.note_originate_error(call_id, message=message, at=self.clock()))

    async def hangup_call(self, call_id: str, by: HangupBy) -> bool:
        snapshot = self.tracker.get(call_id)
        if snapshot is None or snapshot.ended:
            return False
        # Hanging up the contact's leg ends the bridge and keeps the outcome
        # about the contact; before the contact is dialed, end the volunteer's.
        channel = snapshot.contact_channel or snapshot.volunteer_channel
        if channel is None:
            return False
        self._emit(self.tracker.note_hangup_requested(call_id, by=by, at=self.clock()))
        try:
            await self.client.hangup(channel)
        except AmiActionError as error:
            # "No such channel": it ended on its own meanwhile; events tell.
            log.info(
                "call %s: hangup of %s: %s",
                call_id,
                channel,
                error.message,
                extra={"call_id": call_id},
            )
        except AmiError as error:
            log.warning(
                "call %s: hangup of %s failed: %s",
                call_id,
                channel,
                error,
                extra={"call_id": call_id},
            )
            return False
        return True

    def _spied_on(self, call_id: str) -> bool:
        snapshot = self.tracker.get(call_id)
        return snapshot is not None and not snapshot.ended

    async def spy_on_call(self, request: SpyRequest) -> SpyStart:
        self.spies.keep_calls(self._spied_on)
        snapshot = self.tracker.get(request.call_id)
        if snapshot is None or snapshot.ended or snapshot.volunteer_channel is None:
            return "no_live_leg"
        # The volunteer's leg as Asterisk named it in the events this
        # tracker read: whispering to it is heard by the volunteer alone.
        target = snapshot.volunteer_channel
        on_it = self.spies.on_call(request.call_id, request.channel)
        if on_it is not None:
            if on_it.mode == request.mode:
                return "already_on"
            # Another mode: the organizer's phone leaves the call and is
            # rung back into it in that mode (ChanSpy's mode is set when it
            # starts).  Never two legs on one phone: a desk phone with one
            # line would refuse the new one as busy.
            await self._end_spy_leg(request.call_id, on_it.request_id, on_it.channel)
        self.spies.expect(request)
        try:
            await self.client.originate(
                request.channel,
                context=request.context,
                exten=request.mode,
                caller_id_name=request.caller_id_name,
                caller_id_num=request.caller_id_number,
                timeout_ms=request.timeout_ms,
                channel_id=spy_channel_id(request),
                variables={
                    SPY_CHANNEL_VARIABLE: target,
                    "DIALER_SPY_BEEP": "yes" if request.beep else "no",
                    "DIALER_SPY_NOTICE": "yes" if request.notice else "no",
                    # An organizer whose phone is their own number is dialed
                    # through the outbound context, which wants a caller ID.
                    "DIALER_CALLERID": request.caller_id_number,
                },
                action_id=spy_action_id(request),
            )
        except AmiOriginateUnknown:
            # Sent: it may be ringing.  Never sent twice.
            log.warning(
                "call %s: connection lost while ringing the organizer in",
                request.call_id,
                extra={"call_id": request.call_id},
            )
        except (AmiNotConnected, AmiActionTimeout) as error:
            # AmiActionTimeout reaching here was never sent (no free slot).
            self.spies.forget(request.request_id)
            raise PbxUnavailable(str(error)) from error
        except AmiActionError as error:
            # No [dialer-supervise] on this PBX, or the phone's endpoint is missing.
            self.spies.forget(request.request_id)
            raise OriginateRejected(error.message) from error
        except AmiEncodingError as error:
            self.spies.forget(request.request_id)
            raise OriginateRejected(str(error)) from error
        return "rung"

    async def _end_spy_leg(self, call_id: str, request_id: int, channel: str | None) -> None:
        """Hang an organizer's leg up and wait (a few seconds at most) for
        Asterisk to report it gone: its ``Hangup`` event comes once the
        phone has been sent its BYE, which may be after the action's reply."""
        self.spies.forget(request_id)
        if channel is None:
            # Not made yet: nothing to hang up (its phone was never rung).
            return
        gone = self._spy_legs_gone.setdefault(request_id, asyncio.Event())
        try:
            await self.client.hangup(channel)
            async with asyncio.timeout(SPY_LEG_HANGUP_WAIT):
                await gone.wait()
        except AmiActionError as error:
            # "No such channel": the organizer hung up meanwhile.
            log.info(
                "call %s: hangup of the organizer's %s: %s",
                call_id,
                channel,
                error.message,
                extra={"call_id": call_id},
            )
        except (AmiError, TimeoutError) as error:
            log.warning(
                "call %s: hangup of the organizer's %s not confirmed: %s",
                call_id,
                channel,
                str(error) or "no Hangup event",
                extra={"call_id": call_id},
            )
        finally:
            self._spy_legs_gone.pop(request_id, None)

    async def ring_session(self, request: SessionLegRequest) -> None:
        self.legs.expect(request.session_id)
        try:
            await self.client.originate(
                request.channel,
                context=request.context,
                exten=str(request.session_id),
                caller_id_name=request.caller_id_name,
                caller_id_num=request.caller_id_number,
                timeout_ms=request.timeout_ms,
                # Ends in neither -v nor -o: not a call of the tracker's.
                channel_id=leg_channel_id(request.session_id),
                # An own-number volunteer is dialed through the outbound
                # context, which wants the campaign's caller ID.
                variables={"DIALER_CALLERID": request.caller_id_number},
                action_id=leg_action_id(request.session_id),
            )
        except AmiOriginateUnknown as error:
            raise OriginateOutcomeUnknown(str(error)) from error
        except (AmiNotConnected, AmiActionTimeout) as error:
            self.legs.forget(request.session_id)
            raise PbxUnavailable(str(error)) from error
        except AmiActionError as error:
            self.legs.forget(request.session_id)
            raise OriginateRejected(error.message) from error
        except AmiEncodingError as error:
            self.legs.forget(request.session_id)
            raise OriginateRejected(str(error)) from error

    def track_session(self, session_id: int, *, up: bool) -> None:
        self.legs.adopt(session_id, up=up, at=self.clock())

    async def hangup_session(self, session_id: int) -> bool:
        channel = self.legs.channel(session_id)
        if channel is None:
            return False
        try:
            await self.client.hangup(channel)
        except AmiActionError as error:
            # "No such channel": gone meanwhile; its Hangup event tells.
            log.info("power session %s: hangup of %s: %s", session_id, channel, error.message)
        except AmiError as error:
            log.warning("power session %s: hangup of %s failed: %s", session_id, channel, error)
            return False
        return True

    async def leg_updates(self) -> AsyncIterator[SessionLegUpdate]:
        while True:
            update = await self._leg_updates.get()
            if update is None:
                return
            yield update

    async def updates(self) -> AsyncIterator[CallUpdate]:
        while True:
            update = await self._updates.get()
            if update is None:
                return
            yield update

    # -- the stream ---------------------------------------------------------------

    def _emit(self, updates: list[CallUpdate]) -> None:
        for update in updates:
            self._updates.put_nowait(update)

    async def _pump_stream(self) -> None:
        async for item in self.client.stream():
            try:
                for leg in self.legs.feed(item):
                    self._leg_updates.put_nowait(leg)
            except Exception:
                log.exception("session legs failed on a stream item; ignored")
            try:
                for request_id in self.spies.feed(item):
                    if (gone := self._spy_legs_gone.get(request_id)) is not None:
                        gone.set()
            except Exception:
                log.exception("supervision legs failed on a stream item; ignored")
            try:
                updates = self.tracker.feed(item)
            except Exception:
                # The tracker already guards its handlers; this is the last line.
                log.exception("tracker failed on a stream item; ignored")
                continue
            self._emit(updates)
