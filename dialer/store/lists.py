"""Writes ``calling_list_entries``; nothing else does.

An entry puts one contact on one volunteer's list in a campaign, with its
attempts, retry time, call-back and whether it is done.  Entries are added
by an import (``add_entries``, one executemany; the bulk import's
``add_entries_from``, one INSERT ... SELECT), handed to volunteers
(``assign``), updated by the calls that end (``record_attempts``) and closed
or kept by an outcome (``settle``).  Callers own the transaction; every
function here sends its SQL before it returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Integer, Table, bindparam, case, func, insert, null, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.selectable import TextualSelect

from dialer.store.models import CallingListEntry


@dataclass
class AttemptTally:
    """What the calls ending in one batch do to one calling-list entry.

    Applied in the calls' order, as if each call had updated the entry in
    turn; stored by :func:`record_attempts` relative to the row's values, so
    an outcome recorded meanwhile on the same entry is not overwritten.
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


async def record_attempts(session: AsyncSession, tallies: Sequence[AttemptTally]) -> None:
    """Store the tallies that changed anything, in one executemany."""
    changes = [tally.params() for tally in tallies if tally.changed]
    if changes:
        await session.execute(_RECORD_ATTEMPTS, changes)


async def settle(
    session: AsyncSession,
    entry: CallingListEntry,
    *,
    callback_at: datetime | None,
    volunteer_id: int | None,
    done: bool,
) -> None:
    """Set what an outcome decided for this entry."""
    entry.callback_at = callback_at
    entry.volunteer_id = volunteer_id
    entry.done = done
    await session.flush()


async def add_entries(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert one entry per row, every column given, in one executemany."""
    await session.execute(insert(CallingListEntry), rows)


async def add_entries_from(
    session: AsyncSession, columns: Sequence[str], rows: TextualSelect
) -> list[int | None]:
    """Insert the entries a query gives, its columns named by ``columns``, in one
    statement; each new entry's volunteer, in the query's order."""
    result = await session.execute(
        insert(CallingListEntry)
        .from_select(list(columns), rows, include_defaults=False)
        .returning(CallingListEntry.volunteer_id)
    )
    return list(result.scalars())


async def assign(
    session: AsyncSession,
    assignments: Iterable[tuple[CallingListEntry, int | None]],
    *,
    at: datetime,
) -> None:
    """Give each entry to its volunteer (None: unassigned), all in one flush."""
    for entry, volunteer_id in assignments:
        entry.volunteer_id = volunteer_id
        entry.assigned_at = at
    await session.flush()
