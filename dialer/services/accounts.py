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
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.i18n import _
from dialer.domain.passwords import (
    WeakPassword,
    hash_password,
    needs_rehash,
    rehash_password,
    verify_password,
)
from dialer.domain.vocabulary import VolunteerPhone
from dialer.services.common import with_db_retry
from dialer.services.volunteer_phones import new_sip_secret
from dialer.store import audit, people, sign_ins
from dialer.store.models import KnownDevice, LoginFailure, User, WebSession, utcnow


# Verified when the username is unknown, so a wrong username costs as much
# time as a wrong password and timing does not reveal which users exist.
@functools.cache
def _dummy_hash() -> str:
    return rehash_password(secrets.token_urlsafe(16))


# A browser unused this long is a stranger again; the device cookie lives as long.
KNOWN_DEVICE_LIFETIME = timedelta(days=180)
# What secrets.token_urlsafe(32) makes; anything else in the cookie is ignored.
_DEVICE_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")

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
    # The device cookie's value to keep (see KNOWN_DEVICE_LIFETIME).
    device_token: str = ""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def _device_hash(device_token: str) -> str | None:
    """The stored form of a device cookie, or None when it cannot be one of ours."""
    if not _DEVICE_TOKEN.fullmatch(device_token):
        return None
    return token_hash(device_token)


async def _is_known_device(session: AsyncSession, device: str | None, user: User | None) -> bool:
    if device is None or user is None:
        return False
    found = await session.scalar(
        select(KnownDevice.user_id).where(
            KnownDevice.token_hash == device, KnownDevice.user_id == user.id
        )
    )
    return found is not None


async def _over_limit(
    session: AsyncSession,
    *,
    username: str,
    ip: str,
    device: str | None,
    limits: LoginLimits,
    since: datetime,
) -> datetime | None:
    """The oldest failure holding the lock, or None when this attempt may be checked.

    Every count includes the attempt's own row, recorded before: hence ``>``.
    """
    recent = LoginFailure.at >= since
    if device is not None:
        scopes = [(LoginFailure.device == device, limits.max_failures_per_user)]
    else:
        # A known device's attempts are its own business, not the account's or the address's.
        stranger = LoginFailure.device.is_(None)
        scopes = [
            (stranger & (LoginFailure.username == username), limits.max_failures_per_user),
            (stranger & (LoginFailure.ip == ip), limits.max_failures_per_ip),
        ]
    for scope, limit in scopes:
        count, oldest = (
            await session.execute(
                select(func.count(), func.min(LoginFailure.at)).where(scope, recent)
            )
        ).one()
        if int(count or 0) > limit:
            return oldest if isinstance(oldest, datetime) else since
    return None


async def sign_in(
    sessions: async_sessionmaker[AsyncSession],
    *,
    username: str,
    password: str,
    ip: str,
    user_agent: str = "",
    device_token: str = "",
    policy: SessionPolicy = SessionPolicy(),
    limits: LoginLimits = LoginLimits(),
    now: datetime | None = None,
) -> SignedIn:
    """Check the password and open a session; raises :class:`LoginRefused`.

    ``device_token`` is the browser's device cookie, if any; the result
    carries the one to keep (a new one when the browser had none).

    Lockouts (why this design, issue 18): an attempt from a browser this
    user has signed in from before (a *known device*) is limited per device
    only; every other attempt per account and per address.  So a flood of
    wrong passwords, for one account or from one address (everyone behind
    a reverse proxy or an office NAT shares one), never locks the people
    whose browsers already proved themselves, while a stranger still gets
    only a few guesses per account and per address.  Locking per account
    alone would let one address spray a common password over every
    account, and would let anyone lock the organizer out with five wrong
    tries.

    The race (issue 18): the attempt is committed as a failure *before* its
    password is checked and the limit then counts committed rows, its own
    included.  Of N parallel attempts the k-th to commit sees at least k
    rows, so at most ``max_failures`` of them reach the password check,
    with no lock, on PostgreSQL and SQLite alike.
    """
    now = now or utcnow()
    name = username.strip()[:100]
    key = name.lower()
    ip = ip[:64]
    offered_device = _device_hash(device_token)
    since = now - limits.window
    async with sessions.begin() as session:
        user = await session.scalar(select(User).where(func.lower(User.username) == key))
        known = await _is_known_device(session, offered_device, user)
        device = offered_device if known else None
        attempt = await sign_ins.add_failure(session, username=key, ip=ip, at=now, device=device)
    async with sessions() as session:
        oldest = await _over_limit(
            session, username=key, ip=ip, device=device, limits=limits, since=since
        )
    if oldest is not None:
        # Refused unchecked: not a guess, so it does not prolong the lock.
        async with sessions.begin() as session:
            await sign_ins.delete_failure(session, attempt)
        raise LoginRefused(
            LoginRefusalCode.TOO_MANY_ATTEMPTS, max(oldest + limits.window - now, timedelta(0))
        )
    stored = user.password_hash if user is not None else _dummy_hash()
    # argon2 is deliberately slow: keep it off the event loop.
    ok = await asyncio.to_thread(verify_password, stored, password)
    if user is None or not ok or not user.is_active:
        # The attempt's row stays: it is the failure.
        async with sessions.begin() as session:
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
    keep_device = device_token if offered_device is not None else secrets.token_urlsafe(32)
    async with sessions.begin() as session:
        await sign_ins.add_session(session, web_session)
        await sign_ins.delete_failure(session, attempt)
        if device is not None:
            await sign_ins.clear_device_failures(session, device)
        else:
            await sign_ins.clear_failures(session, key)
        await sign_ins.remember_device(
            session, token_hash=token_hash(keep_device), user_id=user.id, at=now
        )
        await sign_ins.forget_devices_unused_since(session, now - KNOWN_DEVICE_LIFETIME)
        await sign_ins.delete_expired_sessions(session, now)
        if needs_rehash(user.password_hash):
            fresh = await asyncio.to_thread(rehash_password, password)
            await people.set_password_hash(session, user.id, fresh)
        await audit.record(
            session,
            action="user.sign_in",
            entity_type="user",
            entity_id=user.id,
            changes={"ip": ip, "known_device": known},
            actor_id=user.id,
        )
    return SignedIn(token, web_session, user, keep_device)


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


async def set_session_phone(
    sessions: async_sessionmaker[AsyncSession], session_id: str, phone: VolunteerPhone | None
) -> None:
    async with sessions.begin() as session:
        await sign_ins.set_session_phone(session, session_id, phone)


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


class PasswordChangeRefused(Exception):
    """The current password was wrong (``code`` BAD_CREDENTIALS) or guessed too
    often lately (TOO_MANY_ATTEMPTS, with ``retry_after``)."""

    def __init__(self, code: LoginRefusalCode, retry_after: timedelta | None = None) -> None:
        super().__init__(code.value)
        self.code = code
        self.retry_after = retry_after


async def change_own_password(
    sessions: async_sessionmaker[AsyncSession],
    user: User,
    *,
    session_id: str,
    current: str,
    new: str,
    ip: str,
    limits: LoginLimits = LoginLimits(),
    now: datetime | None = None,
) -> int:
    """Replace ``user``'s password after checking the current one; how many of
    their other sessions ended (``session_id``, the one asking, stays).

    A wrong current password counts as a failed sign-in for the account and
    the address, in the same rows and limits as :func:`sign_in`, with the
    same race rule (recorded before the check): a stolen, still-open session
    gets no more guesses than the sign-in page gives.  Raises
    :class:`PasswordChangeRefused` or :class:`~dialer.domain.passwords.WeakPassword`
    (checked first: a policy refusal costs no attempt).
    """
    now = now or utcnow()
    if new == current:
        raise WeakPassword(_("Choose a password different from the current one."))
    # The policy check (zxcvbn) and hashing are slow: off the event loop.
    fresh = await asyncio.to_thread(
        hash_password, new, user_inputs=(user.username, user.display_name)
    )
    key = user.username.lower()
    ip = ip[:64]
    async with sessions.begin() as session:
        attempt = await sign_ins.add_failure(session, username=key, ip=ip, at=now)
    async with sessions() as session:
        oldest = await _over_limit(
            session, username=key, ip=ip, device=None, limits=limits, since=now - limits.window
        )
        stored = await session.scalar(select(User.password_hash).where(User.id == user.id))
    if oldest is not None:
        async with sessions.begin() as session:
            await sign_ins.delete_failure(session, attempt)
        raise PasswordChangeRefused(
            LoginRefusalCode.TOO_MANY_ATTEMPTS, max(oldest + limits.window - now, timedelta(0))
        )
    ok = stored is not None and await asyncio.to_thread(verify_password, stored, current)
    if not ok:
        # The attempt's row stays: it is the failure.
        raise PasswordChangeRefused(LoginRefusalCode.BAD_CREDENTIALS)
    async with sessions.begin() as session:
        await sign_ins.delete_failure(session, attempt)
        await people.set_password_hash(session, user.id, fresh)
        # The browser phone's password goes with the sessions that could read it.
        await people.renew_sip_secret(session, user.id, new_sip_secret())
        ended = await sign_ins.end_user_sessions(session, user.id, keep=session_id)
        await audit.record(
            session,
            action="user.password_change",
            entity_type="user",
            entity_id=user.id,
            changes={"sessions_ended": ended, "ip": ip},
            actor_id=user.id,
        )
    return ended


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
        device_token: str = "",
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
            device_token=device_token,
            policy=policy,
            limits=limits,
        )

    async def load_session(
        self, token: str, *, policy: SessionPolicy = SessionPolicy()
    ) -> tuple[WebSession, User] | None:
        """The live session behind a cookie, or None when unknown, idle too long or expired.

        Every request starts here, so it rides out a short database outage
        like the outcome it may carry (``with_db_retry``, a few seconds):
        otherwise the request would fail on the lookup before the outcome's
        own retry could run.  Raises :class:`RetryableError` past that.
        """
        return await with_db_retry(lambda: load_session(self._sessions, token, policy=policy))

    async def end_session(self, token: str) -> None:
        await end_session(self._sessions, token)

    async def set_confirm_before_dial(self, session_id: str, confirm: bool) -> None:
        await set_confirm_before_dial(self._sessions, session_id, confirm)

    async def set_session_phone(self, session_id: str, phone: VolunteerPhone | None) -> None:
        """This session's calls ring ``phone`` (None: the user's usual phone)."""
        await set_session_phone(self._sessions, session_id, phone)

    async def set_language(self, user_id: int, language: str) -> None:
        await set_language(self._sessions, user_id, language)

    async def change_own_password(
        self,
        user: User,
        *,
        session_id: str,
        current: str,
        new: str,
        ip: str,
        limits: LoginLimits = LoginLimits(),
    ) -> int:
        """See :func:`change_own_password`."""
        return await change_own_password(
            self._sessions,
            user,
            session_id=session_id,
            current=current,
            new=new,
            ip=ip,
            limits=limits,
        )
