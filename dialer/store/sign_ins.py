"""Writes ``web_sessions`` and ``login_failures``; nothing else does.

A web session is one signed-in browser: opened at sign-in
(``add_session``), its last sight moved forward while it is used
(``touch_session``), its "confirm before dialing" preference set
(``set_confirm_before_dial``), ended (``end_session``) and swept once past
its lifetime (``delete_expired_sessions``).  A login failure is a refused
sign-in the rate limit counts: recorded (``add_failure``), trimmed once too
old to count (``delete_failures_before``) and cleared by the user's next
sign-in (``clear_failures``).  Callers own the transaction; every function
here sends its SQL before it returns.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from dialer.store.models import LoginFailure, WebSession


async def add_failure(session: AsyncSession, *, username: str, ip: str, at: datetime) -> None:
    session.add(LoginFailure(username=username, ip=ip, at=at))
    await session.flush()


async def delete_failures_before(session: AsyncSession, before: datetime) -> None:
    await session.execute(delete(LoginFailure).where(LoginFailure.at < before))


async def clear_failures(session: AsyncSession, username: str) -> None:
    await session.execute(delete(LoginFailure).where(LoginFailure.username == username))


async def add_session(session: AsyncSession, web_session: WebSession) -> None:
    session.add(web_session)
    await session.flush()


async def delete_expired_sessions(session: AsyncSession, now: datetime) -> None:
    await session.execute(delete(WebSession).where(WebSession.expires_at < now))


async def touch_session(session: AsyncSession, web_session: WebSession, at: datetime) -> None:
    """Store ``at`` as the session's last sight, in the row and in ``web_session``."""
    await session.execute(
        update(WebSession).where(WebSession.id == web_session.id).values(last_seen_at=at)
    )
    # Committed, not pending: the row already holds it, so no flush may write it again.
    set_committed_value(web_session, "last_seen_at", at)


async def end_session(session: AsyncSession, session_id: str) -> None:
    await session.execute(delete(WebSession).where(WebSession.id == session_id))


async def set_confirm_before_dial(session: AsyncSession, session_id: str, confirm: bool) -> None:
    await session.execute(
        update(WebSession).where(WebSession.id == session_id).values(confirm_before_dial=confirm)
    )
