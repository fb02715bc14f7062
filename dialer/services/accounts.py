"""Web sign-in: password checks, rate limits on failures, server-side sessions.

The cookie carries a random token; the database keeps its SHA-256, the
user, a CSRF token, and two deadlines: an idle timeout (pushed forward
while the user is active) and an absolute lifetime.  Failed sign-ins are
rows, so the rate limit holds across every web process.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.passwords import hash_password, needs_rehash, verify_password
from dialer.store import audit, people, sign_ins
from dialer.store.models import LoginFailure, User, WebSession, utcnow


# Verified when the username is unknown, so a wrong username costs as much
# time as a wrong password and timing does not reveal which users exist.
@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


# last_seen_at is written at most this often (one UPDATE a minute per user,
# not one per request).
_TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    idle: timedelta = timedelta(hours=2)
    absolute: timedelta = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class LoginLimits:
    max_failures_per_user: int = 5
    max_failures_per_ip: int = 50
    window: timedelta = timedelta(minutes=15)


class LoginRefusalCode(StrEnum):
    BAD_CREDENTIALS = "bad_credentials"
    TOO_MANY_ATTEMPTS = "too_many_attempts"


class LoginRefused(Exception):
    def __init__(self, code: LoginRefusalCode, retry_after: timedelta | None = None) -> None:
        super().__init__(code.value)
        self.code = code
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class SignedIn:
    token: str
    session: WebSession
    user: User


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


async def _recent_failures(
    session: AsyncSession, username: str, ip: str, since: datetime
) -> tuple[int, int, datetime | None]:
    by_user = await session.scalar(
        select(func.count())
        .select_from(LoginFailure)
        .where(LoginFailure.username == username, LoginFailure.at >= since)
    )
    by_ip = await session.scalar(
        select(func.count())
        .select_from(LoginFailure)
        .where(LoginFailure.ip == ip, LoginFailure.at >= since)
    )
    oldest = await session.scalar(
        select(func.min(LoginFailure.at)).where(
            LoginFailure.username == username, LoginFailure.at >= since
        )
    )
    return int(by_user or 0), int(by_ip or 0), oldest


async def sign_in(
    sessions: async_sessionmaker[AsyncSession],
    *,
    username: str,
    password: str,
    ip: str,
    user_agent: str = "",
    policy: SessionPolicy = SessionPolicy(),
    limits: LoginLimits = LoginLimits(),
    now: datetime | None = None,
) -> SignedIn:
    """Check the password and open a session; raises :class:`LoginRefused`."""
    now = now or utcnow()
    name = username.strip()[:100]
    key = name.lower()
    ip = ip[:64]
    async with sessions() as session:
        by_user, by_ip, oldest = await _recent_failures(session, key, ip, now - limits.window)
        if by_user >= limits.max_failures_per_user or by_ip >= limits.max_failures_per_ip:
            retry = (oldest + limits.window - now) if oldest is not None else limits.window
            raise LoginRefused(LoginRefusalCode.TOO_MANY_ATTEMPTS, retry)
        user = await session.scalar(select(User).where(func.lower(User.username) == key))
    stored = user.password_hash if user is not None else _dummy_hash()
    # argon2 is deliberately slow: keep it off the event loop.
    ok = await asyncio.to_thread(verify_password, stored, password)
    if user is None or not ok or not user.is_active:
        async with sessions.begin() as session:
            await sign_ins.add_failure(session, username=key, ip=ip, at=now)
            # Old rows are useless to the limit; trim them as we go.
            await sign_ins.delete_failures_before(session, now - 4 * limits.window)
        raise LoginRefused(LoginRefusalCode.BAD_CREDENTIALS)
    token = secrets.token_urlsafe(32)
    web_session = WebSession(
        id=token_hash(token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + policy.absolute,
        confirm_before_dial=True,
        ip=ip,
        user_agent=user_agent[:300],
    )
    async with sessions.begin() as session:
        await sign_ins.add_session(session, web_session)
        await sign_ins.clear_failures(session, key)
        await sign_ins.delete_expired_sessions(session, now)
        if needs_rehash(user.password_hash):
            fresh = await asyncio.to_thread(hash_password, password)
            await people.set_password_hash(session, user.id, fresh)
        await audit.record(
            session,
            action="user.sign_in",
            entity_type="user",
            entity_id=user.id,
            changes={"ip": ip},
            actor_id=user.id,
        )
    return SignedIn(token, web_session, user)


async def load_session(
    sessions: async_sessionmaker[AsyncSession],
    token: str,
    *,
    policy: SessionPolicy = SessionPolicy(),
    now: datetime | None = None,
) -> tuple[WebSession, User] | None:
    """The live session behind a cookie, or None when unknown, idle too long or expired."""
    if not token or len(token) > 200:
        return None
    now = now or utcnow()
    async with sessions() as session:
        row = (
            await session.execute(
                select(WebSession, User)
                .join(User, User.id == WebSession.user_id)
                .where(WebSession.id == token_hash(token))
            )
        ).first()
    if row is None:
        return None
    web_session, user = row
    if (
        not user.is_active
        or web_session.expires_at <= now
        or web_session.last_seen_at + policy.idle <= now
    ):
        await end_session(sessions, token)
        return None
    if now - web_session.last_seen_at >= _TOUCH_EVERY:
        async with sessions.begin() as session:
            await sign_ins.touch_session(session, web_session, now)
    return web_session, user


async def end_session(sessions: async_sessionmaker[AsyncSession], token: str) -> None:
    async with sessions.begin() as session:
        await sign_ins.end_session(session, token_hash(token))


async def set_confirm_before_dial(
    sessions: async_sessionmaker[AsyncSession], session_id: str, confirm: bool
) -> None:
    async with sessions.begin() as session:
        await sign_ins.set_confirm_before_dial(session, session_id, confirm)


async def set_language(
    sessions: async_sessionmaker[AsyncSession], user_id: int, language: str
) -> None:
    async with sessions.begin() as session:
        await people.set_language(session, user_id, language)


async def users_seen_since(session: AsyncSession, since: datetime) -> set[int]:
    """Users with a session active since ``since`` (shown as online on the panel)."""
    rows = await session.scalars(
        select(WebSession.user_id).where(WebSession.last_seen_at >= since).distinct()
    )
    return set(rows)


class AccountService:
    """Sign-in, the sessions behind the cookies, and a user's own preferences."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def sign_in(
        self,
        *,
        username: str,
        password: str,
        ip: str,
        user_agent: str = "",
        policy: SessionPolicy = SessionPolicy(),
        limits: LoginLimits = LoginLimits(),
    ) -> SignedIn:
        """Check the password and open a session; raises :class:`LoginRefused`."""
        return await sign_in(
            self._sessions,
            username=username,
            password=password,
            ip=ip,
            user_agent=user_agent,
            policy=policy,
            limits=limits,
        )

    async def load_session(
        self, token: str, *, policy: SessionPolicy = SessionPolicy()
    ) -> tuple[WebSession, User] | None:
        """The live session behind a cookie, or None when unknown, idle too long or expired."""
        return await load_session(self._sessions, token, policy=policy)

    async def end_session(self, token: str) -> None:
        await end_session(self._sessions, token)

    async def set_confirm_before_dial(self, session_id: str, confirm: bool) -> None:
        await set_confirm_before_dial(self._sessions, session_id, confirm)

    async def set_language(self, user_id: int, language: str) -> None:
        await set_language(self._sessions, user_id, language)
