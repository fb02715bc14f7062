"""Writes ``web_sessions``, ``login_failures`` and ``known_devices``; nothing else does.

A web session is one signed-in browser: opened at sign-in
(``add_session``), its last sight moved forward while it is used
(``touch_session``), its "confirm before dialing" preference and the phone
its calls ring set (``set_confirm_before_dial``, ``set_session_phone``),
ended (``end_session``; all of one user's at once with ``end_user_sessions``)
and swept once past its lifetime (``delete_expired_sessions``).  A login failure is a sign-in
attempt the rate limit counts: recorded *before* its password is checked
(``add_failure``), so parallel attempts see each other; withdrawn when the
attempt turns out refused or right (``delete_failure``), trimmed once too
old to count (``delete_failures_before``) and cleared by the user's next
sign-in (``clear_failures``, ``clear_device_failures``).  A known device is
a browser a user signed in from (``remember_device``), forgotten when long
unused (``forget_devices_unused_since``).  Callers own the transaction;
every function here sends its SQL before it returns.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from dialer.domain.vocabulary import VolunteerPhone
from dialer.store.models import KnownDevice, LoginFailure, WebSession


async def add_failure(
    session: AsyncSession, *, username: str, ip: str, at: datetime, device: str | None = None
) -> int:
    """Record an attempt as a failure until proven otherwise; its id."""
    failure = LoginFailure(username=username, ip=ip, at=at, device=device)
    session.add(failure)
    await session.flush()
    return failure.id


async def delete_failure(session: AsyncSession, failure_id: int) -> None:
    await session.execute(delete(LoginFailure).where(LoginFailure.id == failure_id))


async def delete_failures_before(session: AsyncSession, before: datetime) -> None:
    await session.execute(delete(LoginFailure).where(LoginFailure.at < before))


async def clear_failures(session: AsyncSession, username: str) -> None:
    """The account's failures from unknown devices (a known device's are its own)."""
    await session.execute(
        delete(LoginFailure).where(LoginFailure.username == username, LoginFailure.device.is_(None))
    )


async def clear_device_failures(session: AsyncSession, device: str) -> None:
    await session.execute(delete(LoginFailure).where(LoginFailure.device == device))


async def remember_device(
    session: AsyncSession, *, token_hash: str, user_id: int, at: datetime
) -> None:
    """Insert the device for this user, or move its last use to ``at``."""
    bind = session.get_bind()
    values = {"token_hash": token_hash, "user_id": user_id, "created_at": at, "last_used_at": at}
    # Two sign-ins from one browser at once must not collide on the key.
    dialect = postgresql if bind.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(KnownDevice)
        .values(values)
        .on_conflict_do_update(index_elements=["token_hash", "user_id"], set_={"last_used_at": at})
    )
    await session.execute(statement)


async def forget_devices_unused_since(session: AsyncSession, before: datetime) -> None:
    await session.execute(delete(KnownDevice).where(KnownDevice.last_used_at < before))


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


async def set_session_phone(
    session: AsyncSession, session_id: str, phone: VolunteerPhone | None
) -> None:
    await session.execute(update(WebSession).where(WebSession.id == session_id).values(phone=phone))


async def end_user_sessions(session: AsyncSession, user_id: int, *, keep: str | None = None) -> int:
    """End every session of ``user_id`` but ``keep`` (a session id); how many ended.

    A password change or a deactivation signs the person out everywhere else.
    """
    statement = delete(WebSession).where(WebSession.user_id == user_id)
    if keep is not None:
        statement = statement.where(WebSession.id != keep)
    result = await session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)
