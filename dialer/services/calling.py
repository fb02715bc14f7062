"""The click-to-call service: every rule about who may call whom, when.

The web layer and integrations call this; it never speaks AMI itself.  A
call request is committed as a ``requested`` row (the outbox) and the
worker that owns the PBX turns it into one Originate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn, TypeVar, cast

from sqlalchemy import (
    Integer,
    Table,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    inspect,
    null,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from dialer.domain.compliance import (
    CallRefused,
    DialingPolicy,
    Refusal,
    RefusalCode,
    check_attempts,
    check_calling_hours,
    contact_zones,
    next_opening,
)
from dialer.domain.outcomes import OutcomeSubmission, SubmissionInvalid, validate_submission
from dialer.domain.ports import HangupBy
from dialer.domain.survey import CallingHours, SurveyDefinition
from dialer.domain.vocabulary import (
    LIVE_CALL_STATES,
    CallOutcome,
    CallState,
    CampaignStatus,
    DispositionOutcome,
    TaskStatus,
)
from dialer.live.broadcaster import Broadcaster
from dialer.store import audit
from dialer.store.access import STAFF_ROLES, team_ids
from dialer.store.models import (
    CallAttempt,
    CallingListEntry,
    Campaign,
    Contact,
    ContactPhone,
    Disposition,
    FollowUpTask,
    HangupRequest,
    User,
    utcnow,
)
from dialer.store.notify import CALL_REQUESTS, HANGUP_REQUESTS, notify

log = logging.getLogger(__name__)
T = TypeVar("T")
Clock = Callable[[], datetime]

# Outcomes where the contact's phone was actually dialed: they count as an
# attempt on the contact.  Volunteer-side failures do not.
CONTACT_DIALED = frozenset(
    {
        CallOutcome.COMPLETED,
        CallOutcome.CONTACT_BUSY,
        CallOutcome.CONTACT_NO_ANSWER,
        CallOutcome.CONTACT_CONGESTION,
        CallOutcome.CONTACT_REJECTED,
        CallOutcome.CONTACT_UNREACHABLE,
    }
)
# Ended calls that never reached the contact get this disposition by themselves.
AUTOMATIC_ABSENT = frozenset(
    {
        CallOutcome.CONTACT_BUSY,
        CallOutcome.CONTACT_NO_ANSWER,
        CallOutcome.CONTACT_CONGESTION,
        CallOutcome.CONTACT_UNREACHABLE,
    }
)


class RetryableError(Exception):
    """The database could not be reached; the same request can be sent again."""


class _AlreadyStored(Exception):
    def __init__(self, disposition_id: int) -> None:
        super().__init__(disposition_id)
        self.disposition_id = disposition_id


class NotAllowed(Exception):
    """The user may not see or change this (authorization, not a rule)."""


def new_call_id() -> str:
    return f"c{uuid.uuid4().hex[:20]}"


def usable_caller_id(number: str) -> bool:
    """Whether the PBX will present ``number`` to the contact: 8 to 15 digits (E.164).

    [dialer-place-call] in asterisk-config/extensions.conf keeps only the
    digits and hangs up on anything shorter or longer, but only once the
    volunteer has answered; checking here refuses the click instead.
    """
    digits = sum(1 for character in number if character in "0123456789")
    return 8 <= digits <= 15


def campaign_caller_ids(campaign: Campaign, default_caller_id: str) -> list[str]:
    """The caller IDs a campaign's calls may present: its own list, else the default.

    Empty when every call of the campaign would be refused for want of one.
    """
    numbers = list(campaign.allowed_caller_ids) or (
        [default_caller_id] if default_caller_id else []
    )
    return [number for number in numbers if usable_caller_id(number)]


def caller_id_name(contact: Contact) -> str:
    # Shown on the volunteer's desk phone; quotes and angle brackets would
    # break the "Name" <number> syntax, control characters are refused
    # later by the AMI encoder anyway.
    cleaned = "".join(ch for ch in contact.full_name if ch.isprintable() and ch not in '"<>\\')
    return cleaned[:40] or "Phone bank"


async def with_db_retry(
    operation: Callable[[], Awaitable[T]], *, attempts: int = 5, first_delay: float = 0.2
) -> T:
    """Run ``operation`` again when the database connection fails.

    Only connection-level errors are retried; the operation must be
    idempotent (outcome submissions are, through their submission id).
    """
    delay = first_delay
    for attempt in range(attempts):
        try:
            return await operation()
        except (OperationalError, InterfaceError, OSError) as error:
            # OSError: the driver fails to even connect while the server is down.
            last: Exception = error
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
            last = error
        if attempt < attempts - 1:
            log.warning("database unavailable (%s); retrying in %.1fs", type(last).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 3.0)
    raise RetryableError("the database is unavailable; your submission was kept, retry") from last


@dataclass(frozen=True, slots=True)
class OutcomeResult:
    disposition_id: int
    duplicate: bool
    campaign_id: int | None = None


@dataclass(frozen=True, slots=True)
class NextContact:
    contact: Contact | None
    # Why the list is empty: all_done, outside_hours, waiting_for_retry, empty.
    empty_reason: str | None = None
    message: str = ""
    available_at: datetime | None = None
    is_callback: bool = False


def _constraint_refusal(error: IntegrityError) -> Refusal | None:
    text = str(error.orig)
    if "uq_call_attempts_live_volunteer" in text:
        return Refusal(RefusalCode.VOLUNTEER_BUSY, "you already have a call in progress")
    if "uq_call_attempts_live_contact" in text:
        return Refusal(
            RefusalCode.CONTACT_BEING_CALLED, "someone is calling this contact right now"
        )
    return None


class DialerService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        policy: DialingPolicy,
        region: str,
        volunteer_channel: str,
        outbound_context: str,
        default_caller_id: str = "",
        pbx_name: str = "default",
        broadcaster: Broadcaster | None = None,
        on_request: Callable[[str], None] | None = None,
        on_hangup_request: Callable[[], None] | None = None,
        clock: Clock = utcnow,
        fallback_zone: str = "UTC",
    ) -> None:
        self.sessions = sessions
        self.policy = policy
        self.region = region
        self.volunteer_channel = volunteer_channel
        self.outbound_context = outbound_context
        if default_caller_id and not usable_caller_id(default_caller_id):
            # The PBX would hang up every call presenting it; as unset, clicks
            # that have nothing better are refused up front (no_caller_id).
            log.warning(
                "the default caller ID %r (DIALER_DEFAULT_CALLER_ID) is not a phone number "
                "of 8 to 15 digits; ignored",
                default_caller_id,
            )
            default_caller_id = ""
        self.default_caller_id = default_caller_id
        self.pbx_name = pbx_name
        self.broadcaster = broadcaster or Broadcaster()
        # In-process wake-ups for a worker in the same process; workers
        # elsewhere hear of new rows through NOTIFY or their poll.
        self.on_request = on_request
        self.on_hangup_request = on_hangup_request
        # Whether a PBX's worker can reach it: True, False, or None (unknown:
        # the request is queued and the worker decides).
        self.pbx_reachable: Callable[[str], bool | None] | None = None
        self.clock = clock
        self.fallback_zone = fallback_zone

    # -- access -----------------------------------------------------------------

    async def can_access_campaign(
        self, session: AsyncSession, user: User, campaign: Campaign, teams: set[int] | None = None
    ) -> bool:
        if user.role in STAFF_ROLES:
            return True
        if teams is None:
            teams = await team_ids(session, user.id)
        return campaign.team_id is not None and campaign.team_id in teams

    async def can_access_contact(
        self, session: AsyncSession, user: User, contact_id: int, teams: set[int] | None = None
    ) -> bool:
        """Volunteers see contacts on their teams' campaigns, nothing else."""
        if user.role in STAFF_ROLES:
            return True
        if teams is None:
            teams = await team_ids(session, user.id)
        if not teams:
            return False
        found = await session.scalar(
            select(
                exists().where(
                    CallingListEntry.contact_id == contact_id,
                    CallingListEntry.campaign_id == Campaign.id,
                    Campaign.team_id.in_(teams),
                )
            )
        )
        return bool(found)

    async def allowed_caller_ids(
        self, session: AsyncSession, user: User, campaign: Campaign | None
    ) -> list[str]:
        """The caller IDs ``user`` may call from; empty when a call would be refused."""
        if campaign is not None:
            return campaign_caller_ids(campaign, self.default_caller_id)
        # Outside a campaign: the default plus those of the user's active campaigns.
        choices = [self.default_caller_id] if self.default_caller_id else []
        statement = select(Campaign.allowed_caller_ids).where(
            Campaign.status == CampaignStatus.ACTIVE
        )
        if user.role not in STAFF_ROLES:
            statement = statement.where(Campaign.team_id.in_(await team_ids(session, user.id)))
        for caller_ids in await session.scalars(statement):
            choices.extend(
                number
                for number in caller_ids
                if number not in choices and usable_caller_id(number)
            )
        return choices

    # -- starting a call --------------------------------------------------------

    async def start_call(
        self,
        *,
        volunteer_id: int,
        contact_id: int,
        phone_id: int | None = None,
        campaign_id: int | None = None,
        caller_id: str | None = None,
    ) -> CallAttempt:
        """Check every rule, then commit the request; raises :class:`CallRefused`."""
        now = self.clock()
        try:
            async with self.sessions.begin() as session:
                call = await self._checked_request(
                    session, now, volunteer_id, contact_id, phone_id, campaign_id, caller_id
                )
                session.add(call)
                await session.flush()
                audit.record(
                    session,
                    action="call.request",
                    entity_type="call",
                    entity_id=call.call_id,
                    changes={
                        "contact_id": contact_id,
                        "number": call.number_e164,
                        "campaign_id": campaign_id,
                        "caller_id": call.caller_id,
                    },
                    actor_id=volunteer_id,
                )
                await notify(session, CALL_REQUESTS, call.pbx)
        except IntegrityError as error:
            refusal = _constraint_refusal(error)
            if refusal is None:
                raise
            raise CallRefused(refusal) from None
        except (OperationalError, InterfaceError, OSError) as error:
            raise RetryableError("the database is unavailable; try again") from error
        self.publish_call(call)
        if self.on_request is not None:
            self.on_request(call.call_id)
        return call

    async def _checked_request(
        self,
        session: AsyncSession,
        now: datetime,
        volunteer_id: int,
        contact_id: int,
        phone_id: int | None,
        campaign_id: int | None,
        caller_id: str | None,
    ) -> CallAttempt:
        def refuse(code: RefusalCode, message: str, retry_at: datetime | None = None) -> NoReturn:
            raise CallRefused(Refusal(code, message, retry_at))

        volunteer = await session.get(User, volunteer_id)
        if volunteer is None or not volunteer.is_active:
            refuse(RefusalCode.NOT_FOUND, "unknown user")
        if not volunteer.sip_extension:
            refuse(
                RefusalCode.NO_EXTENSION, "you have no phone extension; ask an organizer to set one"
            )
        teams = await team_ids(session, volunteer.id)
        campaign: Campaign | None = None
        if campaign_id is not None:
            campaign = await session.get(Campaign, campaign_id)
            if campaign is None or not await self.can_access_campaign(
                session, volunteer, campaign, teams
            ):
                refuse(RefusalCode.NOT_IN_TEAM, "you are not in this campaign's team")
            if campaign.status is not CampaignStatus.ACTIVE:
                refuse(RefusalCode.CAMPAIGN_NOT_ACTIVE, f"this campaign is {campaign.status.value}")
        contact = await session.get(Contact, contact_id, options=[selectinload(Contact.phones)])
        if contact is None or not await self.can_access_contact(
            session, volunteer, contact_id, teams
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

        hours = CallingHours()
        if campaign is not None:
            entry = await session.scalar(
                select(CallingListEntry).where(
                    CallingListEntry.campaign_id == campaign.id,
                    CallingListEntry.contact_id == contact.id,
                )
            )
            if entry is None:
                refuse(RefusalCode.NOT_FOUND, "this contact is not on this campaign's list")
            if entry.done:
                refuse(RefusalCode.MAX_ATTEMPTS, "this contact is done for this campaign")
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
                raise CallRefused(attempt_refusal)
            hours = campaign.calling_hours
        zones = contact_zones(phone.e164, contact.timezone, self.fallback_zone)
        hours_refusal = check_calling_hours(hours, zones, now)
        if hours_refusal is not None:
            raise CallRefused(hours_refusal)

        allowed = await self.allowed_caller_ids(session, volunteer, campaign)
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
        # indexes decide at insert time (see _constraint_refusal).
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
            pbx=pbx,
            state=CallState.REQUESTED,
            requested_at=now,
        )

    @staticmethod
    def _choose_phone(contact: Contact, phone_id: int | None) -> ContactPhone | None:
        if phone_id is not None:
            return next((phone for phone in contact.phones if phone.id == phone_id), None)
        usable = [p for p in contact.phones if not p.wrong_number and not p.do_not_call]
        candidates = usable or contact.phones
        return candidates[0] if candidates else None

    def volunteer_channel_for(self, extension: str) -> str:
        return self.volunteer_channel.format(extension=extension)

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
                if call.volunteer_id != user.id and user.role not in STAFF_ROLES:
                    raise NotAllowed("no such call")
                if call.state is CallState.ENDED:
                    return
                by: HangupBy = "volunteer" if call.volunteer_id == user.id else "operator"
                cancelled = await self._cancel_unclaimed(session, call, by)
                if cancelled:
                    await self.after_call_ended(session, call)
                else:
                    session.add(
                        HangupRequest(
                            call_id=call_id,
                            pbx=call.pbx,
                            requested_by=by,
                            actor_id=user.id,
                            requested_at=self.clock(),
                        )
                    )
                    await notify(session, HANGUP_REQUESTS, call.pbx)
                audit.record(
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
            self.publish_call(call)
        elif self.on_hangup_request is not None:
            self.on_hangup_request()

    async def _cancel_unclaimed(
        self, session: AsyncSession, call: CallAttempt, by: HangupBy
    ) -> bool:
        """End a request no worker has claimed yet, here and now.

        The one write to a call row outside the worker, and it cannot race
        it: both the worker's claim and this UPDATE require
        ``originate_sent_at IS NULL``, so exactly one of them wins.  It frees
        a volunteer whose PBX's worker is down instead of leaving them stuck
        on a call that can never start.
        """
        if call.state is not CallState.REQUESTED or call.originate_sent_at is not None:
            return False
        now = self.clock()
        outcome = (
            CallOutcome.HUNG_UP_BY_OPERATOR
            if by == "operator"
            else CallOutcome.HUNG_UP_BY_VOLUNTEER
        )
        ended = await session.execute(
            update(CallAttempt)
            .where(
                CallAttempt.id == call.id,
                CallAttempt.state == CallState.REQUESTED,
                CallAttempt.originate_sent_at.is_(None),
            )
            .values(
                state=CallState.ENDED,
                outcome=outcome,
                failure_reason="cancelled before it was dialed",
                ended_at=now,
            )
        )
        if not getattr(ended, "rowcount", 0):
            return False  # a worker claimed it meanwhile: ask it to hang up
        call.state, call.outcome, call.ended_at = CallState.ENDED, outcome, now
        call.failure_reason = "cancelled before it was dialed"
        return True

    # -- live state -------------------------------------------------------------

    def publish_call(
        self,
        call: CallAttempt,
        *,
        names: Mapping[str, str] | None = None,
        event_at: datetime | None = None,
    ) -> None:
        """Announce a call's state, with ``names`` (see :func:`call_names`) if known."""
        payload = call_payload(call)
        if event_at is not None:
            # When the PBX news behind this state was read: lets anyone
            # downstream (the panel, MQTT consumers, benchmarks) see the lag.
            payload["event_at"] = _iso(event_at)
        # Carried along so that a live panel, here or in another process,
        # shows the call without a database round trip of its own.
        known = names if names is not None else call_names(call)
        if known:
            payload.update(known)
        self.broadcaster.publish(
            "call", call.call_id, payload, present=call.state is not CallState.ENDED
        )
        status = volunteer_status(call.state, call.outcome)
        self.broadcaster.publish(
            "volunteer",
            str(call.volunteer_id),
            {
                "volunteer_id": call.volunteer_id,
                "status": status,
                "call_id": call.call_id,
                "since": _iso(self.clock()),
            },
        )

    async def final_states(self, call_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The last payload of each of these calls that has ended."""
        async with self.sessions() as session:
            rows = await session.scalars(
                select(CallAttempt).where(
                    CallAttempt.call_id.in_(call_ids), CallAttempt.state == CallState.ENDED
                )
            )
            return {call.call_id: call_payload(call) for call in rows}

    async def campaign_counters(self, campaign_id: int) -> dict[str, Any]:
        """Live numbers for one campaign: dials, reached, contact rate, outcomes.

        Two grouped queries on indexed columns, cheap enough to run after a
        batch of calls ends; the dashboard's full statistics live elsewhere.
        """
        async with self.sessions() as session:
            calls = (
                await session.execute(
                    select(
                        CallAttempt.outcome,
                        func.count(),
                        func.count(CallAttempt.contact_answered_at),
                    )
                    .where(CallAttempt.campaign_id == campaign_id)
                    .group_by(CallAttempt.outcome)
                )
            ).all()
            recorded = (
                await session.execute(
                    select(Disposition.outcome, func.count())
                    .where(Disposition.campaign_id == campaign_id)
                    .group_by(Disposition.outcome)
                )
            ).all()
        dials = sum(count for _, count, _ in calls)
        reached = sum(answered for _, _, answered in calls)
        return {
            "campaign_id": campaign_id,
            "dials": dials,
            "reached": reached,
            "contact_rate": round(reached / dials, 4) if dials else None,
            "live_calls": sum(count for outcome, count, _ in calls if outcome is None),
            "call_outcomes": {o.value: n for o, n, _ in calls if o is not None},
            "outcomes": {o.value: n for o, n in recorded},
        }

    async def publish_campaign_counters(self, campaign_ids: Iterable[int]) -> None:
        for campaign_id in set(campaign_ids):
            counters = await self.campaign_counters(campaign_id)
            self.broadcaster.publish("campaign", str(campaign_id), counters)

    # -- outcomes ---------------------------------------------------------------

    async def record_outcome(self, user_id: int, submission: OutcomeSubmission) -> OutcomeResult:
        """Store what the volunteer recorded, once, in one transaction.

        Safe to call again with the same ``submission_id`` (a double click,
        a retry after a timeout): the second call returns the first result.
        """
        result = await with_db_retry(lambda: self._record_outcome(user_id, submission))
        if not result.duplicate and result.campaign_id is not None:
            with contextlib.suppress(SQLAlchemyError, OSError):
                # Counters are a nicety: the outcome is stored either way.
                await self.publish_campaign_counters([result.campaign_id])
        return result

    async def _record_outcome(self, user_id: int, submission: OutcomeSubmission) -> OutcomeResult:
        now = self.clock()
        try:
            async with self.sessions.begin() as session:
                existing = await session.scalar(
                    select(Disposition).where(Disposition.submission_id == submission.submission_id)
                )
                if existing is not None:
                    if existing.volunteer_id != user_id:
                        raise NotAllowed("this submission belongs to someone else")
                    return OutcomeResult(existing.id, duplicate=True)
                disposition = await self._apply_outcome(session, user_id, submission, now)
                return OutcomeResult(disposition.id, False, disposition.campaign_id)
        except _AlreadyStored as stored:
            return OutcomeResult(stored.disposition_id, duplicate=True)
        except IntegrityError as error:
            if "submission_id" not in str(error.orig) and "call_attempt_id" not in str(error.orig):
                raise
        # A concurrent copy of the same submission won the race.
        async with self.sessions() as session:
            existing = await session.scalar(
                select(Disposition).where(
                    or_(
                        Disposition.submission_id == submission.submission_id,
                        and_(
                            Disposition.call_attempt_id.is_not(None),
                            Disposition.call_attempt_id
                            == select(CallAttempt.id)
                            .where(CallAttempt.call_id == submission.call_id)
                            .scalar_subquery(),
                        ),
                    )
                )
            )
        if existing is None:
            raise RetryableError("the submission conflicted with another; retry")
        return OutcomeResult(existing.id, duplicate=True)

    async def _apply_outcome(
        self, session: AsyncSession, user_id: int, submission: OutcomeSubmission, now: datetime
    ) -> Disposition:
        user = await session.get(User, user_id)
        if user is None:
            raise NotAllowed("unknown user")
        contact = await session.get(
            Contact, submission.contact_id, options=[selectinload(Contact.phones)]
        )
        if contact is None or not await self.can_access_contact(session, user, contact.id):
            raise NotAllowed("no such contact")
        call: CallAttempt | None = None
        if submission.call_id is not None:
            call = await session.scalar(
                select(CallAttempt).where(CallAttempt.call_id == submission.call_id)
            )
            if call is None or call.contact_id != contact.id:
                raise SubmissionInvalid({"call_id": "no such call for this contact"})
            if call.volunteer_id != user.id and user.role not in STAFF_ROLES:
                raise NotAllowed("this call belongs to another volunteer")
            earlier = await session.scalar(
                select(Disposition).where(Disposition.call_attempt_id == call.id)
            )
            if earlier is not None:
                if earlier.submission_id == submission.submission_id:
                    # A concurrent copy of this submission committed first.
                    raise _AlreadyStored(earlier.id)
                if not earlier.submission_id.startswith("auto-"):
                    raise SubmissionInvalid(
                        {"call_id": "an outcome was already recorded for this call"}
                    )
                # The automatic "absent" gives way to what the volunteer says.
                await session.delete(earlier)
                await session.flush()
        campaign_id = call.campaign_id if call is not None else submission.campaign_id
        campaign = await session.get(Campaign, campaign_id) if campaign_id is not None else None
        if campaign is not None and not await self.can_access_campaign(session, user, campaign):
            raise NotAllowed("you are not in this campaign's team")
        survey = campaign.survey if campaign is not None else SurveyDefinition()
        if submission.task is not None:
            assignee = await session.get(User, submission.task.assignee_id)
            if assignee is None or not assignee.is_active:
                raise SubmissionInvalid({"task.assignee_id": "no such user"})
        answers, new_numbers = validate_submission(submission, survey, now=now, region=self.region)

        disposition = Disposition(
            submission_id=submission.submission_id,
            call_attempt_id=call.id if call is not None else None,
            contact_id=contact.id,
            campaign_id=campaign.id if campaign is not None else None,
            volunteer_id=user.id,
            outcome=submission.outcome,
            consent=submission.consent,
            survey_answers=answers,
            comments=submission.comments,
            mobilized=submission.mobilized,
            support_score=submission.support_score,
            callback_at=submission.callback_at,
            created_at=now,
        )
        session.add(disposition)
        await session.flush()
        changes = self._enrich_contact(contact, call, submission, new_numbers, now)
        if submission.task is not None:
            session.add(
                FollowUpTask(
                    contact_id=contact.id,
                    assignee_id=submission.task.assignee_id,
                    created_by_id=user.id,
                    campaign_id=campaign.id if campaign is not None else None,
                    disposition_id=disposition.id,
                    description=submission.task.description,
                    due_on=submission.task.due_on,
                    status=TaskStatus.OPEN,
                    created_at=now,
                )
            )
        if campaign is not None:
            await self._update_list_after_outcome(session, campaign, contact, user, submission)
        audit.record(
            session,
            action="outcome.record",
            entity_type="contact",
            entity_id=contact.id,
            changes={
                "submission_id": submission.submission_id,
                "call_id": submission.call_id,
                "outcome": submission.outcome.value,
                **changes,
            },
            actor_id=user.id,
        )
        return disposition

    def _enrich_contact(
        self,
        contact: Contact,
        call: CallAttempt | None,
        submission: OutcomeSubmission,
        new_numbers: list[tuple[str, Any]],
        now: datetime,
    ) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        if submission.email and submission.email.strip().lower() != contact.email:
            contact.email = changes["email"] = submission.email.strip().lower()
        if submission.language and submission.language.strip().lower() != contact.language:
            contact.language = changes["language"] = submission.language.strip().lower()
        if (
            submission.support_score is not None
            and submission.support_score != contact.support_score
        ):
            contact.support_score = changes["support_score"] = submission.support_score
        known = {phone.e164 for phone in contact.phones}
        for e164, kind in new_numbers:
            if e164 not in known:
                contact.phones.append(ContactPhone(e164=e164, phone_type=kind, created_at=now))
                changes.setdefault("new_numbers", []).append(e164)
        if submission.outcome is DispositionOutcome.WRONG_NUMBER and call is not None:
            for phone in contact.phones:
                if phone.e164 == call.number_e164:
                    phone.wrong_number = True
                    changes["wrong_number"] = phone.e164
        if submission.do_not_call and not contact.do_not_call:
            contact.do_not_call = True
            contact.dnc_at = now
            contact.dnc_reason = submission.do_not_call_reason or "asked not to be called again"
            changes["do_not_call"] = True
        return changes

    async def _update_list_after_outcome(
        self,
        session: AsyncSession,
        campaign: Campaign,
        contact: Contact,
        user: User,
        submission: OutcomeSubmission,
    ) -> None:
        entry = await session.scalar(
            select(CallingListEntry).where(
                CallingListEntry.campaign_id == campaign.id,
                CallingListEntry.contact_id == contact.id,
            )
        )
        if entry is None:
            return
        if submission.callback_at is not None:
            # Back at the top of the same volunteer's list when due.
            entry.callback_at = submission.callback_at
            entry.volunteer_id = user.id
            entry.done = False
        elif submission.outcome is DispositionOutcome.ABSENT:
            entry.callback_at = None
            entry.done = entry.attempts >= campaign.max_attempts
        else:
            entry.callback_at = None
            entry.done = True
        if contact.do_not_call or all(p.wrong_number or p.do_not_call for p in contact.phones):
            entry.done = True

    # -- calls ending -----------------------------------------------------------

    async def after_call_ended(self, session: AsyncSession, call: CallAttempt) -> None:
        await self.after_calls_ended(session, [call])

    async def after_calls_ended(self, session: AsyncSession, calls: list[CallAttempt]) -> None:
        """Bookkeeping for ended calls, in the worker's transaction.

        Takes the calls of a whole batch, and costs at most three statements
        whatever its size: one query for their list entries and campaigns,
        one executemany that counts the attempts and schedules the retries,
        one that inserts the automatic dispositions.  The entries are
        updated relative to what they hold (``attempts = attempts + n``), so
        an outcome recorded meanwhile on the same entry is not overwritten.
        """
        in_campaigns = [c for c in calls if c.campaign_id is not None and c.outcome is not None]
        if not in_campaigns:
            return
        pairs = {(c.campaign_id, c.contact_id) for c in in_campaigns}
        found = await session.execute(
            select(
                CallingListEntry.id,
                CallingListEntry.campaign_id,
                CallingListEntry.contact_id,
                Campaign.max_attempts,
                Campaign.retry_delay_minutes,
            )
            .join(Campaign, Campaign.id == CallingListEntry.campaign_id)
            .where(tuple_(CallingListEntry.campaign_id, CallingListEntry.contact_id).in_(pairs))
        )
        entries: dict[tuple[int | None, int], _EntryChange] = {
            (campaign_id, contact_id): _EntryChange(
                entry_id, max_attempts, timedelta(minutes=retry_delay_minutes)
            )
            for entry_id, campaign_id, contact_id, max_attempts, retry_delay_minutes in found
        }
        dispositions: list[dict[str, Any]] = []
        for call in in_campaigns:
            assert call.outcome is not None
            entry = entries.get((call.campaign_id, call.contact_id))
            if entry is None:
                continue
            ended = call.ended_at or self.clock()
            # The contact's phone rang (or may have): that is an attempt on
            # them, even when the volunteer or an operator cut it short.
            if call.outcome in CONTACT_DIALED or call.contact_channel is not None:
                entry.attempt(ended)
            if call.outcome in AUTOMATIC_ABSENT:
                dispositions.append(
                    {
                        "submission_id": f"auto-{call.call_id}",
                        "call_attempt_id": call.id,
                        "contact_id": call.contact_id,
                        "campaign_id": call.campaign_id,
                        "volunteer_id": call.volunteer_id,
                        "outcome": DispositionOutcome.ABSENT,
                        "comments": f"automatic: {call.outcome.value}",
                        "created_at": ended,
                    }
                )
                entry.close_when_out_of_attempts()
        changes = [entry.params() for entry in entries.values() if entry.changed]
        if changes:
            await session.execute(_RECORD_ATTEMPTS, changes)
        if dispositions:
            await session.execute(insert(_DISPOSITIONS), dispositions)

    # -- calling lists ----------------------------------------------------------

    async def next_contact(
        self, volunteer_id: int, campaign_id: int, *, list_owner_id: int | None = None
    ) -> NextContact:
        """The next contact to call from a list: due call-backs, never called, retries.

        ``list_owner_id`` opens a teammate's list ("Others"); it must be in
        the same campaign.  DNC and out-of-hours contacts are skipped; an
        empty answer says why.
        """
        now = self.clock()
        owner_id = list_owner_id or volunteer_id
        async with self.sessions() as session:
            user = await session.get(User, volunteer_id)
            campaign = await session.get(Campaign, campaign_id)
            if (
                user is None
                or campaign is None
                or not await self.can_access_campaign(session, user, campaign)
            ):
                raise NotAllowed("you are not in this campaign's team")
            if owner_id != volunteer_id:
                owner = await session.get(User, owner_id)
                if owner is None or not await self.can_access_campaign(session, owner, campaign):
                    raise NotAllowed("that volunteer is not in this campaign's team")
            live_contacts = select(CallAttempt.contact_id).where(
                CallAttempt.state.in_([state.value for state in LIVE_CALL_STATES])
            )
            rows = (
                await session.execute(
                    select(CallingListEntry, Contact)
                    .join(Contact, Contact.id == CallingListEntry.contact_id)
                    .options(selectinload(Contact.phones))
                    .where(
                        CallingListEntry.campaign_id == campaign_id,
                        CallingListEntry.volunteer_id == owner_id,
                        CallingListEntry.done.is_(False),
                        Contact.do_not_call.is_(False),
                        CallingListEntry.contact_id.not_in(live_contacts),
                    )
                    .order_by(
                        CallingListEntry.callback_at.is_(None),
                        CallingListEntry.callback_at,
                        CallingListEntry.attempts,
                        CallingListEntry.next_attempt_at.is_not(None),
                        CallingListEntry.next_attempt_at,
                        CallingListEntry.id,
                    )
                )
            ).all()
            total = await session.scalar(
                select(func.count())
                .select_from(CallingListEntry)
                .where(
                    CallingListEntry.campaign_id == campaign_id,
                    CallingListEntry.volunteer_id == owner_id,
                )
            )
        callbacks, fresh, retries = [], [], []
        earliest_hours: datetime | None = None
        earliest_retry: datetime | None = None
        for entry, contact in rows:
            phones = [
                p
                for p in contact.phones
                if not p.wrong_number and not p.do_not_call and self.policy.check(p.e164) is None
            ]
            if not phones:
                continue
            if entry.callback_at is not None and entry.callback_at > now:
                earliest_retry = _earliest(earliest_retry, entry.callback_at)
                continue
            if entry.callback_at is None and entry.attempts >= campaign.max_attempts:
                continue
            ready = entry.next_attempt_at
            if entry.callback_at is None and ready is not None and ready > now:
                earliest_retry = _earliest(earliest_retry, ready)
                continue
            zones = contact_zones(phones[0].e164, contact.timezone, self.fallback_zone)
            opening = next_opening(campaign.calling_hours, zones, now)
            if opening != now:
                if opening is not None:
                    earliest_hours = _earliest(earliest_hours, opening)
                continue
            if entry.callback_at is not None:
                callbacks.append(contact)
            elif entry.attempts == 0:
                fresh.append(contact)
            else:
                retries.append(contact)
        for bucket, is_callback in ((callbacks, True), (fresh, False), (retries, False)):
            if bucket:
                return NextContact(bucket[0], is_callback=is_callback)
        if not total:
            return NextContact(None, "empty", "no contacts are assigned to this list")
        if earliest_hours is None and earliest_retry is None:
            return NextContact(None, "all_done", "every contact on this list is done")
        if earliest_retry is None or (
            earliest_hours is not None and earliest_hours <= earliest_retry
        ):
            assert earliest_hours is not None
            return NextContact(
                None,
                "outside_hours",
                "all remaining contacts are outside calling hours until "
                f"{earliest_hours:%H:%M} UTC",
                earliest_hours,
            )
        return NextContact(
            None,
            "waiting_for_retry",
            f"all remaining contacts are waiting for a retry or call-back until "
            f"{earliest_retry:%H:%M} UTC",
            earliest_retry,
        )


@dataclass
class _EntryChange:
    """What the calls ending in one batch do to one calling-list entry.

    Applied in the calls' order, as if each call had updated the entry in
    turn; stored by :data:`_RECORD_ATTEMPTS` relative to the row's values.
    """

    entry_id: int
    max_attempts: int
    retry_delay: timedelta
    attempts_added: int = 0
    attempt_at: datetime | None = None
    # A call-back due at or before this was made.
    called_until: datetime | None = None
    # done := (attempts before + this) >= max_attempts; None leaves done alone.
    closing_attempts: int | None = None

    @property
    def changed(self) -> bool:
        return self.attempts_added > 0 or self.closing_attempts is not None

    def attempt(self, ended: datetime) -> None:
        self.attempts_added += 1
        self.attempt_at = ended
        if self.called_until is None or ended > self.called_until:
            self.called_until = ended

    def close_when_out_of_attempts(self) -> None:
        self.closing_attempts = self.attempts_added

    def params(self) -> dict[str, Any]:
        return {
            "entry_id": self.entry_id,
            "attempts_added": self.attempts_added,
            "attempt_at": self.attempt_at,
            "retry_at": None if self.attempt_at is None else self.attempt_at + self.retry_delay,
            "called_until": self.called_until,
            # attempts before + closing_attempts >= max  <=>  attempts before >= this
            "done_from": None
            if self.closing_attempts is None
            else self.max_attempts - self.closing_attempts,
        }


_ENTRIES = cast(Table, CallingListEntry.__table__)
_DISPOSITIONS = cast(Table, Disposition.__table__)
_RECORD_ATTEMPTS = (
    update(_ENTRIES)
    .where(_ENTRIES.c.id == bindparam("entry_id"))
    .values(
        attempts=_ENTRIES.c.attempts + bindparam("attempts_added", type_=Integer()),
        last_attempt_at=func.coalesce(
            bindparam("attempt_at", type_=_ENTRIES.c.last_attempt_at.type),
            _ENTRIES.c.last_attempt_at,
        ),
        next_attempt_at=func.coalesce(
            bindparam("retry_at", type_=_ENTRIES.c.next_attempt_at.type),
            _ENTRIES.c.next_attempt_at,
        ),
        callback_at=case(
            (
                _ENTRIES.c.callback_at
                <= bindparam("called_until", type_=_ENTRIES.c.callback_at.type),
                null(),
            ),
            else_=_ENTRIES.c.callback_at,
        ),
        done=case(
            (bindparam("done_from", type_=Integer()).is_(None), _ENTRIES.c.done),
            else_=_ENTRIES.c.attempts >= bindparam("done_from", type_=Integer()),
        ),
    )
)


def _earliest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate < current else current


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def volunteer_status(state: CallState, outcome: CallOutcome | None) -> str:
    if state in (CallState.REQUESTED, CallState.RINGING_VOLUNTEER):
        return "ringing"
    if state is CallState.ENDED:
        return "wrap_up" if outcome is CallOutcome.COMPLETED else "idle"
    return "on_call"


def call_names(call: CallAttempt) -> dict[str, str] | None:
    """The volunteer's and the contact's display names, if ``call`` has them loaded.

    Never loads them: a lazy load outside a session is an error here.
    """
    if {"volunteer", "contact"} & inspect(call).unloaded:
        return None
    volunteer, contact = call.volunteer, call.contact
    if volunteer is None or contact is None:
        return None
    return {
        "volunteer_name": volunteer.display_name or volunteer.username,
        "contact_name": contact.full_name,
    }


def call_payload(call: CallAttempt) -> dict[str, Any]:
    return {
        "call_id": call.call_id,
        "state": call.state.value,
        "outcome": call.outcome.value if call.outcome else None,
        "failure_reason": call.failure_reason,
        "volunteer_id": call.volunteer_id,
        "contact_id": call.contact_id,
        "campaign_id": call.campaign_id,
        "number": call.number_e164,
        "caller_id": call.caller_id,
        "requested_at": _iso(call.requested_at),
        "volunteer_answered_at": _iso(call.volunteer_answered_at),
        "contact_answered_at": _iso(call.contact_answered_at),
        "ended_at": _iso(call.ended_at),
        "dial_status": call.dial_status,
        "needs_review": call.needs_review,
    }
