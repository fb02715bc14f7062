"""Owns ``campaign_counters`` and ``campaign_counter_deltas``: the dashboard's running totals.

No Python writes them.  The database does, through the triggers migration
0012 installs on ``call_attempts``, ``dispositions`` and
``calling_list_entries``: in the transaction of every INSERT, UPDATE and
DELETE of those tables, whoever runs it (each table's own writer, a
set-based import merge, a foreign key's cascade), the totals the change
moves are changed with it.  A trigger sees the old and the new row, which
the store's executemany UPDATEs do not, so no writer has to say what it
changed.  This module names the totals, reads them, and recounts them the
slow way for tests and checks (:func:`recount`).

The totals, one amount per (campaign, volunteer, name); volunteer 0 is
nobody (the list's counts, an outcome whose volunteer left):

- the campaign's calls, per volunteer: ``dials``, ``reached`` (the contact
  answered), ``talk_us`` (microseconds between answer and end, of the calls
  that ended), ``call:<outcome>`` (how calls ended);
- its outcomes, per volunteer: ``outcome:<outcome>``, ``mobilized``;
- its list, under volunteer 0: ``list_total``, ``list_done``,
  ``callbacks_pending`` (a call-back set on an entry not done).

On PostgreSQL a trigger appends its change to ``campaign_counter_deltas``
rather than adding it to ``campaign_counters``: an INSERT takes no row lock,
so a long import transaction adding thousands of entries to a campaign's
list does not hold up every volunteer's outcome on that campaign until it
commits, and transactions counting in different orders cannot deadlock.
One trigger run in 32 folds the campaign's deltas into
``campaign_counters`` (``campaign_counters_fold``, under a transaction-level
advisory lock it only tries, so folding never waits either), which keeps
the deltas a reader sums to a few hundred rows.  SQLite has one writer at a
time: its triggers add to ``campaign_counters`` directly, and the deltas
table stays empty there.

Live calls are not counted: the dashboard reads them (a partial index holds
only the live ones) to know who is on a call and for how long.

A SQLite migration that rebuilds one of the three counted tables (Alembic's
batch mode copies the table) drops its triggers with it; such a migration
must create them again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, cast, func, literal, null, select, text, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from dialer.store.models import (
    CallAttempt,
    CallingListEntry,
    CampaignCounter,
    CampaignCounterDelta,
    Disposition,
    UTCDateTime,
)

DIALS = "dials"
REACHED = "reached"
TALK_US = "talk_us"
CALL_OUTCOME = "call:"
OUTCOME = "outcome:"
MOBILIZED = "mobilized"
LIST_TOTAL = "list_total"
LIST_DONE = "list_done"
CALLBACKS_PENDING = "callbacks_pending"
NOBODY = 0

# Marks the live calls' rows in read()'s one statement; not a counter's name.
_LIVE = "live"
_MICROSECOND = timedelta(microseconds=1)

Amounts = dict[tuple[int, str], int]


@dataclass(slots=True)
class CampaignCounts:
    """A campaign's totals, and its live calls, read in one statement."""

    # (volunteer, name) -> amount; zero amounts left out.
    amounts: Amounts = field(default_factory=dict)
    # (volunteer, when the contact answered), one per live call.
    live_calls: list[tuple[int, datetime | None]] = field(default_factory=list)


async def read(session: AsyncSession, campaign_id: int) -> CampaignCounts:
    """The campaign's totals and live calls, from one snapshot.

    Sums a few hundred rows per volunteer at most, whatever the number of
    calls; the live calls come from the partial index on them.
    """
    counted = union_all(
        select(CampaignCounter.volunteer_id, CampaignCounter.name, CampaignCounter.amount).where(
            CampaignCounter.campaign_id == campaign_id
        ),
        select(
            CampaignCounterDelta.volunteer_id,
            CampaignCounterDelta.name,
            CampaignCounterDelta.amount,
        ).where(CampaignCounterDelta.campaign_id == campaign_id),
    ).subquery()
    # The live calls first: their timestamp column gives the union its type.
    statement = union_all(
        select(
            CallAttempt.volunteer_id,
            literal(_LIVE).label("name"),
            cast(literal(1), BigInteger).label("amount"),
            CallAttempt.contact_answered_at,
        ).where(CallAttempt.campaign_id == campaign_id, CallAttempt.ended_at.is_(None)),
        select(
            counted.c.volunteer_id,
            counted.c.name,
            cast(func.sum(counted.c.amount), BigInteger),
            cast(null(), UTCDateTime()),
        ).group_by(counted.c.volunteer_id, counted.c.name),
    )
    counts = CampaignCounts()
    for volunteer_id, name, amount, answered_at in await session.execute(statement):
        if name == _LIVE:
            counts.live_calls.append((volunteer_id, answered_at))
        elif amount:
            counts.amounts[volunteer_id, name] = int(amount)
    return counts


async def fold(session: AsyncSession, campaign_id: int) -> None:
    """Fold the campaign's deltas into its totals now (PostgreSQL; nothing to fold on SQLite).

    The triggers fold on their own; this is for tests and benchmarks that
    want the folded state.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            text("SELECT campaign_counters_fold(:campaign_id)"), {"campaign_id": campaign_id}
        )


async def recount(session: AsyncSession, campaign_id: int) -> Amounts:
    """The totals counted again from every row of the campaign: what :func:`read` must equal.

    Reads all the campaign's calls, outcomes and entries; for tests and checks.
    """
    amounts: Counter[tuple[int, str]] = Counter()
    calls = await session.execute(
        select(
            CallAttempt.volunteer_id,
            CallAttempt.contact_answered_at,
            CallAttempt.ended_at,
            CallAttempt.outcome,
        ).where(CallAttempt.campaign_id == campaign_id)
    )
    for volunteer_id, answered_at, ended_at, call_outcome in calls:
        amounts[volunteer_id, DIALS] += 1
        if answered_at is not None:
            amounts[volunteer_id, REACHED] += 1
            if ended_at is not None:
                amounts[volunteer_id, TALK_US] += max(0, (ended_at - answered_at) // _MICROSECOND)
        if call_outcome is not None:
            amounts[volunteer_id, CALL_OUTCOME + call_outcome.value] += 1
    outcomes = await session.execute(
        select(Disposition.volunteer_id, Disposition.outcome, Disposition.mobilized).where(
            Disposition.campaign_id == campaign_id
        )
    )
    for outcome_by, outcome, mobilized in outcomes:
        volunteer = outcome_by if outcome_by is not None else NOBODY
        amounts[volunteer, OUTCOME + outcome.value] += 1
        if mobilized:
            amounts[volunteer, MOBILIZED] += 1
    entries = await session.execute(
        select(CallingListEntry.done, CallingListEntry.callback_at).where(
            CallingListEntry.campaign_id == campaign_id
        )
    )
    for done, callback_at in entries:
        amounts[NOBODY, LIST_TOTAL] += 1
        if done:
            amounts[NOBODY, LIST_DONE] += 1
        elif callback_at is not None:
            amounts[NOBODY, CALLBACKS_PENDING] += 1
    return {key: amount for key, amount in amounts.items() if amount}
