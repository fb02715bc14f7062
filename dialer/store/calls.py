"""Writes ``call_attempts``, ``hangup_requests`` and ``supervision_requests``;
nothing else does.

A call row is inserted by a click (``add_request``), claimed by its PBX's
worker (``claim_requests``), updated as the PBX reports (``store_calls``)
and ended by the worker, or here when nobody dialed it yet
(``cancel_unclaimed``, ``end_expired_requests``, ``end_call``).  A hang-up
is a row its worker claims once (``claim_hangup_requests``), and so is an
organizer's listen, whisper or barge (``claim_supervision_requests``).  An answered
call whose outcome the volunteer chose not to record is marked here
(``skip_outcome``), and so is one whose disposition is stored
(``sync_outcome_recorded``); until then it is "pending"
(``pending_outcome_filter``).
Callers own
the transaction; every function here sends its SQL before it returns.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    bindparam,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from dialer.domain.ports import CallSnapshot, HangupBy, SpyMode
from dialer.domain.vocabulary import CONVERSATION_ENDS, CallOutcome, CallState
from dialer.store.models import CallAttempt, Disposition, HangupRequest, SupervisionRequest

# What a PBX snapshot carries, column for column.
_SNAPSHOT_COLUMNS = (
    "volunteer_channel",
    "volunteer_uniqueid",
    "contact_channel",
    "contact_uniqueid",
    "linkedid",
    "volunteer_answered_at",
    "contact_answered_at",
    "ended_at",
    "dial_status",
    "volunteer_hangup_cause",
    "contact_hangup_cause",
)
_FIRST_TIME_COLUMNS = frozenset({"volunteer_answered_at", "contact_answered_at", "ended_at"})
# Every column a snapshot can change.  A batch stores its changed rows with
# this one statement sent as a single executemany, whatever each row's
# changes: the new values are the row read at the start of the transaction
# with the snapshots applied in order (a call is in one transaction of its
# worker at a time).  An ended row is never written: two workers on one
# PBX both follow its calls, and a batch in which no call ends reads its
# rows unlocked, so without the guard it could put a call another worker
# has just ended, with its automatic outcome, back to "talking"; that
# worker's later end of it would then never be stored (the outcome's
# unique key refusing it at every retry).
_STORED_COLUMNS = (*_SNAPSHOT_COLUMNS, "state", "outcome", "failure_reason", "needs_review")
_CALLS = cast(Table, CallAttempt.__table__)
_STORE_CALL = (
    update(_CALLS)
    .where(_CALLS.c.id == bindparam("row_id"), _CALLS.c.state != CallState.ENDED)
    .values({name: bindparam(f"new_{name}", type_=_CALLS.c[name].type) for name in _STORED_COLUMNS})
)
CANCELLED_BEFORE_DIALING = "cancelled before it was dialed"


async def add_request(session: AsyncSession, call: CallAttempt) -> None:
    """Insert a ``requested`` call; the live-call unique indexes may refuse it
    (:func:`live_claim_conflict` says which)."""
    session.add(call)
    await session.flush()


class LiveClaim(enum.Enum):
    """The partial unique indexes that allow one live call per volunteer and per contact."""

    VOLUNTEER = "uq_call_attempts_live_volunteer"
    CONTACT = "uq_call_attempts_live_contact"


# SQLite names a unique index by its columns ("UNIQUE constraint failed:
# call_attempts.volunteer_id"), or by name when it indexes expressions.
_SQLITE_UNIQUE = re.compile(
    r"UNIQUE constraint failed: (?:index '(?P<index>[^']+)'|(?P<columns>.+))"
)


def live_claim_conflict(error: IntegrityError) -> LiveClaim | None:
    """The live-call claim an insert broke, on PostgreSQL or SQLite; None for any other failure."""
    index = _violated_index(error)
    claims = {claim.value: claim for claim in LiveClaim}
    return claims.get(index) if index is not None else None


def _violated_index(error: IntegrityError) -> str | None:
    driver_error = error.orig
    # asyncpg says which constraint, behind SQLAlchemy's emulated DBAPI error.
    name = getattr(getattr(driver_error, "orig", None), "constraint_name", None)
    if isinstance(name, str):
        return name
    message = str(driver_error)
    match = _SQLITE_UNIQUE.search(message)
    if match is not None:
        if match["index"] is not None:
            return match["index"]
        columns = [column.strip() for column in match["columns"].split(",")]
        for index in _CALLS.indexes:
            if (
                index.unique
                and [f"{_CALLS.name}.{column.name}" for column in index.columns] == columns
            ):
                return index.name
        return None
    # Another PostgreSQL driver: its message quotes the index's name.
    return next((claim.value for claim in LiveClaim if claim.value in message), None)


async def live_call_volunteer(session: AsyncSession, contact_id: int) -> int | None:
    """Who is on the live call with ``contact_id``, if anyone."""
    return await session.scalar(
        select(CallAttempt.volunteer_id).where(
            CallAttempt.contact_id == contact_id, CallAttempt.state != CallState.ENDED
        )
    )


async def add_hangup_request(
    session: AsyncSession, *, call: CallAttempt, by: HangupBy, actor_id: int, at: datetime
) -> None:
    session.add(
        HangupRequest(
            call_id=call.call_id, pbx=call.pbx, requested_by=by, actor_id=actor_id, requested_at=at
        )
    )
    await session.flush()


async def cancel_unclaimed(
    session: AsyncSession, call: CallAttempt, outcome: CallOutcome, at: datetime
) -> bool:
    """End ``call`` if no worker has claimed it yet; False when one has.

    Cannot race the worker: both its claim and this UPDATE require
    ``originate_sent_at IS NULL``, so exactly one of them wins.
    """
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
            failure_reason=CANCELLED_BEFORE_DIALING,
            ended_at=at,
        )
    )
    if not getattr(ended, "rowcount", 0):
        return False
    # The row holds these already: the object learns them without a second UPDATE.
    for name, value in (
        ("state", CallState.ENDED),
        ("outcome", outcome),
        ("failure_reason", CANCELLED_BEFORE_DIALING),
        ("ended_at", at),
    ):
        set_committed_value(call, name, value)
    return True


async def end_call(
    session: AsyncSession, call: CallAttempt, outcome: CallOutcome, reason: str, at: datetime
) -> None:
    call.state, call.outcome, call.failure_reason, call.ended_at = (
        CallState.ENDED,
        outcome,
        reason,
        at,
    )
    await session.flush()


async def end_expired_requests(
    session: AsyncSession, *, pbx: str, requested_before: datetime, at: datetime
) -> list[CallAttempt]:
    """End the requests of ``pbx`` never sent to it in time, rather than dial them late."""
    result = await session.scalars(
        update(CallAttempt)
        .where(
            CallAttempt.pbx == pbx,
            CallAttempt.state == CallState.REQUESTED,
            CallAttempt.originate_sent_at.is_(None),
            CallAttempt.requested_at < requested_before,
        )
        .values(
            state=CallState.ENDED,
            outcome=CallOutcome.FAILED,
            failure_reason="request expired before the PBX was reachable",
            ended_at=at,
        )
        .returning(CallAttempt)
        .execution_options(populate_existing=True)
    )
    return list(result)


async def claim_requests(
    session: AsyncSession, *, pbx: str, at: datetime, limit: int
) -> list[CallAttempt]:
    """Mark up to ``limit`` waiting requests of ``pbx`` as sent, oldest first.

    One conditional UPDATE claims them all; when two workers race, the
    database re-checks ``originate_sent_at IS NULL`` on each locked row, so
    every request goes to exactly one of them.  The claimed calls come back
    with their volunteer and contact loaded.
    """
    waiting = (
        select(CallAttempt.id)
        .where(
            CallAttempt.pbx == pbx,
            CallAttempt.state == CallState.REQUESTED,
            CallAttempt.originate_sent_at.is_(None),
            # Cancelled before it was dialed: the hang-up pass ends it.
            ~exists().where(
                HangupRequest.call_id == CallAttempt.call_id,
                HangupRequest.handled_at.is_(None),
            ),
        )
        .order_by(CallAttempt.requested_at)
        .limit(limit)
    )
    claimed = list(
        await session.scalars(
            update(CallAttempt)
            .where(CallAttempt.id.in_(waiting), CallAttempt.originate_sent_at.is_(None))
            .values(originate_sent_at=at)
            .returning(CallAttempt.id)
        )
    )
    if not claimed:
        return []
    calls = await session.scalars(
        select(CallAttempt)
        .options(selectinload(CallAttempt.volunteer), selectinload(CallAttempt.contact))
        .where(CallAttempt.id.in_(claimed))
        .order_by(CallAttempt.requested_at)
        .execution_options(populate_existing=True)
    )
    return list(calls)


async def claim_hangup_requests(
    session: AsyncSession, *, pbx: str, at: datetime
) -> list[tuple[str, str]]:
    """Take the hang-ups waiting for ``pbx``: (call id, who asked), each once."""
    claimed = await session.execute(
        update(HangupRequest)
        .where(HangupRequest.pbx == pbx, HangupRequest.handled_at.is_(None))
        .values(handled_at=at)
        .returning(HangupRequest.call_id, HangupRequest.requested_by)
    )
    return [(call_id, requested_by) for call_id, requested_by in claimed]


async def add_supervision_request(
    session: AsyncSession, *, call: CallAttempt, mode: SpyMode, actor_id: int, at: datetime
) -> int:
    """Queue ``actor_id``'s listen/whisper/barge on ``call`` for its PBX's worker."""
    request = SupervisionRequest(
        call_id=call.call_id, pbx=call.pbx, mode=mode, actor_id=actor_id, requested_at=at
    )
    session.add(request)
    await session.flush()
    return request.id


async def claim_supervision_requests(
    session: AsyncSession, *, pbx: str, at: datetime
) -> list[tuple[int, str, str, int | None, datetime]]:
    """Take the supervisions waiting for ``pbx``, each once: (request id, call
    id, mode, organizer's id, when it was asked)."""
    claimed = await session.execute(
        update(SupervisionRequest)
        .where(SupervisionRequest.pbx == pbx, SupervisionRequest.handled_at.is_(None))
        .values(handled_at=at)
        .returning(
            SupervisionRequest.id,
            SupervisionRequest.call_id,
            SupervisionRequest.mode,
            SupervisionRequest.actor_id,
            SupervisionRequest.requested_at,
        )
    )
    return [
        (row_id, call_id, mode, actor, requested_at)
        for row_id, call_id, mode, actor, requested_at in claimed
    ]


def copy_snapshot(call: CallAttempt, snapshot: CallSnapshot) -> None:
    """Apply a PBX snapshot to a detached call row, for :func:`store_calls`."""
    values: dict[str, Any] = {name: getattr(snapshot, name) for name in _SNAPSHOT_COLUMNS}
    for name, value in values.items():
        if value is None:
            continue
        if name in _FIRST_TIME_COLUMNS and getattr(call, name) is not None:
            # A stored time was seen as it happened; a later snapshot's (a
            # resync after a restart) can only be a guess.
            continue
        setattr(call, name, value)
    call.state = snapshot.state
    if snapshot.outcome is not None:
        call.outcome = snapshot.outcome
    if snapshot.failure_reason is not None:
        call.failure_reason = snapshot.failure_reason[:500]


async def store_calls(session: AsyncSession, calls: Iterable[CallAttempt]) -> None:
    """Write the changed rows of a batch with one executemany.

    The rows must be detached (``session.expunge_all()`` after reading
    them): the unit of work then never flushes them a second time.
    """
    rows = [_stored_values(call) for call in calls]
    if rows:
        await session.execute(_STORE_CALL, rows)


def _stored_values(call: CallAttempt) -> dict[str, Any]:
    values = {f"new_{name}": getattr(call, name) for name in _STORED_COLUMNS}
    values["row_id"] = call.id
    return values


def pending_outcome_filter() -> ColumnElement[bool]:
    """Calls whose outcome is pending: ended calls whose volunteer owes their
    outcome (:func:`dialer.domain.vocabulary.outcome_owed`: the contact
    answered and talk ended, normally or by someone hanging up), with neither
    an outcome recorded nor one skipped on purpose.  The same calls leave
    their volunteer "wrapping up" on the live panel; a call lost to a PBX
    crash does not hold anyone up."""
    return and_(
        CallAttempt.state == CallState.ENDED,
        # outcome_owed(), in SQL.
        CallAttempt.contact_answered_at.is_not(None),
        CallAttempt.outcome.in_(sorted(CONVERSATION_ENDS)),
        CallAttempt.outcome_skipped_at.is_(None),
        CallAttempt.outcome_recorded_at.is_(None),
    )


async def has_live_call(session: AsyncSession, volunteer_id: int) -> bool:
    """Whether the volunteer has a call that has not ended."""
    return bool(
        await session.scalar(
            select(
                exists().where(
                    CallAttempt.volunteer_id == volunteer_id, CallAttempt.state != CallState.ENDED
                )
            )
        )
    )


async def pending_outcomes(
    session: AsyncSession, volunteer_id: int, *, limit: int, with_contact: bool = False
) -> list[CallAttempt]:
    """The volunteer's latest calls whose outcome is pending, newest first, at most ``limit``."""
    query = (
        select(CallAttempt)
        .where(CallAttempt.volunteer_id == volunteer_id, pending_outcome_filter())
        .order_by(CallAttempt.requested_at.desc())
        .limit(limit)
    )
    if with_contact:
        query = query.options(joinedload(CallAttempt.contact))
    return list(await session.scalars(query))


async def count_pending_outcomes(session: AsyncSession, volunteer_id: int, *, up_to: int) -> int:
    """How many outcomes the volunteer owes, counted no further than ``up_to``
    (ids only, through the owed-outcome index)."""
    owed = (
        select(CallAttempt.id)
        .where(CallAttempt.volunteer_id == volunteer_id, pending_outcome_filter())
        .limit(up_to)
        .subquery()
    )
    return int(await session.scalar(select(func.count()).select_from(owed)) or 0)


async def pending_outcome(session: AsyncSession, volunteer_id: int) -> CallAttempt | None:
    """The volunteer's latest call whose outcome is pending, if any."""
    return await session.scalar(
        select(CallAttempt)
        .where(CallAttempt.volunteer_id == volunteer_id, pending_outcome_filter())
        .order_by(CallAttempt.requested_at.desc())
        .limit(1)
    )


async def sync_outcome_recorded(session: AsyncSession, call_ids: Sequence[int]) -> None:
    """Set the calls' ``outcome_recorded_at`` to their disposition's time (None
    without one); ``dialer.store.outcomes`` calls it on every disposition it
    adds or withdraws."""
    recorded = (
        select(Disposition.created_at)
        .where(Disposition.call_attempt_id == CallAttempt.id)
        .scalar_subquery()
    )
    await session.execute(
        update(CallAttempt)
        .where(CallAttempt.id.in_(call_ids))
        .values(outcome_recorded_at=recorded)
        .execution_options(synchronize_session="fetch")
    )


async def skip_outcome(
    session: AsyncSession,
    call: CallAttempt,
    *,
    reason: str,
    note: str,
    by_id: int,
    at: datetime,
) -> bool:
    """Mark ``call``'s outcome as skipped; False when it was no longer pending
    (recorded or skipped meanwhile, in another tab)."""
    done = await session.execute(
        update(CallAttempt)
        .where(CallAttempt.id == call.id, pending_outcome_filter())
        .values(
            outcome_skipped_at=at,
            outcome_skip_reason=reason,
            outcome_skip_note=note or None,
            outcome_skipped_by_id=by_id,
        )
    )
    if not getattr(done, "rowcount", 0):
        return False
    for name, value in (
        ("outcome_skipped_at", at),
        ("outcome_skip_reason", reason),
        ("outcome_skip_note", note or None),
        ("outcome_skipped_by_id", by_id),
    ):
        set_committed_value(call, name, value)
    return True


async def settled_calls(session: AsyncSession, call_ids: Iterable[str]) -> set[str]:
    """Of these calls, those whose outcome is recorded or skipped."""
    wanted = list(call_ids)
    if not wanted:
        return set()
    rows = await session.scalars(
        select(CallAttempt.call_id).where(
            CallAttempt.call_id.in_(wanted),
            or_(
                CallAttempt.outcome_skipped_at.is_not(None),
                exists().where(Disposition.call_attempt_id == CallAttempt.id),
            ),
        )
    )
    return set(rows)
