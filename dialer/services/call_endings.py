"""Bookkeeping for ended calls, in the worker's transaction that ends them.

A call that reached (or may have reached) its contact counts as an attempt
on the calling-list entry and schedules the retry; one that never reached
them gets an automatic "absent" disposition, which what the volunteer
records later replaces.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from dialer.domain.vocabulary import CallOutcome
from dialer.store import lists, outcomes
from dialer.store.lists import AttemptTally
from dialer.store.models import CallAttempt, CallingListEntry, Campaign

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


async def record_call_endings(
    session: AsyncSession, calls: list[CallAttempt], now: datetime
) -> None:
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
    tallies: dict[tuple[int | None, int], AttemptTally] = {
        (campaign_id, contact_id): AttemptTally(
            entry_id, max_attempts, timedelta(minutes=retry_delay_minutes)
        )
        for entry_id, campaign_id, contact_id, max_attempts, retry_delay_minutes in found
    }
    absents: list[tuple[CallAttempt, CallOutcome, datetime]] = []
    for call in in_campaigns:
        outcome = call.outcome
        tally = tallies.get((call.campaign_id, call.contact_id))
        if tally is None or outcome is None:
            continue
        ended = call.ended_at or now
        # The contact's phone rang (or may have): that is an attempt on
        # them, even when the volunteer or an operator cut it short.
        if outcome in CONTACT_DIALED or call.contact_channel is not None:
            tally.attempt(ended)
        if outcome in AUTOMATIC_ABSENT:
            absents.append((call, outcome, ended))
            tally.close_when_out_of_attempts()
    await lists.record_attempts(session, list(tallies.values()))
    await outcomes.add_automatic_absents(session, absents)
