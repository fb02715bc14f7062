"""Calls as the pages read them back: one call by its id, a user's call in progress."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.vocabulary import LIVE_CALL_STATES
from dialer.services.access import can_oversee_call
from dialer.store.models import CallAttempt, Contact, User


@dataclass(frozen=True, slots=True)
class CallView:
    call: CallAttempt
    contact_name: str


async def call_view(session: AsyncSession, call_id: str) -> CallView | None:
    row = (
        await session.execute(
            select(CallAttempt, Contact.first_name, Contact.last_name)
            .join(Contact, Contact.id == CallAttempt.contact_id)
            .where(CallAttempt.call_id == call_id)
        )
    ).first()
    if row is None:
        return None
    call, first, last = row
    return CallView(call, f"{first} {last}".strip())


async def live_call_between(
    session: AsyncSession, *, volunteer_id: int, contact_id: int
) -> CallAttempt | None:
    """The volunteer's call to the contact that has not ended yet, if any."""
    return await session.scalar(
        select(CallAttempt).where(
            CallAttempt.volunteer_id == volunteer_id,
            CallAttempt.contact_id == contact_id,
            CallAttempt.state.in_([state.value for state in LIVE_CALL_STATES]),
        )
    )


class CallHistory:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def call(self, viewer: User, call_id: str) -> CallView | None:
        """The call with this id and its contact's name, when ``viewer`` may oversee it
        (:func:`dialer.services.access.can_oversee_call`)."""
        async with self._sessions() as session:
            found = await call_view(session, call_id)
            if found is None or not await can_oversee_call(session, viewer, found.call):
                return None
            return found
