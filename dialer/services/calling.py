"""Starting and hanging up calls: every rule about who may call whom, when.

The web layer and integrations call this; it never speaks AMI itself.  A
call request is committed as a ``requested`` row (the outbox) and the
worker that owns the PBX turns it into one Originate; a hang-up is a row
its worker carries out.  Recording outcomes is :mod:`dialer.services.outcomes`,
choosing the next contact :mod:`dialer.services.lists`, publishing live
state :mod:`dialer.services.live_calls`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Literal, NoReturn

from sqlalchemy import (
    select,
)
from sqlalchemy.exc import (
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import joinedload

from dialer.domain.calling_windows import check_any_hours
from dialer.domain.compliance import (
    CallRefused,
    DialingPolicy,
    Refusal,
    RefusalCode,
    check_attempts,
    check_calling_hours,
    contact_zones,
)
from dialer.domain.ports import HangupBy, SpyMode, spy_mode
from dialer.domain.vocabulary import (
    CallOutcome,
    CallState,
    CampaignStatus,
    Role,
    VolunteerPhone,
)
from dialer.live.broadcaster import Broadcaster
from dialer.services.access import can_access_campaign, can_access_contact, can_oversee_call
from dialer.services.call_endings import record_call_endings
from dialer.services.caller_ids import CallerIds
from dialer.services.common import Clock, NotAllowed, RetryableError
from dialer.services.live_calls import CallPublisher
from dialer.services.teams import manual_call_hours
from dialer.services.volunteer_phones import phone_in_use, volunteer_channel
from dialer.store import audit, calls, power_sessions
from dialer.store.access import team_ids
from dialer.store.calls import LiveClaim
from dialer.store.models import (
    CallAttempt,
    CallingListEntry,
    Campaign,
    Contact,
    ContactPhone,
    User,
    utcnow,
)
from dialer.store.notify import CALL_REQUESTS, HANGUP_REQUESTS, SUPERVISION_REQUESTS, notify

log = logging.getLogger(__name__)


def new_call_id() -> str:
    return f"c{uuid.uuid4().hex[:20]}"


def caller_id_name(contact: Contact) -> str:
    # Shown on the volunteer's desk phone; quotes and angle brackets would
    # break the "Name" <number> syntax, control characters are refused
    # later by the AMI encoder anyway.
    cleaned = "".join(ch for ch in contact.full_name if ch.isprintable() and ch not in '"<>\\')
    return cleaned[:40] or "Phone bank"


# A volunteer's leg exists and is answered from here on: ChanSpy has a
# channel to attach to.  Earlier, the organizer would only hear ringing.
SUPERVISABLE_STATES = frozenset(
    {CallState.VOLUNTEER_ANSWERED, CallState.RINGING_CONTACT, CallState.TALKING}
)


# Why a listen/whisper/barge was refused: not one of the three, the call is
# not answered yet or is over, the organizer has no phone to ring.
SupervisionRefusal = Literal["bad_mode", "not_live", "no_phone"]


class SupervisionRefused(Exception):
    """A listen/whisper/barge that cannot be done now (the user may see the call)."""

    def __init__(self, code: SupervisionRefusal, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class OutcomePending(Exception):
    """The volunteer's last answered call has no outcome yet: no new call until
    it is recorded or explicitly skipped (``OutcomeService.skip_outcome``)."""

    def __init__(self, call_id: str, contact_id: int, campaign_id: int | None) -> None:
        super().__init__(f"the outcome of call {call_id} is not recorded yet")
        self.call_id = call_id
        self.contact_id = contact_id
        self.campaign_id = campaign_id


def _claim_refusal(claim: LiveClaim) -> Refusal:
    if claim is LiveClaim.VOLUNTEER:
        return Refusal(RefusalCode.VOLUNTEER_BUSY, "you already have a call in progress")
    return Refusal(RefusalCode.CONTACT_BEING_CALLED, "someone is calling this contact right now")


class CallService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        policy: DialingPolicy,
        volunteer_channel: str,
        outbound_context: str,
        default_caller_id: str = "",
        pbx_name: str = "default",
        publisher: CallPublisher | None = None,
        on_request: Callable[[str], None] | None = None,
        on_hangup_request: Callable[[], None] | None = None,
        on_supervision_request: Callable[[], None] | None = None,
        clock: Clock = utcnow,
        fallback_zone: str = "UTC",
    ) -> None:
        self.sessions = sessions
        self.policy = policy
        self.volunteer_channel = volunteer_channel
        self.outbound_context = outbound_context
        self.caller_ids = CallerIds(default_caller_id)
        self.pbx_name = pbx_name
        self.publisher = publisher or CallPublisher(sessions, Broadcaster(), clock)
        # In-process wake-ups for a worker in the same process; workers
        # elsewhere hear of new rows through NOTIFY or their poll.
        self.on_request = on_request
        self.on_hangup_request = on_hangup_request
        self.on_supervision_request = on_supervision_request
        # Whether a PBX's worker can reach it: True, False, or None (unknown:
        # the request is queued and the worker decides).
        self.pbx_reachable: Callable[[str], bool | None] | None = None
        self.clock = clock
        self.fallback_zone = fallback_zone
        # Where a power session's contact joins its volunteer's conference.
        self.power_join_context = "dialer-power-join"

    @property
    def default_caller_id(self) -> str:
        return self.caller_ids.default

    @property
    def broadcaster(self) -> Broadcaster:
        return self.publisher.broadcaster

    # -- starting a call --------------------------------------------------------

    async def start_call(
        self,
        *,
        volunteer_id: int,
        contact_id: int,
        phone_id: int | None = None,
        campaign_id: int | None = None,
        caller_id: str | None = None,
        volunteer_phone: VolunteerPhone | None = None,
        power_session_id: int | None = None,
        may_owe: int = 0,
    ) -> CallAttempt:
        """Check every rule, then commit the request; raises :class:`CallRefused`,
        or :class:`OutcomePending` while the volunteer owes an answered call's outcome.

        Without ``campaign_id``, a contact on campaign lists is still called
        under one of those campaigns (:meth:`_campaign_for_call_without_one`).
        ``volunteer_phone`` is the phone the volunteer's session chose (None:
        their usual one; one no longer offered falls back to it too).
        ``power_session_id``: the call is dialed for that power session
        (:mod:`dialer.services.power`), into the volunteer's conference;
        ``may_owe`` outcomes may then be owed still (the campaign dials the
        next contact as a call ends).
        """
        now = self.clock()
        try:
            async with self.sessions.begin() as session:
                call = await self._checked_request(
                    session,
                    now,
                    volunteer_id,
                    contact_id,
                    phone_id,
                    campaign_id,
                    caller_id,
                    volunteer_phone,
                    power_session_id,
                    may_owe,
                )
                await calls.add_request(session, call)
                await audit.record(
                    session,
                    action="call.request",
                    entity_type="call",
                    entity_id=call.call_id,
                    changes={
                        "contact_id": contact_id,
                        "number": call.number_e164,
                        # The campaign the call was made under, named or not.
                        "campaign_id": call.campaign_id,
                        "caller_id": call.caller_id,
                    },
                    actor_id=volunteer_id,
                )
                await notify(session, CALL_REQUESTS, call.pbx)
        except IntegrityError as error:
            claim = calls.live_claim_conflict(error)
            if claim is None:
                raise
            if claim is LiveClaim.CONTACT:
                claim = await self._own_contact_claim(volunteer_id, contact_id)
            raise CallRefused(_claim_refusal(claim)) from None
        except (OperationalError, InterfaceError, OSError) as error:
            raise RetryableError("the database is unavailable; try again") from error
        self.publisher.publish_call(call)
        if self.on_request is not None:
            self.on_request(call.call_id)
        return call

    async def _own_contact_claim(self, volunteer_id: int, contact_id: int) -> LiveClaim:
        """The claim to report when the contact's was broken: the volunteer's own
        when the live call on the contact is theirs (a double click, a second tab).

        Such a request breaks both claims and the database reports the one it
        checked first, which differs between PostgreSQL and SQLite; "someone is
        calling this contact" would then be the volunteer themselves.
        """
        try:
            async with self.sessions() as session:
                caller = await calls.live_call_volunteer(session, contact_id)
        except (OperationalError, InterfaceError, OSError):
            # Only the wording is at stake: the request is refused either way.
            return LiveClaim.CONTACT
        return LiveClaim.VOLUNTEER if caller == volunteer_id else LiveClaim.CONTACT

    async def _checked_request(
        self,
        session: AsyncSession,
        now: datetime,
        volunteer_id: int,
        contact_id: int,
        phone_id: int | None,
        campaign_id: int | None,
        caller_id: str | None,
        volunteer_phone: VolunteerPhone | None,
        power_session_id: int | None = None,
        may_owe: int = 0,
    ) -> CallAttempt:
        def refuse(code: RefusalCode, message: str, retry_at: datetime | None = None) -> NoReturn:
            raise CallRefused(Refusal(code, message, retry_at))

        volunteer = await session.get(User, volunteer_id)
        if volunteer is None or not volunteer.is_active:
            refuse(RefusalCode.NOT_FOUND, "unknown user")
        rings = phone_in_use(volunteer, volunteer_phone)
        self.refuse_unringable(volunteer, rings)
        # Before any other rule: what was said on the last answered call is
        # worth more than the next call, and it is lost once they move on.
        owed = await calls.pending_outcomes(session, volunteer.id, limit=may_owe + 1)
        if len(owed) > may_owe:
            pending = owed[0]
            raise OutcomePending(pending.call_id, pending.contact_id, pending.campaign_id)
        if power_session_id is None and await power_sessions.has_live_session(
            session, volunteer.id
        ):
            # Their phone is in their session's conference: a call of its own
            # would ring it again, and the session would dial over it.
            refuse(
                RefusalCode.IN_POWER_SESSION,
                "you are in a power session: the next contact is dialed for you",
            )
        teams = await team_ids(session, volunteer.id)
        campaign: Campaign | None = None
        if campaign_id is not None:
            campaign = await session.get(Campaign, campaign_id)
            if campaign is None or not await can_access_campaign(
                session, volunteer, campaign, teams
            ):
                refuse(RefusalCode.NOT_IN_TEAM, "you are not in this campaign's team")
            if campaign.status is not CampaignStatus.ACTIVE:
                refuse(RefusalCode.CAMPAIGN_NOT_ACTIVE, f"this campaign is {campaign.status.value}")
        # One round trip for the contact and its numbers: this runs on every click.
        contact = await session.get(Contact, contact_id, options=[joinedload(Contact.phones)])
        entry: CallingListEntry | None = None
        if contact is not None and campaign is not None:
            entry = await session.scalar(
                select(CallingListEntry).where(
                    CallingListEntry.campaign_id == campaign.id,
                    CallingListEntry.contact_id == contact.id,
                )
            )
        # On the list of a campaign in view is what "in view" means for a
        # contact (access.can_access_contact): only without one is it asked.
        if contact is None or (
            entry is None and not await can_access_contact(session, volunteer, contact_id, teams)
        ):
            refuse(RefusalCode.NOT_FOUND, "no such contact")
        phone = self._choose_phone(contact, phone_id)
        if phone is None:
            refuse(RefusalCode.NOT_FOUND, "this contact has no such number")
        if contact.do_not_call or phone.do_not_call:
            refuse(RefusalCode.DO_NOT_CALL, "this contact is on the do-not-call list")
        if phone.wrong_number:
            refuse(RefusalCode.WRONG_NUMBER, "this number was marked as a wrong number")
        refusal = self.policy.check(phone.e164)
        if refusal is not None:
            raise CallRefused(refusal)

        if campaign is not None:
            if entry is None:
                refuse(RefusalCode.NOT_FOUND, "this contact is not on this campaign's list")
            refusal = self._campaign_refusal(campaign, entry, contact, phone, now)
            if refusal is not None:
                raise CallRefused(refusal)
        else:
            # A contact on a campaign is called under that campaign's rules:
            # leaving campaign_id out must not skip its pause, its attempts,
            # its retry delay, its "done" or its hours.
            campaign = await self._campaign_for_call_without_one(
                session, volunteer, contact, phone, teams, caller_id, now
            )
            if campaign is None:
                # A manual call: any of the caller's teams' hours (dialer.services.teams).
                hours_refusal = check_any_hours(
                    await manual_call_hours(session, teams),
                    contact_zones(phone.e164, contact.timezone, self.fallback_zone),
                    now,
                )
                if hours_refusal is not None:
                    raise CallRefused(hours_refusal)

        allowed = await self.caller_ids.allowed(session, volunteer, campaign)
        if not allowed:
            # The dialplan refuses a call without a caller ID, but only after
            # the volunteer's phone has rung and been answered.
            refuse(
                RefusalCode.NO_CALLER_ID,
                "this campaign has no caller ID to call from and there is no default one"
                if campaign is not None
                else "there is no caller ID to call from outside a campaign",
            )
        chosen = caller_id or allowed[0]
        if chosen not in allowed:
            refuse(RefusalCode.CALLER_ID_NOT_ALLOWED, f"{chosen} is not an allowed caller ID here")
        pbx = volunteer.pbx or self.pbx_name
        if self.pbx_reachable is not None and self.pbx_reachable(pbx) is False:
            # Said now rather than ringing nobody for a minute and then failing.
            refuse(RefusalCode.PBX_UNAVAILABLE, f"the phone system ({pbx}) is not connected")

        # One live call per volunteer and per contact: the partial unique
        # indexes decide at insert time (see calls.live_claim_conflict).
        return CallAttempt(
            call_id=new_call_id(),
            campaign_id=campaign.id if campaign else None,
            contact_id=contact.id,
            phone_id=phone.id,
            number_e164=phone.e164,
            volunteer_id=volunteer.id,
            # Loaded already: the live state names them without a query.
            volunteer=volunteer,
            contact=contact,
            caller_id=chosen,
            volunteer_phone=rings,
            pbx=pbx,
            state=CallState.REQUESTED,
            requested_at=now,
            power_session_id=power_session_id,
        )

    def _campaign_refusal(
        self,
        campaign: Campaign,
        entry: CallingListEntry,
        contact: Contact,
        phone: ContactPhone,
        now: datetime,
    ) -> Refusal | None:
        """A campaign's own rules for one contact on its list: done, attempts, retry, hours."""
        if entry.done:
            return Refusal(RefusalCode.MAX_ATTEMPTS, "this contact is done for this campaign")
        callback_due = entry.callback_at is not None and entry.callback_at <= now
        attempt_refusal = check_attempts(
            entry.attempts,
            campaign.max_attempts,
            entry.last_attempt_at,
            timedelta(minutes=campaign.retry_delay_minutes),
            now,
            callback_due=callback_due,
        )
        if attempt_refusal is not None:
            return attempt_refusal
        zones = contact_zones(phone.e164, contact.timezone, self.fallback_zone)
        return check_calling_hours(campaign.calling_hours, zones, now)

    async def _campaign_for_call_without_one(
        self,
        session: AsyncSession,
        volunteer: User,
        contact: Contact,
        phone: ContactPhone,
        teams: set[int],
        caller_id: str | None,
        now: datetime,
    ) -> Campaign | None:
        """The campaign a call asked for without one is made under; None when the
        contact is on no campaign's list (a plain manual call).

        Leaving the campaign out gives nothing that naming one would not: the
        call goes under the first of the contact's active campaigns in the
        volunteer's view (their own list first) whose rules allow it now, is
        stored with it, and so counts as that campaign's attempt.  A contact
        whose campaigns in view are all paused or closed is refused, like a
        click in a paused campaign.
        """
        rows = (
            await session.execute(
                select(CallingListEntry, Campaign)
                .join(Campaign, Campaign.id == CallingListEntry.campaign_id)
                .where(CallingListEntry.contact_id == contact.id)
                .order_by(CallingListEntry.volunteer_id != volunteer.id, Campaign.id)
            )
        ).all()
        if not rows:
            return None
        in_view = [
            (entry, campaign)
            for entry, campaign in rows
            if await can_access_campaign(session, volunteer, campaign, teams)
        ]
        if not in_view:
            # Only on other teams' campaigns: their rules are not this
            # volunteer's to apply, and naming them would say who holds the contact.
            raise CallRefused(Refusal(RefusalCode.NOT_FOUND, "no such contact"))
        active = [(entry, c) for entry, c in in_view if c.status is CampaignStatus.ACTIVE]
        if not active:
            raise CallRefused(
                Refusal(
                    RefusalCode.CAMPAIGN_NOT_ACTIVE,
                    "this contact is only on campaigns that are not active "
                    f"({', '.join(sorted({c.status.value for _entry, c in in_view}))})",
                )
            )
        first_refusal: Refusal | None = None
        for entry, campaign in active:
            refusal = self._campaign_refusal(campaign, entry, contact, phone, now)
            if refusal is None and caller_id is not None:
                if caller_id not in await self.caller_ids.allowed(session, volunteer, campaign):
                    refusal = Refusal(
                        RefusalCode.CALLER_ID_NOT_ALLOWED,
                        f"{caller_id} is not an allowed caller ID here",
                    )
            if refusal is None:
                return campaign
            first_refusal = first_refusal or refusal
        assert first_refusal is not None
        raise CallRefused(first_refusal)

    @staticmethod
    def _choose_phone(contact: Contact, phone_id: int | None) -> ContactPhone | None:
        if phone_id is not None:
            return next((phone for phone in contact.phones if phone.id == phone_id), None)
        usable = [p for p in contact.phones if not p.wrong_number and not p.do_not_call]
        candidates = usable or contact.phones
        return candidates[0] if candidates else None

    def volunteer_channel_for(self, volunteer: User, phone: VolunteerPhone | None = None) -> str:
        return volunteer_channel(
            volunteer,
            template=self.volunteer_channel,
            outbound_context=self.outbound_context,
            phone=phone,
        )

    async def hang_up(self, user_id: int, call_id: str) -> None:
        """Hang up a call: its own volunteer, or any organizer/admin.

        A request no worker has claimed yet is cancelled here; otherwise the
        hang-up is a row for the call's worker, so it reaches a worker in
        another process and survives a worker restart.
        """
        try:
            async with self.sessions.begin() as session:
                user = await session.get(User, user_id)
                call = await session.scalar(
                    select(CallAttempt).where(CallAttempt.call_id == call_id)
                )
                if user is None or call is None:
                    raise NotAllowed("no such call")
                if not await can_oversee_call(session, user, call):
                    raise NotAllowed("no such call")
                if call.state is CallState.ENDED:
                    return
                by: HangupBy = "volunteer" if call.volunteer_id == user.id else "operator"
                cancelled = await self._cancel_unclaimed(session, call, by)
                if cancelled:
                    await record_call_endings(session, [call], self.clock())
                else:
                    await calls.add_hangup_request(
                        session, call=call, by=by, actor_id=user.id, at=self.clock()
                    )
                    await notify(session, HANGUP_REQUESTS, call.pbx)
                await audit.record(
                    session,
                    action="call.hangup",
                    entity_type="call",
                    entity_id=call_id,
                    changes={"by": by, "cancelled_before_dialing": cancelled},
                    actor_id=user.id,
                )
        except (OperationalError, InterfaceError, OSError) as error:
            raise RetryableError("the database is unavailable; try again") from error
        if cancelled:
            self.publisher.publish_call(call)
        elif self.on_hangup_request is not None:
            self.on_hangup_request()

    async def supervise(self, user_id: int, call_id: str, mode: SpyMode) -> None:
        """Ring ``user_id``'s own phone into a live call: listen, whisper or barge.

        Only an organizer of a team the call belongs to, or an administrator,
        and never on their own call; every use is in the audit log.  Like a
        hang-up it is a row for the call's worker, which takes the channel to
        spy on from what it tracks of the call, never from this request.
        Raises :class:`NotAllowed` for anyone else (as for a call they may not
        see), :class:`SupervisionRefused` when it cannot be done now.
        """
        if spy_mode(mode) is None:
            raise SupervisionRefused("bad_mode", "listen, whisper or barge")
        try:
            async with self.sessions.begin() as session:
                user = await session.get(User, user_id)
                call = await session.scalar(
                    select(CallAttempt).where(CallAttempt.call_id == call_id)
                )
                if user is None or call is None or not user.is_active:
                    raise NotAllowed("no such call")
                if user.role not in (Role.ORGANIZER, Role.ADMIN):
                    raise NotAllowed("no such call")
                if call.volunteer_id == user.id or not await can_oversee_call(session, user, call):
                    raise NotAllowed("no such call")
                if call.state not in SUPERVISABLE_STATES:
                    raise SupervisionRefused(
                        "not_live", "only a call whose volunteer has answered can be joined"
                    )
                self._check_supervisor_phone(user)
                request_id = await calls.add_supervision_request(
                    session, call=call, mode=mode, actor_id=user.id, at=self.clock()
                )
                await notify(session, SUPERVISION_REQUESTS, call.pbx)
                await audit.record(
                    session,
                    action=f"call.{mode}",
                    entity_type="call",
                    entity_id=call_id,
                    changes={
                        "mode": mode,
                        "request": request_id,
                        "volunteer_id": call.volunteer_id,
                    },
                    actor_id=user.id,
                )
        except (OperationalError, InterfaceError, OSError) as error:
            raise RetryableError("the database is unavailable; try again") from error
        if self.on_supervision_request is not None:
            self.on_supervision_request()

    def _check_supervisor_phone(self, user: User) -> None:
        """The organizer's phone must be one the dialer can ring, as a volunteer's."""
        unringable = self.unringable(user, user.phone)
        if unringable == "own_number":
            raise SupervisionRefused(
                "no_phone", "the dialing policy does not allow calls to your own number"
            )
        if unringable == "extension":
            raise SupervisionRefused("no_phone", "you have no phone; ask an administrator")

    def refuse_unringable(self, user: User, rings: VolunteerPhone) -> None:
        """Raise :class:`CallRefused` when ``user``'s phone of kind ``rings``
        cannot be rung (a click, a power session)."""
        unringable = self.unringable(user, rings)
        if unringable == "own_number":
            raise CallRefused(
                Refusal(
                    RefusalCode.OWN_NUMBER_NOT_ALLOWED,
                    "the dialing policy does not allow calls to your own number",
                )
            )
        if unringable == "extension":
            raise CallRefused(
                Refusal(
                    RefusalCode.NO_EXTENSION,
                    "you have no phone extension; ask an organizer to set one",
                )
            )

    def unringable(
        self, user: User, rings: VolunteerPhone
    ) -> Literal["own_number", "extension"] | None:
        """Why ``user``'s phone of kind ``rings`` cannot be rung, or None.

        An own number is dialed over the trunk like a contact: the same
        policy, checked again at each call in case it changed since the
        number was set.  Any other phone needs an extension.
        """
        if rings is VolunteerPhone.OWN_NUMBER:
            if not user.own_number or self.policy.check(user.own_number) is not None:
                return "own_number"
        elif not user.sip_extension:
            return "extension"
        return None

    async def _cancel_unclaimed(
        self, session: AsyncSession, call: CallAttempt, by: HangupBy
    ) -> bool:
        """End a request no worker has claimed yet, here and now.

        It frees a volunteer whose PBX's worker is down instead of leaving
        them stuck on a call that can never start (see
        :func:`dialer.store.calls.cancel_unclaimed` for why it cannot race
        the worker).
        """
        if call.state is not CallState.REQUESTED or call.originate_sent_at is not None:
            return False
        outcome = (
            CallOutcome.HUNG_UP_BY_OPERATOR
            if by == "operator"
            else CallOutcome.HUNG_UP_BY_VOLUNTEER
        )
        # False when a worker claimed it meanwhile: it is asked to hang up instead.
        return await calls.cancel_unclaimed(session, call, outcome, self.clock())
