"""Calling lists: which contact a volunteer calls next, and why none when none.

A list holds thousands of contacts.  The database orders it (due
call-backs, never called, retries) and hands over its first few; the rules
that need Python (the dialing policy, the contact's time zones and the
calling hours) stop at the first contact that may be called now.  Only
when none of those may be is the rest of the open list read, and only when
none at all may be, its waiting entries, to say until when.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, Row, Select, and_, bindparam, case, exists, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import joinedload

from dialer.domain.compliance import DialingPolicy, contact_zones, next_opening
from dialer.domain.survey import CallingHours
from dialer.domain.vocabulary import CallState
from dialer.services.access import can_access_campaign
from dialer.services.common import Clock, NotAllowed
from dialer.store.models import (
    CallAttempt,
    CallingListEntry,
    Campaign,
    Contact,
    ContactPhone,
    TeamMember,
    User,
    utcnow,
)

# The list's first rows read (one per usable number of a contact); they
# nearly always hold the contact to call.
BATCH = 50


# Why a list offers no contact (NextContact.empty_reason).
EMPTY_REASONS = ("all_done", "outside_hours", "waiting_for_retry", "empty")


@dataclass(frozen=True, slots=True)
class NextContact:
    contact: Contact | None
    # Why the list is empty: one of EMPTY_REASONS.
    empty_reason: str | None = None
    message: str = ""
    available_at: datetime | None = None
    is_callback: bool = False


@dataclass(frozen=True, slots=True)
class _CampaignAccess:
    row: Campaign
    # The users asked about who may work on it.
    allowed: frozenset[int]


@dataclass(frozen=True, slots=True)
class _Candidate:
    """An open entry of the list and its contact's numbers not flagged wrong or do-not-call."""

    contact_id: int
    timezone: str | None
    is_callback: bool
    numbers: tuple[str, ...]


class CallingLists:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        policy: DialingPolicy,
        fallback_zone: str = "UTC",
        clock: Clock = utcnow,
    ) -> None:
        self.sessions = sessions
        self.policy = policy
        self.fallback_zone = fallback_zone
        self.clock = clock

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
            # Reads only, each a statement of its own: no transaction, so no
            # BEGIN and ROLLBACK round trips, before every call a volunteer makes.
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            campaign = await self._campaign_for(session, campaign_id, {volunteer_id, owner_id})
            if campaign is None or volunteer_id not in campaign.allowed:
                raise NotAllowed("you are not in this campaign's team")
            if owner_id not in campaign.allowed:
                raise NotAllowed("that volunteer is not in this campaign's team")
            hours = _Hours(campaign.row.calling_hours, now, self.fallback_zone)
            params = _list_params(campaign.row, owner_id, now)
            async with aclosing(_candidates(_in_batches(session, _READY, params))) as candidates:
                async for candidate in candidates:
                    if not self._callable_now(candidate, hours):
                        continue
                    contact = await session.get(
                        Contact, candidate.contact_id, options=[joinedload(Contact.phones)]
                    )
                    if contact is not None:  # else deleted since: the next one
                        return NextContact(contact, is_callback=candidate.is_callback)
            if not await session.scalar(
                select(
                    exists().where(
                        CallingListEntry.campaign_id == campaign_id,
                        CallingListEntry.volunteer_id == owner_id,
                    )
                )
            ):
                return NextContact(None, "empty", "no contacts are assigned to this list")
            earliest_retry = await self._earliest_retry(session, campaign.row, owner_id, now)
        earliest_hours = hours.earliest
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

    @staticmethod
    async def _campaign_for(
        session: AsyncSession, campaign_id: int, user_ids: set[int]
    ) -> _CampaignAccess | None:
        """The campaign, and which of ``user_ids`` may work on it, in one round
        trip: this runs before every call a volunteer makes."""
        rows = (
            await session.execute(
                _CAMPAIGN_AND_USERS, {"campaign_id": campaign_id, "user_ids": list(user_ids)}
            )
        ).all()
        if not rows:
            return None
        allowed = set()
        for campaign, user, is_member in rows:
            # The user's teams, as far as this campaign goes.
            teams = {campaign.team_id} if is_member and campaign.team_id is not None else set()
            if await can_access_campaign(session, user, campaign, teams):
                allowed.add(user.id)
        return _CampaignAccess(rows[0][0], frozenset(allowed))

    def _callable_now(self, candidate: _Candidate, hours: _Hours) -> bool:
        """Whether the contact may be called now; if not, ``hours`` learns when.

        The contact needs a number the policy lets through; the first one
        gives its time zones (unless it has its own).  The policy is the
        costly check: it is skipped when the answer could not change the
        outcome (a single number, in zones that open no sooner than the
        earliest opening already seen).
        """
        if len(candidate.numbers) == 1:
            [number] = candidate.numbers
            opening = hours.opening(contact_zones(number, candidate.timezone, hours.fallback))
            if not hours.matters(opening) or self.policy.check(number) is not None:
                return False
        else:
            usable = next(
                (number for number in candidate.numbers if self.policy.check(number) is None),
                None,
            )
            if usable is None:
                return False
            opening = hours.opening(contact_zones(usable, candidate.timezone, hours.fallback))
        return hours.note(opening)

    async def _earliest_retry(
        self, session: AsyncSession, campaign: Campaign, owner_id: int, now: datetime
    ) -> datetime | None:
        """When the first contact waiting for a retry or a call-back (with a
        number the policy lets through) comes due."""
        params = _list_params(campaign, owner_id, now)
        async with aclosing(_in_batches(session, _WAITING, params)) as rows:
            async for row in rows:
                if row.due_at is not None and self.policy.check(row.number) is None:
                    due: datetime = row.due_at
                    return due
        return None


# The campaign, each user asked about, and whether that user is in the
# campaign's team; built once, as _READY is, for the same reason.
_CAMPAIGN_AND_USERS = (
    select(
        Campaign,
        User,
        exists().where(TeamMember.user_id == User.id, TeamMember.team_id == Campaign.team_id),
    )
    .join_from(Campaign, User, true())
    .where(
        Campaign.id == bindparam("campaign_id", type_=Integer),
        User.id.in_(bindparam("user_ids", expanding=True)),
    )
)


_Entries = Select[tuple[int, int, str | None, bool, datetime | None, str]]


def _open_entries(*, ready: bool) -> _Entries:
    """The list's open entries, a row per usable number (not flagged wrong or
    do-not-call) of a contact not on the do-not-call list nor being called.

    ``ready``: those that may be called now as far as the list goes (a due
    call-back, or attempts left and no retry delay running), in the list's
    order: call-backs by time, then fewest attempts first, then the oldest
    retry; otherwise those waiting for a call-back or a retry, soonest first.
    The order is the one ix_calling_list_next keeps (NULLS LAST is
    callback_at's ascending default).

    The campaign, the list's owner, the campaign's attempts and the time are
    bound parameters (:func:`_list_params`): the statements are built once,
    at import, since building and keying one this size took about 3 ms of
    CPU, twice what the database took to answer it, before every call.
    """
    entry = CallingListEntry
    now = bindparam("now", type_=entry.callback_at.type)
    attempts_left = and_(
        entry.callback_at.is_(None), entry.attempts < bindparam("max_attempts", type_=Integer)
    )
    due_at = case((entry.callback_at.is_not(None), entry.callback_at), else_=entry.next_attempt_at)
    statement = (
        select(
            entry.id.label("entry_id"),
            Contact.id.label("contact_id"),
            Contact.timezone,
            entry.callback_at.is_not(None).label("is_callback"),
            due_at.label("due_at"),
            ContactPhone.e164.label("number"),
        )
        .join(Contact, Contact.id == entry.contact_id)
        .join(
            ContactPhone,
            and_(
                ContactPhone.contact_id == Contact.id,
                ContactPhone.wrong_number.is_(False),
                ContactPhone.do_not_call.is_(False),
            ),
        )
        .where(
            entry.campaign_id == bindparam("campaign_id", type_=Integer),
            entry.volunteer_id == bindparam("owner_id", type_=Integer),
            ~entry.done,
            Contact.do_not_call.is_(False),
            ~exists().where(
                CallAttempt.contact_id == entry.contact_id, CallAttempt.state != CallState.ENDED
            ),
        )
    )
    if ready:
        return statement.where(
            or_(
                and_(entry.callback_at.is_not(None), entry.callback_at <= now),
                and_(
                    attempts_left,
                    or_(entry.next_attempt_at.is_(None), entry.next_attempt_at <= now),
                ),
            )
        ).order_by(
            entry.callback_at.asc().nulls_last(),
            entry.attempts,
            entry.next_attempt_at.asc().nulls_first(),
            entry.id,
            ContactPhone.id,
        )
    return statement.where(
        or_(entry.callback_at > now, and_(attempts_left, entry.next_attempt_at > now))
    ).order_by(due_at, entry.id, ContactPhone.id)


def _list_params(campaign: Campaign, owner_id: int, now: datetime) -> dict[str, object]:
    return {
        "campaign_id": campaign.id,
        "owner_id": owner_id,
        "max_attempts": campaign.max_attempts,
        "now": now,
    }


# (first batch, the rest): the LIMIT is what makes the database plan for the
# first rows (walking ix_calling_list_next and stopping) rather than for them all.
_READY: tuple[_Entries, _Entries] = (
    _open_entries(ready=True).limit(BATCH),
    _open_entries(ready=True).offset(BATCH),
)
_WAITING: tuple[_Entries, _Entries] = (
    _open_entries(ready=False).limit(BATCH),
    _open_entries(ready=False).offset(BATCH),
)
_Entry = Row[tuple[int, int, str | None, bool, datetime | None, str]]


async def _in_batches(
    session: AsyncSession, statements: tuple[_Entries, _Entries], params: dict[str, object]
) -> AsyncGenerator[_Entry, None]:
    """The rows of ``statements``: a first batch, then the rest only if asked for.

    The rest is read in a statement of its own, so a list changed meanwhile
    may show an entry twice or skip one; the list is read again on the next call.
    """
    first_batch, rest = statements
    first = (await session.execute(first_batch, params)).all()
    for row in first:
        yield row
    if len(first) == BATCH:
        for row in await session.execute(rest, params):
            yield row


async def _candidates(rows: AsyncIterator[_Entry]) -> AsyncGenerator[_Candidate, None]:
    """The rows of :func:`_open_entries` (``ready``), a candidate per entry."""
    numbers: list[str] = []
    last: _Entry | None = None
    async for row in rows:
        if last is not None and row.entry_id != last.entry_id:
            yield _Candidate(last.contact_id, last.timezone, last.is_callback, tuple(numbers))
            numbers = []
        last = row
        numbers.append(row.number)
    if last is not None:
        yield _Candidate(last.contact_id, last.timezone, last.is_callback, tuple(numbers))


class _Hours:
    """The calling hours at ``now``, each zone set's next opening worked out once,
    and the earliest opening among the contacts seen outside hours."""

    def __init__(self, calling_hours: CallingHours, now: datetime, fallback: str) -> None:
        self.calling_hours = calling_hours
        self.now = now
        # The zone of a contact whose number tells none.
        self.fallback = fallback
        self.earliest: datetime | None = None
        self._openings: dict[tuple[ZoneInfo, ...], datetime | None] = {}

    def opening(self, zones: tuple[ZoneInfo, ...]) -> datetime | None:
        if zones not in self._openings:
            self._openings[zones] = next_opening(self.calling_hours, zones, self.now)
        return self._openings[zones]

    def matters(self, opening: datetime | None) -> bool:
        """Whether a contact opening then is callable now or opens sooner than any seen yet."""
        return opening is not None and (self.earliest is None or opening < self.earliest)

    def note(self, opening: datetime | None) -> bool:
        """True when ``opening`` is now; otherwise keep it if it is the earliest yet."""
        if opening == self.now:
            return True
        if opening is not None and (self.earliest is None or opening < self.earliest):
            self.earliest = opening
        return False
