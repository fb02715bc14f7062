"""The worker: turns committed call requests into Originates and PBX news into rows.

A click inserts a call request (``dialer.services.calling``); from then on
only this worker changes the call's row, through ``dialer.store.calls``, the
one module that writes call rows.  The one exception cannot race it: a
request no worker has claimed yet may be cancelled by the service.

One worker per PBX.  It owns three things:

* the outbox: ``requested`` rows of its PBX not yet sent are claimed with a
  conditional UPDATE (so two workers never both send one) and sent once;
* the persistence of every call change the PBX link reports, written
  before it is published, so a screen never shows a state the database
  does not have;
* the reconciliation at start-up: rows left in flight by a previous run are
  followed again and settled by the PBX link's resync (re-attached when
  the PBX still has them, ended as ``lost`` and flagged for review when not).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from dialer.domain.ports import (
    AnsweredTimes,
    CallPbx,
    CallSnapshot,
    HangupBy,
    OriginateOutcomeUnknown,
    OriginateRejected,
    OriginateRequest,
    PbxError,
    PbxUnavailable,
    SpyMode,
    SpyRequest,
    power_join_channel,
    spy_mode,
)
from dialer.domain.vocabulary import LIVE_CALL_STATES, CallOutcome, CallState, is_behind
from dialer.services.call_endings import record_call_endings
from dialer.services.calling import CallService, caller_id_name
from dialer.services.live_calls import call_names
from dialer.store import calls as call_rows
from dialer.store import heartbeats
from dialer.store.engine import causes, is_schema_missing, is_unavailable
from dialer.store.models import CallAttempt, Contact, HangupRequest, User
from dialer.worker.power_worker import PowerWorker

log = logging.getLogger(__name__)

# What the organizer's phone shows when it rings for a supervision: they
# clicked a moment ago, and this says which call it is for.
SPY_CALLER_NAMES: dict[SpyMode, str] = {
    "listen": "Listen",
    "whisper": "Whisper",
    "barge": "Barge",
}


class CallWorker:
    def __init__(
        self,
        service: CallService,
        pbx: CallPbx,
        *,
        originate_timeout_ms: int,
        request_expiry: timedelta = timedelta(seconds=60),
        poll_interval: float = 1.0,
        max_batch: int = 500,
        writers: int = 2,
        on_persisted: Callable[[CallSnapshot, float], None] | None = None,
        heartbeat_interval: float = heartbeats.BEAT_SECONDS,
        start_retry_max_delay: float = 5.0,
        supervision_context: str = "dialer-supervise",
        supervision_beep: bool = False,
        supervision_notice: bool = False,
    ) -> None:
        self.service = service
        self.pbx = pbx
        self.originate_timeout_ms = originate_timeout_ms
        self.supervision_context = supervision_context
        self.supervision_beep = supervision_beep
        self.supervision_notice = supervision_notice
        self.request_expiry = request_expiry
        self.poll_interval = poll_interval
        self.max_batch = max_batch
        self.writers = writers
        # Told, for each stored update, how long after its AMI event it was
        # committed (metrics, benchmarks).
        self.on_persisted = on_persisted
        self._wakeup = asyncio.Event()
        self._hangup_wakeup = asyncio.Event()
        self._supervision_wakeup = asyncio.Event()
        self._pending_hangups: dict[str, HangupBy] = {}
        self._last_expiry_sweep: datetime | None = None
        self._counters_due: set[int] = set()
        self._counters_wakeup = asyncio.Event()
        self._wrap_up_wakeup = asyncio.Event()
        # How often volunteers shown wrapping up are checked against the
        # database when no NOTIFY says an outcome was saved (a lost one, SQLite).
        self.wrap_up_poll_interval = max(poll_interval, 2.0)
        self.originates_sent = 0
        self._store_connections = _StoreConnections()
        # Display names of the calls this worker dialed, until they end: every
        # state published carries them, so live panels need no look-up.
        # Calls re-attached after a restart go without (panels look them up).
        self._names: dict[str, dict[str, str]] = {}
        # Power sessions, when the runtime gives them (dialer.worker.power_worker).
        self.power: PowerWorker | None = None
        self.heartbeat_interval = heartbeat_interval
        # Set when the PBX link goes up or down: the heartbeat says so at once.
        self._link_changed = asyncio.Event()
        self.start_retry_max_delay = start_retry_max_delay
        # True while the start waits for the database (the health check says so).
        self.waiting_for_database = False
        self.host = socket.gethostname()
        self.pid = os.getpid()

    # -- composition hooks ---------------------------------------------------

    def wake(self, call_id: str | None = None) -> None:
        """A request was committed: look at the outbox now rather than at the next poll."""
        self._wakeup.set()

    def wake_hangups(self, pbx: str | None = None) -> None:
        """A hang-up was requested: look at the requests now rather than at the next poll."""
        self._hangup_wakeup.set()

    def wake_supervisions(self, pbx: str | None = None) -> None:
        """An organizer asked to listen, whisper or barge: ring them in now."""
        self._supervision_wakeup.set()

    async def hang_up_for_session(self, call_id: str) -> None:
        """A power session's volunteer left: their session's call goes with them."""
        await self.hangup(call_id, "volunteer")

    def wake_wrap_ups(self, pbx: str | None = None) -> None:
        """An outcome was recorded or skipped somewhere: its volunteer may be available."""
        self._wrap_up_wakeup.set()
        if self.power is not None:
            self.power.outcomes_settled()

    async def run(self) -> None:
        # Calls left in flight must be followed before the first resync
        # arrives, or the resync could not settle them: without the database
        # the worker waits rather than dial blind (or exit).
        await self._reconcile_once_the_database_answers()
        if self.power is not None:
            await self.power.adopt_live_sessions()
        await self.pbx.start()
        started_at = self.service.clock()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._heartbeat_loop(started_at), name="heartbeat")
            group.create_task(self._consume_updates(), name="call-updates")
            group.create_task(self._dispatch_loop(), name="outbox")
            group.create_task(self._hangup_loop(), name="hangup-requests")
            group.create_task(self._supervision_loop(), name="supervision-requests")
            group.create_task(self._counters_loop(), name="campaign-counters")
            group.create_task(self._wrap_up_loop(), name="wrap-ups")
            group.create_task(self._watch_link(), name="pbx-link")
            if self.power is not None:
                group.create_task(self.power.run(), name="power-sessions")

    async def _watch_link(self, interval: float = 0.25) -> None:
        """Tell every process whether this worker can reach its PBX (MQTT carries it),
        so web processes refuse calls at once while it cannot."""
        shown: bool | None = None
        while True:
            connected = self.pbx.connected
            if connected != shown:
                shown = connected
                self._link_changed.set()
                self.service.broadcaster.publish(
                    "health",
                    self.service.pbx_name,
                    {"status": "online", "ami": "connected" if connected else "disconnected"},
                )
            await asyncio.sleep(interval)

    # -- start-up ------------------------------------------------------------

    async def _reconcile_once_the_database_answers(self) -> None:
        """Reconcile, retrying while the database is unreachable or not migrated yet.

        A worker started with its database (Compose, a reboot) must not exit
        because PostgreSQL came up a few seconds later; the web processes
        wait the same way, answering 503 meanwhile, and so does /healthz here.
        Any other error (a bug, a wrong password) still stops the worker.
        """
        delay = 0.5
        waiting_since = time.monotonic()
        logged_at: float | None = None
        while True:
            try:
                await self.reconcile_at_startup()
                break
            except Exception as error:
                schema_missing = is_schema_missing(error)
                if not (schema_missing or _unreachable(error)):
                    raise
                self.waiting_for_database = True
                now = time.monotonic()
                if logged_at is None or now - logged_at >= 30:
                    logged_at = now
                    log.warning(
                        "worker for PBX %s cannot start: %s (%s); retrying every %.0fs at most, "
                        "nothing is dialed meanwhile",
                        self.service.pbx_name,
                        "the database schema is missing; run `dialer db upgrade`"
                        if schema_missing
                        else "the database is unreachable",
                        _reason(error),
                        self.start_retry_max_delay,
                    )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.start_retry_max_delay)
        if self.waiting_for_database:
            log.info(
                "database reachable after %.0fs; worker for PBX %s starting",
                time.monotonic() - waiting_since,
                self.service.pbx_name,
            )
        self.waiting_for_database = False

    async def _heartbeat_loop(self, started_at: datetime) -> None:
        """Tell web processes elsewhere this PBX has a worker (``worker_heartbeats``).

        A beat that fails (the database away) is simply late: the next one
        tries again, and a web process sees the silence for what it is.
        """
        pbx = self.service.pbx_name
        failing = False
        try:
            while True:
                try:
                    async with asyncio.timeout(max(self.heartbeat_interval, 1.0)):
                        async with self.service.sessions.begin() as session:
                            await heartbeats.beat(
                                session,
                                pbx=pbx,
                                host=self.host,
                                pid=self.pid,
                                started_at=started_at,
                                ami_connected=self.pbx.connected,
                            )
                    if failing:
                        log.info("worker heartbeat for PBX %s written again", pbx)
                    failing = False
                except Exception as error:
                    if not failing:
                        log.warning(
                            "cannot write the worker heartbeat for PBX %s (%s); web processes "
                            "will report this worker down until it is written",
                            pbx,
                            _reason(error),
                        )
                    failing = True
                await _woken(self._link_changed, self.heartbeat_interval)
                self._link_changed.clear()
        finally:
            # A clean stop: say so at once rather than by falling silent.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0), self.service.sessions.begin() as session:
                    await heartbeats.remove(session, pbx=pbx, host=self.host, pid=self.pid)

    async def reconcile_at_startup(self) -> None:
        now = self.service.clock()
        async with self.service.sessions.begin() as session:
            expired = await call_rows.end_expired_requests(
                session,
                pbx=self.service.pbx_name,
                requested_before=now - self.request_expiry,
                at=self.service.clock(),
            )
            rows = await session.scalars(
                select(CallAttempt)
                .options(selectinload(CallAttempt.volunteer))
                .where(
                    CallAttempt.pbx == self.service.pbx_name,
                    CallAttempt.state.in_([s.value for s in LIVE_CALL_STATES]),
                    CallAttempt.originate_sent_at.is_not(None),
                )
            )
            in_flight = list(rows)
            # A hang-up is marked handled when a worker takes it, before the
            # PBX has done it: one taken by a worker that then died is done
            # again (once the resync re-attaches the call; a second Hangup
            # of a channel already gone is harmless).
            taken = await session.execute(
                select(HangupRequest.call_id, HangupRequest.requested_by).where(
                    HangupRequest.call_id.in_([call.call_id for call in in_flight]),
                    HangupRequest.handled_at.is_not(None),
                )
            )
            for call_id, requested_by in taken:
                self._pending_hangups[call_id] = (
                    "operator" if requested_by == "operator" else "volunteer"
                )
        if expired:
            log.warning("ended %d call request(s) that expired while no worker ran", len(expired))
            self._publish_calls(expired)
        for call in in_flight:
            # The resync that follows the next login re-attaches these or
            # ends them as lost; either way nothing is dialed again.
            self.pbx.track(
                call.call_id,
                volunteer_channel=self._volunteer_channel(call),
                contact_number=call.number_e164,
                at=call.requested_at,
                known=AnsweredTimes(call.volunteer_answered_at, call.contact_answered_at),
            )
        if in_flight:
            log.info("following %d call(s) left in flight by the previous run", len(in_flight))

    def _publish_calls(self, calls: list[CallAttempt]) -> None:
        for call in calls:
            self.service.publisher.publish_call(call, names=self._names.get(call.call_id))

    def _volunteer_channel(self, call: CallAttempt) -> str:
        if call.power_session_id is not None:
            # The volunteer is on the line already, in their conference.
            return power_join_channel(call.power_session_id, self.service.power_join_context)
        return self.service.volunteer_channel_for(call.volunteer, call.volunteer_phone)

    # -- the outbox ----------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while True:
            await _woken(self._wakeup, self.poll_interval)
            self._wakeup.clear()
            try:
                await self.dispatch_pending()
            except Exception:
                log.exception("outbox pass failed; retrying at the next poll")

    async def dispatch_pending(self) -> int:
        if not self.pbx.connected:
            return 0
        requests = await self._claim_batch()
        if not requests:
            return 0
        # The AMI client bounds the actions in flight; sending concurrently
        # keeps one slow answer from delaying every other volunteer's call.
        sent = await asyncio.gather(*(self._send(request) for request in requests))
        return sum(sent)

    async def _claim_batch(self, limit: int = 200) -> list[OriginateRequest]:
        """Mark requests as sent before sending: a crash after this never re-sends.

        One conditional UPDATE claims them all; when two workers race, the
        database re-checks ``originate_sent_at IS NULL`` on each locked row,
        so every request goes to exactly one of them.
        """
        now = self.service.clock()
        expired: list[CallAttempt] = []
        claimed_calls: list[CallAttempt] = []
        async with self.service.sessions.begin() as session:
            if self._last_expiry_sweep is None or now - self._last_expiry_sweep >= timedelta(
                seconds=1
            ):
                self._last_expiry_sweep = now
                expired = await call_rows.end_expired_requests(
                    session,
                    pbx=self.service.pbx_name,
                    requested_before=now - self.request_expiry,
                    at=self.service.clock(),
                )
            claimed_calls = await call_rows.claim_requests(
                session, pbx=self.service.pbx_name, at=now, limit=limit
            )
        for call in claimed_calls:
            names = call_names(call)
            if names is not None:
                self._names[call.call_id] = names
        self._publish_calls(expired)
        # The web process that took the click may be elsewhere: say here, for
        # MQTT, that the request is on its way to the PBX.
        self._publish_calls(claimed_calls)
        return [
            self._originate_request(call, call.volunteer, call.contact) for call in claimed_calls
        ]

    def _originate_request(
        self, call: CallAttempt, volunteer: User, contact: Contact
    ) -> OriginateRequest:
        caller_id = call.caller_id or ""
        return OriginateRequest(
            call_id=call.call_id,
            channel=self._volunteer_channel(call),
            context=self.service.outbound_context,
            exten=call.number_e164.lstrip("+"),
            caller_id_name=caller_id_name(contact),
            caller_id_number=call.number_e164.lstrip("+"),
            timeout_ms=self.originate_timeout_ms,
            variables={"DIALER_CALL_ID": call.call_id, "DIALER_CALLERID": caller_id.lstrip("+")},
        )

    async def _send(self, request: OriginateRequest) -> bool:
        call_id = request.call_id
        try:
            await self.pbx.originate(request)
        except PbxUnavailable:
            # Nothing left this process; say so rather than ring much later.
            await self._end_without_pbx(call_id, CallOutcome.FAILED, "the PBX is not connected")
            return False
        except OriginateRejected as error:
            log.warning(
                "call %s: the PBX refused the Originate: %s",
                call_id,
                error,
                extra={"call_id": call_id},
            )
            await self._end_without_pbx(call_id, CallOutcome.FAILED, f"PBX refused: {error}")
            return False
        except OriginateOutcomeUnknown:
            log.warning(
                "call %s: connection lost while originating; the resync will tell",
                call_id,
                extra={"call_id": call_id},
            )
        self.originates_sent += 1
        return True

    async def _end_without_pbx(self, call_id: str, outcome: CallOutcome, reason: str) -> None:
        async with self.service.sessions.begin() as session:
            call = await session.scalar(select(CallAttempt).where(CallAttempt.call_id == call_id))
            if call is None or call.state is CallState.ENDED:
                return
            await call_rows.end_call(session, call, outcome, reason, self.service.clock())
            await record_call_endings(session, [call], self.service.clock())
        self.service.publisher.publish_call(call, names=self._names.pop(call_id, None))

    # -- hanging up ----------------------------------------------------------

    async def _hangup_loop(self) -> None:
        while True:
            await _woken(self._hangup_wakeup, self.poll_interval)
            self._hangup_wakeup.clear()
            try:
                await self.handle_hangup_requests()
            except Exception:
                log.exception("hang-up requests pass failed; retrying at the next poll")

    async def handle_hangup_requests(self) -> int:
        """Carry out the hang-ups asked for this PBX, each exactly once."""
        if not self.pbx.connected:
            # Left waiting: after the reconnection they are still wanted.
            return 0
        async with self.service.sessions.begin() as session:
            claimed = await call_rows.claim_hangup_requests(
                session, pbx=self.service.pbx_name, at=self.service.clock()
            )
        for call_id, requested_by in claimed:
            by: HangupBy = "operator" if requested_by == "operator" else "volunteer"
            await self.hangup(call_id, by)
        return len(claimed)

    async def hangup(self, call_id: str, by: HangupBy) -> None:
        """Hang up now, or as soon as the call has a channel to hang up."""
        async with self.service.sessions() as session:
            call = await session.scalar(select(CallAttempt).where(CallAttempt.call_id == call_id))
        if call is None or call.state is CallState.ENDED:
            return
        if call.state is CallState.REQUESTED and call.originate_sent_at is None:
            await self._end_without_pbx(
                call_id,
                CallOutcome.HUNG_UP_BY_OPERATOR
                if by == "operator"
                else CallOutcome.HUNG_UP_BY_VOLUNTEER,
                call_rows.CANCELLED_BEFORE_DIALING,
            )
            return
        if not await self.pbx.hangup_call(call_id, by):
            self._pending_hangups[call_id] = by

    # -- supervision ---------------------------------------------------------

    async def _supervision_loop(self) -> None:
        while True:
            await _woken(self._supervision_wakeup, self.poll_interval)
            self._supervision_wakeup.clear()
            try:
                await self.handle_supervision_requests()
            except Exception:
                log.exception("supervision requests pass failed; retrying at the next poll")

    async def handle_supervision_requests(self) -> int:
        """Ring each organizer who asked into the call they chose, once.

        Unlike a hang-up, a request the PBX cannot serve now is not kept for
        later, and one older than the request expiry (the worker or the PBX
        was down) is dropped: an organizer rung minutes after the click, into
        another part of the call, would be a surprise.  They click again.
        """
        if not self.pbx.connected:
            return 0
        now = self.service.clock()
        async with self.service.sessions.begin() as session:
            taken = await call_rows.claim_supervision_requests(
                session, pbx=self.service.pbx_name, at=now
            )
        if not taken:
            return 0
        claimed = []
        for request_id, call_id, mode, actor, requested_at in taken:
            if requested_at < now - self.request_expiry:
                log.info(
                    "call %s: %s by user %s dropped: asked %s ago",
                    call_id,
                    mode,
                    actor,
                    now - requested_at,
                    extra={"call_id": call_id},
                )
                continue
            claimed.append((request_id, call_id, mode, actor))
        # Claimed and committed first: a request that fails below is not
        # tried again at every poll.
        async with self.service.sessions() as session:
            actors = {actor for _request, _call, _mode, actor in claimed if actor is not None}
            organizers = {
                user.id: user
                for user in await session.scalars(select(User).where(User.id.in_(actors)))
            }
            wanted = {call_id for _request, call_id, _mode, _actor in claimed}
            rows = await session.execute(
                select(CallAttempt.call_id, CallAttempt.caller_id).where(
                    CallAttempt.call_id.in_(wanted)
                )
            )
            callers = {call_id: caller_id for call_id, caller_id in rows}
        for request_id, call_id, mode, actor in claimed:
            organizer = organizers.get(actor) if actor is not None else None
            chosen = spy_mode(mode)
            if organizer is None or chosen is None:
                continue
            request = SpyRequest(
                request_id=request_id,
                call_id=call_id,
                mode=chosen,
                channel=self.service.volunteer_channel_for(organizer),
                context=self.supervision_context,
                caller_id_name=SPY_CALLER_NAMES[chosen],
                caller_id_number=(callers.get(call_id) or "").lstrip("+"),
                timeout_ms=self.originate_timeout_ms,
                beep=self.supervision_beep,
                notice=self.supervision_notice,
            )
            try:
                started = await self.pbx.spy_on_call(request)
            except PbxError as error:
                log.warning(
                    "call %s: %s by user %s refused by the PBX: %s",
                    call_id,
                    chosen,
                    actor,
                    error,
                    extra={"call_id": call_id},
                )
                continue
            if started == "no_live_leg":
                log.info(
                    "call %s: %s by user %s not started: the call has no live volunteer leg",
                    call_id,
                    mode,
                    actor,
                    extra={"call_id": call_id},
                )
            elif started == "already_on":
                log.info(
                    "call %s: %s by user %s: their phone is already on the call in that mode",
                    call_id,
                    mode,
                    actor,
                    extra={"call_id": call_id},
                )
        return len(taken)

    # -- PBX news ------------------------------------------------------------

    async def _consume_updates(self) -> None:
        """Persist PBX news in batches, with up to ``writers`` transactions at once.

        Whatever arrives while batches are being written goes in the next
        one, so a burst costs a few transactions rather than one per event.
        Two commits overlap so one commit's round trips and flush do not hold
        up everything behind it; a call is never in two transactions at
        once, so each call's updates are still stored in the order they came.
        """
        pending: list[CallSnapshot] = []
        changed = asyncio.Event()
        in_flight: set[str] = set()
        writers: set[asyncio.Task[None]] = set()

        async def read() -> None:
            async for snapshot in self.pbx.updates():
                pending.append(snapshot)
                changed.set()
            changed.set()

        busy = 0  # writers running; counted here, not by done-callbacks, which run late

        async def write(batch: list[CallSnapshot], calls: set[str]) -> None:
            nonlocal busy
            try:
                await self._persist_until_stored(batch)
                await self._send_pending_hangups(batch)
            finally:
                busy -= 1
                in_flight.difference_update(calls)
                changed.set()

        _freeze_startup_heap()
        reader = asyncio.create_task(read(), name="call-updates-reader")
        self._store_connections.keep = True
        try:
            while not (reader.done() and not pending and not busy):
                await changed.wait()
                changed.clear()
                while pending and busy < self.writers:
                    batch, deferred = _take_batch(pending, in_flight, self.max_batch)
                    pending[:] = deferred
                    if not batch:
                        break
                    calls = {snapshot.call_id for snapshot in batch}
                    in_flight.update(calls)
                    busy += 1
                    task = asyncio.create_task(write(batch, calls), name="call-updates-writer")
                    writers.add(task)
                    task.add_done_callback(writers.discard)
        finally:
            reader.cancel()
            for task in (reader, *writers):
                task.cancel()
            await asyncio.gather(reader, *writers, return_exceptions=True)
            self._store_connections.keep = False
            await self._store_connections.close()

    async def _persist_until_stored(self, batch: list[CallSnapshot]) -> None:
        # A database outage must not lose call states: keep the batch and
        # retry (applying a snapshot twice is harmless).
        delay = 0.2
        while True:
            try:
                await self.apply(batch)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "could not persist %d call update(s); retrying in %.1fs", len(batch), delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _send_pending_hangups(self, batch: list[CallSnapshot]) -> None:
        for snapshot in batch:
            by = self._pending_hangups.get(snapshot.call_id)
            if by is not None and (snapshot.volunteer_channel or snapshot.state is CallState.ENDED):
                del self._pending_hangups[snapshot.call_id]
                if snapshot.state is not CallState.ENDED:
                    await self.pbx.hangup_call(snapshot.call_id, by)

    async def apply(self, snapshots: Iterable[CallSnapshot]) -> list[CallAttempt]:
        """Persist snapshots (in one transaction when a call ends), then publish them."""
        ordered = list(snapshots)
        changed: dict[str, CallAttempt] = {}
        event_at: dict[str, datetime] = {}
        ended: list[CallAttempt] = []
        # Where no call ends, each row's update stands alone: no transaction
        # needed around the batch (see _StoreConnections).
        atomic = any(snapshot.state is CallState.ENDED for snapshot in ordered)
        async with self._store_connections.transaction(
            self.service.sessions, atomic=atomic
        ) as session:
            ids = {snapshot.call_id for snapshot in ordered}
            current = select(CallAttempt).where(CallAttempt.call_id.in_(ids))
            if atomic:
                # Another worker may be storing the same end (two workers on
                # one PBX, or one resyncing a call): locked, its rows are read
                # once it has committed, as ended, and the end is neither
                # counted twice nor refused by the automatic absent's unique
                # key.  Locked in one order, so two batches never deadlock.
                current = current.order_by(CallAttempt.id).with_for_update()
            rows = await session.scalars(current)
            calls = {call.call_id: call for call in rows}
            # Written below by one executemany, not by the unit of work's
            # per-row flush: detached, the rows are not flushed a second time.
            session.expunge_all()
            for snapshot in ordered:
                call = calls.get(snapshot.call_id)
                if call is None:
                    if not snapshot.discovered:
                        log.warning(
                            "call %s: update for a call with no row",
                            snapshot.call_id,
                            extra={"call_id": snapshot.call_id},
                        )
                    continue
                if call.state is CallState.ENDED:
                    continue
                if is_behind(snapshot.state, call.state):
                    continue
                call_rows.copy_snapshot(call, snapshot)
                if snapshot.state is CallState.ENDED:
                    if call.outcome is CallOutcome.LOST:
                        call.needs_review = True
                    ended.append(call)
                changed[call.call_id] = call
                event_at[call.call_id] = snapshot.at
            await call_rows.store_calls(session, changed.values())
            await record_call_endings(session, ended, self.service.clock())
        stored_at = self.service.clock()
        for snapshot in ordered:
            if snapshot.call_id in changed and self.on_persisted is not None:
                self.on_persisted(snapshot, (stored_at - snapshot.at).total_seconds())
        for call in changed.values():
            names = self._names.get(call.call_id)
            if call.state is CallState.ENDED:
                self._names.pop(call.call_id, None)
            self.service.publisher.publish_call(call, names=names, event_at=event_at[call.call_id])
        if ended:
            # An outcome saved while the call was up, by a web process
            # elsewhere: the end must not leave its volunteer wrapping up.
            self._wrap_up_wakeup.set()
        if self.power is not None:
            self.power.calls_stored(changed.values())
        campaigns = {call.campaign_id for call in ended if call.campaign_id is not None}
        if campaigns:
            self._counters_due.update(campaigns)
            self._counters_wakeup.set()
        return list(changed.values())

    async def _counters_loop(self) -> None:
        """Campaign counters after calls end, at most once a second per campaign
        and outside the transaction that stores call states."""
        while True:
            await self._counters_wakeup.wait()
            self._counters_wakeup.clear()
            due, self._counters_due = self._counters_due, set()
            try:
                await self.service.publisher.publish_campaign_counters(due)
            except Exception:
                log.warning("could not count campaign results; next time", exc_info=True)
            await asyncio.sleep(1.0)

    async def _wrap_up_loop(self) -> None:
        """Volunteers this worker shows wrapping up go back to available once
        their outcome is saved, whichever process saved it (the live state
        every process shows is this worker's)."""
        while True:
            await _woken(self._wrap_up_wakeup, self.wrap_up_poll_interval)
            self._wrap_up_wakeup.clear()
            try:
                await self.service.publisher.settle_wrap_ups()
            except Exception:
                log.warning(
                    "could not check wrap-ups against the database; next time", exc_info=True
                )


async def _woken(event: asyncio.Event, seconds: float) -> None:
    """Wait until ``event`` is set, at most ``seconds``.

    Not ``asyncio.wait_for``: on Python 3.11 it loses a cancellation that
    arrives just as the event is set (the PBX link dropping as the worker
    stops), and the loop waiting on it then runs on after its worker stopped.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


def _unreachable(error: BaseException) -> bool:
    # At start-up any OS-level error on the way to the database means it is
    # not there yet: a host that does not resolve or route, a port not open.
    return is_unavailable(error) or any(isinstance(cause, OSError) for cause in causes(error))


def _reason(error: BaseException) -> str:
    """The innermost cause's type and first line: what an operator can act on.

    Never the whole message of a failed statement, which names the SQL.
    """
    inner = list(causes(error))[-1]
    lines = str(inner).splitlines()
    first = lines[0][:200] if lines else ""
    return f"{type(inner).__name__}: {first}" if first else type(inner).__name__


def _freeze_startup_heap() -> None:
    """Put what is alive once the worker runs out of the cycle collector's reach.

    The worker's heap is large and stable (modules, the ORM's mappers and
    compiled statements); a full collection walks all of it, a pause of a
    few hundred milliseconds on a busy machine that every call update
    waiting at that moment pays.  Frozen once (after a last collection, so
    no garbage is kept), it is never walked again; what is created later is
    collected as usual.  Once per process: a second worker finds it done.
    """
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


class _StoreConnections:
    """Connections the persistence path keeps from one batch to the next (PostgreSQL).

    While the consumer loop runs, a batch skips the pool's check-out and its
    liveness ping, a round trip to the database.  A batch in which no call
    ends runs on a connection in autocommit: its rows' executemany is one
    implicit transaction of its own (asyncpg), with no BEGIN and COMMIT
    round trips around it.  A batch in which a call ends runs in a
    transaction, so the end and its bookkeeping are stored together and a
    retry never counts an attempt twice.

    A connection idle for more than ``fresh_for`` seconds goes back to the
    pool and the batch checks out a pinged one, so a quiet night does not
    end with a batch failing on a connection the server or a proxy closed.
    A failure gives the connection back to the pool (which discards it if it
    is broken), so the retry starts from a fresh, pinged one; the service
    given other sessions drops them all.  Outside the loop (a direct
    ``apply``), and on other databases, every batch is a transaction on a
    pooled connection.
    """

    def __init__(self, fresh_for: float = 10.0) -> None:
        self.keep = False
        self.fresh_for = fresh_for
        # Per kind (atomic or autocommit): connections and when they were last used.
        self._idle: dict[bool, list[tuple[AsyncConnection, float]]] = {True: [], False: []}
        self._source: async_sessionmaker[AsyncSession] | None = None

    @contextlib.asynccontextmanager
    async def transaction(
        self, sessions: async_sessionmaker[AsyncSession], *, atomic: bool
    ) -> AsyncIterator[AsyncSession]:
        engine = sessions.kw.get("bind")
        if (
            not self.keep
            or not isinstance(engine, AsyncEngine)
            or engine.dialect.name != "postgresql"
        ):
            async with sessions.begin() as session:
                yield session
            return
        if sessions is not self._source:
            await self.close()
            self._source = sessions
        connection = await self._take(engine, atomic)
        try:
            async with sessions(bind=connection) as session, session.begin():
                yield session
        except BaseException:
            await _give_back(connection)
            raise
        if self.keep:
            self._idle[atomic].append((connection, time.monotonic()))
        else:
            await _give_back(connection)

    async def _take(self, engine: AsyncEngine, atomic: bool) -> AsyncConnection:
        idle = self._idle[atomic]
        while idle:
            connection, used_at = idle.pop()
            if time.monotonic() - used_at <= self.fresh_for:
                return connection
            await _give_back(connection)
        connection = await engine.connect()
        if not atomic:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
        return connection

    async def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                connection, _ = idle.pop()
                await _give_back(connection)


async def _give_back(connection: AsyncConnection) -> None:
    """Return a connection to the pool, which rolls it back or discards it if broken.

    Bounded: at shutdown, with the database unreachable, the worker must not
    wait on it.
    """
    with contextlib.suppress(Exception):
        await asyncio.wait_for(connection.close(), timeout=2.0)


def _take_batch(
    pending: list[CallSnapshot], in_flight: set[str], limit: int
) -> tuple[list[CallSnapshot], list[CallSnapshot]]:
    """Split ``pending`` into a batch to write now and what must wait.

    A snapshot waits when its call is being written, or when an earlier
    snapshot of the same call waits: per call, order is kept.
    """
    batch: list[CallSnapshot] = []
    deferred: list[CallSnapshot] = []
    held: set[str] = set()
    for snapshot in pending:
        call_id = snapshot.call_id
        if len(batch) >= limit or call_id in in_flight or call_id in held:
            deferred.append(snapshot)
            held.add(call_id)
        else:
            batch.append(snapshot)
    return batch, deferred
