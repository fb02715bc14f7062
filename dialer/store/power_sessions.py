"""Writes ``power_sessions``; nothing else does (dialer.domain.power says what a
session is, dialer.services.power when it changes).

Every function that changes a row flushes before it returns, so the SQL runs
here and a service's commit has nothing of this table left to write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from dialer.domain.power import SessionFacts, outcomes_allowed, session_state, waited_seconds
from dialer.domain.vocabulary import CallState, PowerNextCall, PowerSessionState
from dialer.store import calls
from dialer.store.models import CallAttempt, Campaign, PowerSession

LIVE_SESSION_INDEX = "uq_power_sessions_live_volunteer"


def is_second_live_session(error: IntegrityError) -> bool:
    """Whether an insert broke the one-live-session-per-volunteer index."""
    return LIVE_SESSION_INDEX in str(error.orig) or (
        # SQLite names the columns, not the index.
        "power_sessions.volunteer_id" in str(error.orig)
    )


async def live_session_id(session: AsyncSession, volunteer_id: int) -> int | None:
    return await session.scalar(
        select(PowerSession.id).where(
            PowerSession.volunteer_id == volunteer_id, PowerSession.ended_at.is_(None)
        )
    )


async def has_live_session(session: AsyncSession, volunteer_id: int) -> bool:
    return bool(
        await session.scalar(
            select(
                exists().where(
                    PowerSession.volunteer_id == volunteer_id, PowerSession.ended_at.is_(None)
                )
            )
        )
    )


async def live_for_volunteer(
    session: AsyncSession, volunteer_id: int, *, for_update: bool = False
) -> PowerSession | None:
    query = select(PowerSession).where(
        PowerSession.volunteer_id == volunteer_id, PowerSession.ended_at.is_(None)
    )
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def latest_for_volunteer(session: AsyncSession, volunteer_id: int) -> PowerSession | None:
    return await session.scalar(
        select(PowerSession)
        .where(PowerSession.volunteer_id == volunteer_id)
        .order_by(PowerSession.requested_at.desc(), PowerSession.id.desc())
        .limit(1)
    )


async def live_of_pbx(
    session: AsyncSession, pbx: str, *, for_update: bool = False
) -> Sequence[PowerSession]:
    query = (
        select(PowerSession)
        .where(PowerSession.pbx == pbx, PowerSession.ended_at.is_(None))
        .order_by(PowerSession.id)
        .options(joinedload(PowerSession.volunteer))
    )
    if for_update:
        # Locked in one order: two passes never deadlock.
        query = query.with_for_update(of=PowerSession)
    return (await session.scalars(query)).unique().all()


async def claim_unsent(session: AsyncSession, pbx: str) -> Sequence[PowerSession]:
    """The live sessions whose volunteer no worker has called yet, locked.

    SKIP LOCKED: two workers of one PBX never both take one."""
    query = (
        select(PowerSession)
        .where(
            PowerSession.pbx == pbx,
            PowerSession.ended_at.is_(None),
            PowerSession.leg_sent_at.is_(None),
            PowerSession.leave_requested_at.is_(None),
        )
        .order_by(PowerSession.id)
        .options(joinedload(PowerSession.volunteer))
        .with_for_update(of=PowerSession, skip_locked=True)
    )
    return (await session.scalars(query)).unique().all()


@dataclass(frozen=True, slots=True)
class LiveState:
    session_id: int
    state: PowerSessionState
    leaving: bool


async def live_states(session: AsyncSession, pbx: str) -> list[LiveState]:
    rows = await session.execute(
        select(PowerSession.id, PowerSession.state, PowerSession.leave_requested_at)
        .where(PowerSession.pbx == pbx, PowerSession.ended_at.is_(None))
        .order_by(PowerSession.id)
    )
    return [LiveState(id_, state, leave is not None) for id_, state, leave in rows]


async def get_for_update(session: AsyncSession, session_id: int) -> PowerSession | None:
    return await session.scalar(
        select(PowerSession).where(PowerSession.id == session_id).with_for_update()
    )


async def facts(session: AsyncSession, row: PowerSession) -> SessionFacts:
    live_call = await session.scalar(
        select(CallAttempt.state)
        .where(CallAttempt.power_session_id == row.id, CallAttempt.state != CallState.ENDED)
        .limit(1)
    )
    next_call = await session.scalar(
        select(Campaign.power_next_call).where(Campaign.id == row.campaign_id)
    )
    allowed = outcomes_allowed(next_call or PowerNextCall.AFTER_OUTCOME)
    owed = await calls.count_pending_outcomes(session, row.volunteer_id, up_to=allowed + 1)
    return SessionFacts(
        ended=row.ended_at is not None,
        leg_up=row.leg_answered_at is not None,
        paused=row.paused_at is not None,
        live_call=live_call,
        outcomes_owed=owed,
        outcomes_allowed=allowed,
    )


def _move_to(row: PowerSession, state: PowerSessionState, now: datetime) -> bool:
    if row.state is state:
        return False
    row.waited_seconds = waited_seconds(row.state, row.state_since, now, row.waited_seconds)
    row.state = state
    row.state_since = now
    return True


async def refresh(session: AsyncSession, row: PowerSession, now: datetime) -> bool:
    """Bring the stored state in line with the facts; True when it changed."""
    moved = _move_to(row, session_state(await facts(session, row)), now)
    await session.flush()
    return moved


async def end(session: AsyncSession, row: PowerSession, reason: str, now: datetime) -> None:
    if row.ended_at is not None:
        return
    row.ended_at = now
    row.end_reason = row.end_reason or reason
    _move_to(row, PowerSessionState.ENDED, now)
    await session.flush()


async def add(session: AsyncSession, row: PowerSession) -> None:
    session.add(row)
    await session.flush()


async def claim(session: AsyncSession, row: PowerSession, now: datetime) -> None:
    """The worker is calling the volunteer in: never twice."""
    row.leg_sent_at = now
    await session.flush()


async def leg_up(
    session: AsyncSession, row: PowerSession, *, answered_at: datetime, channel: str | None
) -> None:
    row.leg_answered_at = answered_at
    row.leg_channel = channel
    await session.flush()


async def pause(session: AsyncSession, row: PowerSession, reason: str, now: datetime) -> None:
    if row.paused_at is None:
        row.paused_at = now
    row.pause_reason = reason or None
    await session.flush()


async def resume(session: AsyncSession, row: PowerSession) -> None:
    row.paused_at = None
    row.pause_reason = None
    await session.flush()


async def ask_last_call(session: AsyncSession, row: PowerSession) -> None:
    row.last_call = True
    await session.flush()


async def ask_to_leave(
    session: AsyncSession, row: PowerSession, reason: str, now: datetime
) -> bool:
    """The worker is to hang the volunteer's line up; False when it already was asked."""
    if row.leave_requested_at is not None:
        return False
    row.leave_requested_at = now
    row.end_reason = reason
    await session.flush()
    return True


async def dialed(session: AsyncSession, row: PowerSession) -> None:
    row.calls += 1
    row.waiting_note = row.waiting_reason = row.waiting_until = None
    await session.flush()


async def note(
    session: AsyncSession, row: PowerSession, text: str, reason: str, until: datetime | None
) -> None:
    """Why nobody is dialed: ``text`` in English, ``reason`` and ``until`` for
    the pages to word (see PowerSession.waiting_reason)."""
    row.waiting_note = text[:300]
    row.waiting_reason = reason[:64]
    row.waiting_until = until
    await session.flush()


async def live_call_ids(session: AsyncSession, session_id: int) -> list[str]:
    rows = await session.scalars(
        select(CallAttempt.call_id).where(
            CallAttempt.power_session_id == session_id, CallAttempt.state != CallState.ENDED
        )
    )
    return list(rows)


async def latest_call(session: AsyncSession, session_id: int) -> CallAttempt | None:
    return await session.scalar(
        select(CallAttempt)
        .where(CallAttempt.power_session_id == session_id)
        .order_by(CallAttempt.requested_at.desc(), CallAttempt.id.desc())
        .options(joinedload(CallAttempt.contact))
        .limit(1)
    )
