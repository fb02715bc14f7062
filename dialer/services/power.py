"""Power (progressive) mode: a volunteer's session, start to end.

The volunteer says "Start calling" once (:meth:`PowerService.start`): a
session row is committed and the worker of their PBX calls their phone into
a conference of its own (``dialer.worker.power_worker``).  While their leg
is up and nothing else is owed, the worker dials their list's next contact
for them (:meth:`PowerService.dial_next`), with every rule a click obeys,
because it is the same :meth:`CallService.start_call`.  One contact at a
time per volunteer on the line: nothing is ever dialed that no volunteer
waits for.

What the volunteer may do meanwhile: pause (with a reason) and resume,
ask for a "last call", and leave.  Their leg going (they hung up, their
phone died) ends the session: the worker hangs up the session's call too,
and the dialplan puts the contact out of the conference on its own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain import power
from dialer.domain.compliance import CallRefused, Refusal, RefusalCode
from dialer.domain.ports import SessionLegUpdate
from dialer.domain.vocabulary import (
    CallState,
    CampaignStatus,
    DialingMode,
    PowerNextCall,
    PowerSessionState,
    VolunteerPhone,
)
from dialer.services.access import can_access_campaign
from dialer.services.calling import CallService, OutcomePending
from dialer.services.common import Clock, NotAllowed
from dialer.services.lists import CallingLists
from dialer.services.volunteer_phones import phone_in_use
from dialer.store import audit, calls, power_sessions
from dialer.store.access import team_ids
from dialer.store.models import CallAttempt, Campaign, PowerSession, User, utcnow
from dialer.store.notify import POWER_SESSIONS, notify

log = logging.getLogger(__name__)

# What the list says when there is nothing left to dial, ever.
_LIST_OVER = {"all_done", "empty"}
PAUSE_REASON_MAX = 200


@dataclass(frozen=True, slots=True)
class DialResult:
    """What one attempt to dial a session's next contact did."""

    call_id: str | None = None
    # Why nothing was dialed (shown to the volunteer while they wait).
    note: str | None = None
    ended: bool = False


@dataclass(frozen=True, slots=True)
class SessionView:
    session: PowerSession
    # The session's call on the volunteer's screen: its outcome owed, else live.
    call: CallAttempt | None
    # The call dialed meanwhile, when ``call`` is one whose outcome is owed.
    next_call: CallAttempt | None = None


class PowerService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        calls_service: CallService,
        lists: CallingLists,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self.sessions = sessions
        self.calls = calls_service
        self.lists = lists
        self.clock = clock
        # Wakes a worker in the same process (SQLite has no NOTIFY).
        self.on_change: Callable[[], None] | None = None

    # -- the volunteer -----------------------------------------------------------

    async def start(
        self, volunteer_id: int, campaign_id: int, *, phone: VolunteerPhone | None = None
    ) -> PowerSession:
        """Commit a session for the worker to call the volunteer into; raises
        :class:`CallRefused` (why not), :class:`OutcomePending`."""

        def refuse(code: RefusalCode, message: str) -> NoReturn:
            raise CallRefused(Refusal(code, message))

        now = self.clock()
        try:
            async with self.sessions.begin() as session:
                volunteer = await session.get(User, volunteer_id)
                if volunteer is None or not volunteer.is_active:
                    refuse(RefusalCode.NOT_FOUND, "unknown user")
                campaign = await session.get(Campaign, campaign_id)
                teams = await team_ids(session, volunteer.id)
                if campaign is None or not await can_access_campaign(
                    session, volunteer, campaign, teams
                ):
                    refuse(RefusalCode.NOT_IN_TEAM, "you are not in this campaign's team")
                if campaign.status is not CampaignStatus.ACTIVE:
                    refuse(
                        RefusalCode.CAMPAIGN_NOT_ACTIVE, f"this campaign is {campaign.status.value}"
                    )
                if campaign.dialing_mode is not DialingMode.POWER:
                    refuse(RefusalCode.NOT_POWER_MODE, "this campaign does not use power mode")
                rings = phone_in_use(volunteer, phone)
                self.calls.refuse_unringable(volunteer, rings)
                pending = await calls.pending_outcome(session, volunteer.id)
                if pending is not None:
                    raise OutcomePending(pending.call_id, pending.contact_id, pending.campaign_id)
                if await calls.has_live_call(session, volunteer.id):
                    refuse(RefusalCode.VOLUNTEER_BUSY, "you already have a call in progress")
                allowed = await self.calls.caller_ids.allowed(session, volunteer, campaign)
                if not allowed:
                    refuse(
                        RefusalCode.NO_CALLER_ID,
                        "this campaign has no caller ID to call from and there is no default one",
                    )
                pbx = volunteer.pbx or self.calls.pbx_name
                reachable = self.calls.pbx_reachable
                if reachable is not None and reachable(pbx) is False:
                    refuse(
                        RefusalCode.PBX_UNAVAILABLE, f"the phone system ({pbx}) is not connected"
                    )
                row = PowerSession(
                    volunteer_id=volunteer.id,
                    campaign_id=campaign.id,
                    pbx=pbx,
                    phone=rings,
                    caller_id=allowed[0],
                    state=PowerSessionState.CONNECTING,
                    state_since=now,
                    requested_at=now,
                    last_call=False,
                    calls=0,
                    waited_seconds=0.0,
                )
                await power_sessions.add(session, row)
                await audit.record(
                    session,
                    action="power.start",
                    entity_type="power_session",
                    entity_id=row.id,
                    changes={"campaign_id": campaign.id, "phone": rings.value},
                    actor_id=volunteer.id,
                )
                await notify(session, POWER_SESSIONS, pbx)
        except IntegrityError as error:
            if not power_sessions.is_second_live_session(error):
                raise
            raise CallRefused(
                Refusal(RefusalCode.IN_POWER_SESSION, "you are already in a power session")
            ) from None
        self._published(row)
        return row

    async def pause(self, volunteer_id: int, reason: str) -> PowerSession:
        """No new contact after the current one until :meth:`resume`."""
        reason = " ".join(reason.split())[:PAUSE_REASON_MAX]

        async def pause(session: AsyncSession, row: PowerSession, now: datetime) -> None:
            await power_sessions.pause(session, row, reason, now)

        return await self._change(volunteer_id, "power.pause", pause, {"reason": reason})

    async def resume(self, volunteer_id: int) -> PowerSession:
        async def resume(session: AsyncSession, row: PowerSession, now: datetime) -> None:
            await power_sessions.resume(session, row)

        return await self._change(volunteer_id, "power.resume", resume)

    async def last_call(self, volunteer_id: int) -> PowerSession:
        """The session ends once the current contact is wrapped up (or now, between calls)."""

        async def last(session: AsyncSession, row: PowerSession, now: datetime) -> None:
            await power_sessions.ask_last_call(session, row)

        return await self._change(volunteer_id, "power.last_call", last)

    async def leave(self, volunteer_id: int) -> PowerSession:
        """Hang the volunteer's leg up now (and with it the session's call)."""

        async def leave(session: AsyncSession, row: PowerSession, now: datetime) -> None:
            await power_sessions.ask_to_leave(session, row, power.END_LEFT, now)
            if row.leg_sent_at is None:
                # No worker has called them yet: nothing to hang up.
                await power_sessions.end(session, row, power.END_LEFT, now)

        return await self._change(volunteer_id, "power.leave", leave)

    async def current(self, volunteer_id: int) -> SessionView | None:
        """The volunteer's live session, else their last one (to say how it ended),
        with the call of it their screen is about: live, or owing its outcome."""
        async with self.sessions() as session:
            row = await power_sessions.latest_for_volunteer(session, volunteer_id)
            if row is None:
                return None
            latest = await power_sessions.latest_call(session, row.id)
            live = latest if latest is not None and latest.state is not CallState.ENDED else None
            # The oldest outcome owed comes first: its form stays on the
            # screen while the next contact rings (PowerNextCall.AT_CALL_END).
            owed = [
                call
                for call in await calls.pending_outcomes(
                    session, volunteer_id, limit=2, with_contact=True
                )
                if call.power_session_id == row.id
            ]
            if owed:
                return SessionView(row, owed[-1], live)
            return SessionView(row, live, None)

    async def _change(
        self,
        volunteer_id: int,
        action: str,
        change: Callable[[AsyncSession, PowerSession, datetime], Awaitable[None]],
        changes: dict[str, object] | None = None,
    ) -> PowerSession:
        now = self.clock()
        async with self.sessions.begin() as session:
            row = await power_sessions.live_for_volunteer(session, volunteer_id, for_update=True)
            if row is None:
                raise NotAllowed("you are not in a power session")
            await change(session, row, now)
            await power_sessions.refresh(session, row, now)
            await self._settle(session, row, now)
            await audit.record(
                session,
                action=action,
                entity_type="power_session",
                entity_id=row.id,
                changes=changes,
                actor_id=volunteer_id,
            )
            await notify(session, POWER_SESSIONS, row.pbx)
        self._published(row)
        return row

    # -- the worker --------------------------------------------------------------

    async def claim_new(
        self, pbx: str, *, expiry: timedelta = timedelta(seconds=60)
    ) -> list[PowerSession]:
        """Sessions whose volunteer is still to be called; marked as called
        first, so a crash after this never calls anyone twice.

        One asked for longer than ``expiry`` ago (no worker was running) is
        ended instead: nobody's phone rings minutes after they clicked.
        """
        now = self.clock()
        claimed: list[PowerSession] = []
        expired: list[PowerSession] = []
        async with self.sessions.begin() as session:
            for row in await power_sessions.claim_unsent(session, pbx):
                await power_sessions.claim(session, row, now)
                if now - row.requested_at > expiry:
                    await power_sessions.end(session, row, power.END_PBX, now)
                    expired.append(row)
                else:
                    claimed.append(row)
        for row in expired:
            self._published(row)
        return claimed

    async def live(self, pbx: str) -> list[PowerSession]:
        async with self.sessions() as session:
            return list(await power_sessions.live_of_pbx(session, pbx))

    async def leg_changed(self, update: SessionLegUpdate) -> list[str]:
        """The volunteer's leg came up or went; the calls to hang up (when it went)."""
        now = self.clock()
        async with self.sessions.begin() as session:
            row = await power_sessions.get_for_update(session, update.session_id)
            if row is None or row.ended_at is not None:
                return []
            hang_up: list[str] = []
            if update.up:
                await power_sessions.leg_up(
                    session,
                    row,
                    answered_at=update.answered_at or update.at,
                    channel=update.channel,
                )
                await power_sessions.refresh(session, row, now)
            else:
                if row.leg_answered_at is None:
                    reason = f"{power.END_NOT_ANSWERED}: {update.reason or ''}".rstrip(": ")
                elif row.leave_requested_at is not None:
                    reason = row.end_reason or power.END_LEFT
                else:
                    reason = power.END_LEG_DROPPED
                await power_sessions.end(session, row, reason, now)
                # The dialplan puts the contact out of the conference as the
                # leg goes; this is for a call still on its way to it.
                hang_up = await power_sessions.live_call_ids(session, row.id)
        self._published(row)
        return hang_up

    async def end(self, session_id: int, reason: str) -> None:
        now = self.clock()
        async with self.sessions.begin() as session:
            row = await power_sessions.get_for_update(session, session_id)
            if row is None or row.ended_at is not None:
                return
            await power_sessions.end(session, row, reason, now)
        self._published(row)

    async def refresh(self, session_ids: set[int]) -> list[PowerSession]:
        """Recompute the state of these sessions (a call of theirs changed, an
        outcome was saved); the ones now waiting for a contact come back."""
        changed: list[PowerSession] = []
        # One short transaction each: a session's lock is never held while
        # another's facts are read.
        for session_id in sorted(session_ids):
            now = self.clock()
            async with self.sessions.begin() as session:
                row = await power_sessions.get_for_update(session, session_id)
                if row is None or row.ended_at is not None:
                    continue
                moved = await power_sessions.refresh(session, row, now)
                settled = await self._settle(session, row, now)
            if moved or settled:
                changed.append(row)
                self._published(row)
        return changed

    async def live_states(self, pbx: str) -> list[power_sessions.LiveState]:
        """Each live session's id, state and whether it is to end: what a pass needs."""
        async with self.sessions() as session:
            return await power_sessions.live_states(session, pbx)

    async def dial_next(self, session_id: int) -> DialResult:
        """Dial the session's next contact, if it is waiting for one."""
        async with self.sessions() as session:
            # The session and its campaign's rule in one round trip: every
            # waiting session is asked this on every pass.
            # (A session whose campaign was deleted has none: nothing to dial.)
            found_row = (
                await session.execute(
                    select(PowerSession, Campaign.id, Campaign.power_next_call)
                    .join(Campaign, Campaign.id == PowerSession.campaign_id)
                    .where(PowerSession.id == session_id)
                )
            ).first()
            if found_row is None:
                return DialResult()
            row, campaign_id, next_call = found_row
            if (
                row.ended_at is not None
                or row.state is not PowerSessionState.WAITING
                or row.leave_requested_at is not None
            ):
                return DialResult()
            volunteer_id, phone = row.volunteer_id, row.phone
        may_owe = power.outcomes_allowed(next_call or PowerNextCall.AFTER_OUTCOME)
        try:
            found = await self.lists.next_contact(volunteer_id, campaign_id)
        except NotAllowed:
            await self._leave_for(session_id, power.END_CAMPAIGN)
            return DialResult(ended=True)
        if found.contact is None:
            if found.empty_reason in _LIST_OVER:
                await self._leave_for(session_id, power.END_LIST_DONE)
                return DialResult(note=found.message, ended=True)
            await self._note(
                session_id,
                found.message,
                power.waiting_reason(power.WAITING_LIST, str(found.empty_reason)),
                found.available_at,
            )
            return DialResult(note=found.message)
        try:
            call = await self.calls.start_call(
                volunteer_id=volunteer_id,
                contact_id=found.contact.id,
                campaign_id=campaign_id,
                volunteer_phone=phone,
                power_session_id=session_id,
                may_owe=may_owe,
            )
        except CallRefused as refused:
            code = refused.refusal.code
            if code in (RefusalCode.CAMPAIGN_NOT_ACTIVE, RefusalCode.NOT_IN_TEAM):
                await self._leave_for(session_id, power.END_CAMPAIGN)
                return DialResult(ended=True)
            refusal = refused.refusal
            await self._note(
                session_id,
                refusal.message,
                power.waiting_reason(power.WAITING_REFUSAL, refusal.code.value),
                refusal.retry_at,
            )
            return DialResult(note=refusal.message)
        except OutcomePending:
            await self.refresh({session_id})
            return DialResult()
        await self._dialed(session_id, call)
        return DialResult(call_id=call.call_id)

    async def to_hang_up(self, pbx: str) -> list[int]:
        """Sessions whose volunteer's leg the worker must hang up (left, or done)."""
        async with self.sessions() as session:
            rows = await session.scalars(
                select(PowerSession.id).where(
                    PowerSession.pbx == pbx,
                    PowerSession.ended_at.is_(None),
                    PowerSession.leave_requested_at.is_not(None),
                    PowerSession.leg_sent_at.is_not(None),
                )
            )
            return list(rows)

    async def never_answered(self, pbx: str, older_than: timedelta) -> list[int]:
        """Sessions whose leg was called long ago and never heard of since."""
        cutoff = self.clock() - older_than
        async with self.sessions() as session:
            rows = await session.scalars(
                select(PowerSession.id).where(
                    PowerSession.pbx == pbx,
                    PowerSession.ended_at.is_(None),
                    PowerSession.leg_answered_at.is_(None),
                    PowerSession.leg_sent_at < cutoff,
                )
            )
            return list(rows)

    async def _dialed(self, session_id: int, call: CallAttempt) -> None:
        now = self.clock()
        async with self.sessions.begin() as session:
            row = await power_sessions.get_for_update(session, session_id)
            if row is None:
                return
            await power_sessions.dialed(session, row)
            await power_sessions.refresh(session, row, now)
        self._published(row)

    async def _note(self, session_id: int, note: str, reason: str, until: datetime | None) -> None:
        async with self.sessions.begin() as session:
            row = await power_sessions.get_for_update(session, session_id)
            if row is None or (
                row.waiting_note == note
                and row.waiting_reason == reason
                and row.waiting_until == until
            ):
                return
            await power_sessions.note(session, row, note, reason, until)
        self._published(row)

    async def _leave_for(self, session_id: int, reason: str) -> None:
        now = self.clock()
        async with self.sessions.begin() as session:
            row = await power_sessions.get_for_update(session, session_id)
            if row is None or row.ended_at is not None:
                return
            await power_sessions.ask_to_leave(session, row, reason, now)
            await notify(session, POWER_SESSIONS, row.pbx)
        self._published(row)
        if self.on_change is not None:
            self.on_change()

    async def _settle(self, session: AsyncSession, row: PowerSession, now: datetime) -> bool:
        """A session asked for its last call is over once it would wait again."""
        if row.last_call and row.state in (PowerSessionState.WAITING, PowerSessionState.PAUSED):
            return await power_sessions.ask_to_leave(session, row, power.END_LAST_CALL, now)
        return False

    def _published(self, row: PowerSession) -> None:
        self.calls.publisher.publish_session(row)
        if self.on_change is not None:
            self.on_change()
