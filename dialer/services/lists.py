"""Calling lists: which contact a volunteer calls next, and why none when none."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from dialer.domain.compliance import DialingPolicy, contact_zones, next_opening
from dialer.domain.vocabulary import LIVE_CALL_STATES
from dialer.services.access import can_access_campaign
from dialer.services.common import Clock, NotAllowed
from dialer.store.models import CallAttempt, CallingListEntry, Campaign, Contact, User, utcnow


@dataclass(frozen=True, slots=True)
class NextContact:
    contact: Contact | None
    # Why the list is empty: all_done, outside_hours, waiting_for_retry, empty.
    empty_reason: str | None = None
    message: str = ""
    available_at: datetime | None = None
    is_callback: bool = False


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
            user = await session.get(User, volunteer_id)
            campaign = await session.get(Campaign, campaign_id)
            if (
                user is None
                or campaign is None
                or not await can_access_campaign(session, user, campaign)
            ):
                raise NotAllowed("you are not in this campaign's team")
            if owner_id != volunteer_id:
                owner = await session.get(User, owner_id)
                if owner is None or not await can_access_campaign(session, owner, campaign):
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


def _earliest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate < current else current
