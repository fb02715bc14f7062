"""The sign-in service under parallel guesses, on PostgreSQL and on SQLite (the
demo), and the password policy through the command line."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.passwords import MAX_PASSWORD_LENGTH
from dialer.domain.vocabulary import Role
from dialer.services import accounts
from dialer.services.accounts import AccountService, LoginRefusalCode, LoginRefused
from dialer.services.users import add_user
from dialer.store.models import KnownDevice, LoginFailure, User
from tests.integration.test_cli import dialer

Sessions = async_sessionmaker[AsyncSession]
PASSWORD = "correct horse battery staple"


@pytest.fixture
def database(either_database: Sessions) -> Sessions:
    """On PostgreSQL, then on SQLite."""
    return either_database


@pytest.fixture
def verify_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password argon2 really checked (the real function, counted)."""
    calls: list[str] = []
    real: Callable[[str, str], bool] = accounts.verify_password

    def counted(password_hash: str, password: str) -> bool:
        calls.append(password)
        return real(password_hash, password)

    monkeypatch.setattr(accounts, "verify_password", counted)
    return calls


async def organizer(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        await add_user(session, username="olivia", password=PASSWORD, role=Role.ORGANIZER)


async def attempt(service: AccountService, password: str, **kwargs: str) -> str:
    try:
        await service.sign_in(username="olivia", password=password, ip="192.0.2.1", **kwargs)
    except LoginRefused as refused:
        return refused.code.value
    return "signed_in"


async def test_thirty_parallel_guesses_reach_at_most_five_password_checks(
    database: Sessions, verify_calls: list[str]
) -> None:
    await organizer(database)
    service = AccountService(database)
    results = Counter(
        await asyncio.gather(
            *(attempt(service, f"guess-{secrets.token_hex(6)}") for _ in range(30))
        )
    )
    # At most five; possibly fewer, when the attempts all saw each other first.
    assert len(verify_calls) <= 5, results
    assert results[LoginRefusalCode.BAD_CREDENTIALS.value] == len(verify_calls)
    assert results[LoginRefusalCode.TOO_MANY_ATTEMPTS.value] == 30 - len(verify_calls)
    async with database() as session:
        rows = await session.scalar(select(func.count()).select_from(LoginFailure))
    # The refused attempts withdrew their rows: only real guesses hold the lock...
    assert rows == len(verify_calls)
    # ...so the rest of the five are checked one by one, and not one more.
    checked = len(verify_calls)
    for _ in range(5 - checked):
        assert await attempt(service, "still-wrong-wrong") == "bad_credentials"
    assert await attempt(service, PASSWORD) == "too_many_attempts"
    assert len(verify_calls) == 5


async def test_a_known_device_signs_in_through_a_locked_account(database: Sessions) -> None:
    await organizer(database)
    service = AccountService(database)
    first = await service.sign_in(username="olivia", password=PASSWORD, ip="192.0.2.1")
    assert first.device_token
    for _ in range(5):
        assert await attempt(service, "wrong-wrong-wrong") == "bad_credentials"
    assert await attempt(service, PASSWORD) == "too_many_attempts"
    again = await service.sign_in(
        username="olivia", password=PASSWORD, ip="192.0.2.1", device_token=first.device_token
    )
    # The same browser, remembered once.
    assert again.device_token == first.device_token
    async with database() as session:
        assert await session.scalar(select(func.count()).select_from(KnownDevice)) == 1
    # The strangers' failures still lock the account for strangers.
    assert await attempt(service, PASSWORD) == "too_many_attempts"


async def test_the_command_line_applies_the_password_policy(
    pg_url: str, sessions: Sessions
) -> None:
    common = await dialer(pg_url, "user", "add", "dora", "--password-stdin", stdin="password12\n")
    assert common.returncode == 1
    assert "too common or too easy to guess" in common.stderr
    too_long = "Zq9-" * 375  # 1,500 characters
    refused = await dialer(pg_url, "user", "add", "dora", "--password-stdin", stdin=too_long + "\n")
    assert refused.returncode == 1
    assert f"at most {MAX_PASSWORD_LENGTH} characters" in refused.stderr
    french = await dialer(
        pg_url,
        "user",
        "add",
        "dora",
        "--password-stdin",
        stdin="aaaaaaaaaa\n",
        locale={"LANG": "fr_CA.UTF-8"},
    )
    assert "trop courant ou trop facile à deviner" in french.stderr
    async with sessions() as session:
        assert await session.scalar(select(func.count()).where(User.username == "dora")) == 0
