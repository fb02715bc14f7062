"""Sign-in under attack (issue 18): the rate limit holds against parallel
guesses, X-Forwarded-For counts only from a trusted proxy, a flood from one
address does not shut out a known device, and the password policy."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from sqlalchemy import func, select

from dialer.domain.passwords import MAX_PASSWORD_LENGTH
from dialer.store.models import LoginFailure, User
from tests.e2e.conftest import ClientFactory
from tests.e2e.webworld import PASSWORD, Served, WebWorld, serve

# Documentation addresses (RFC 5737): only ever written in a header here.
CLIENT_A = "203.0.113.7"
CLIENT_B = "198.51.100.23"


@pytest.fixture
async def http() -> AsyncIterator[Callable[[], aiohttp.ClientSession]]:
    """Fresh cookie jars, each one browser."""
    opened: list[aiohttp.ClientSession] = []

    def make() -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        opened.append(session)
        return session

    yield make
    for session in opened:
        await session.close()


async def sign_in(
    browser: aiohttp.ClientSession,
    served: Served,
    username: str,
    password: str,
    forwarded_for: str | None = None,
) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    async with browser.post(
        served.url + "/api/session",
        json={"username": username, "password": password},
        headers=headers,
    ) as response:
        return response.status


async def failures(world: WebWorld, **where: str) -> list[LoginFailure]:
    async with world.sessions() as session:
        query = select(LoginFailure)
        for column, value in where.items():
            query = query.where(getattr(LoginFailure, column) == value)
        return list(await session.scalars(query))


# -- the race ----------------------------------------------------------------------


async def test_thirty_parallel_wrong_passwords_get_at_most_five_checks(
    served: Served, world: WebWorld, http: Callable[[], aiohttp.ClientSession]
) -> None:
    attacker = http()
    statuses = await asyncio.gather(
        *(
            sign_in(attacker, served, "olivia", f"wrong-guess-{n:02d}-{secrets.token_hex(4)}")
            for n in range(30)
        )
    )
    counted = Counter(statuses)
    # 401 is a password that was checked; 429 was refused before the check.
    assert set(counted) <= {401, 429}, counted
    assert counted[401] <= 5, counted
    assert counted[429] >= 25, counted
    # Every checked password is a recorded failure; no refusal left a row.
    assert len(await failures(world, username="olivia")) == counted[401]
    # Parallel attempts may refuse each other; one by one, the rest of the five
    # are checked, then the account is locked, for the right password too.
    for _ in range(5 - counted[401]):
        assert await sign_in(attacker, served, "olivia", "still-wrong-wrong") == 401
    assert await sign_in(http(), served, "olivia", PASSWORD) == 429


# -- the client's address ----------------------------------------------------------


async def test_x_forwarded_for_is_ignored_from_an_untrusted_peer(
    served: Served, world: WebWorld, http: Callable[[], aiohttp.ClientSession]
) -> None:
    assert await sign_in(http(), served, "alice", "not her password", CLIENT_A) == 401
    (failure,) = await failures(world, username="alice")
    assert failure.ip == "127.0.0.1"


async def test_x_forwarded_for_is_honoured_from_a_trusted_proxy(
    pg_url: str, world: WebWorld, http: Callable[[], aiohttp.ClientSession]
) -> None:
    async with serve(pg_url, trusted_proxies="127.0.0.1, 10.0.0.0/8") as served:
        # The proxy appends what it saw; the client's own claim, on the left, is not believed.
        forged = f"{CLIENT_B}, {CLIENT_A}"
        assert await sign_in(http(), served, "alice", "not her password", forged) == 401
        # Through two trusted proxies: the first address that is not one of them.
        chained = f"{CLIENT_B}, 10.1.2.3"
        assert await sign_in(http(), served, "bob", "not his password", chained) == 401
        # Garbage in the header: the peer itself, not a made-up client.
        assert await sign_in(http(), served, "carol", "not hers", "unknown") == 401
    assert [f.ip for f in await failures(world, username="alice")] == [CLIENT_A]
    assert [f.ip for f in await failures(world, username="bob")] == [CLIENT_B]
    assert [f.ip for f in await failures(world, username="carol")] == ["127.0.0.1"]


# -- lockouts ----------------------------------------------------------------------


async def flood(
    served: Served,
    http: Callable[[], aiohttp.ClientSession],
    count: int,
    forwarded_for: str | None = None,
) -> Counter[int]:
    """``count`` wrong sign-ins with random usernames, ten at a time."""
    attacker = http()
    statuses: Counter[int] = Counter()
    for start in range(0, count, 10):
        batch = await asyncio.gather(
            *(
                sign_in(
                    attacker, served, f"user{secrets.token_hex(4)}", "guess-guess", forwarded_for
                )
                for _ in range(start, min(count, start + 10))
            )
        )
        statuses.update(batch)
    return statuses


async def test_a_flood_from_one_address_does_not_lock_out_a_known_device(
    served: Served, world: WebWorld, http: Callable[[], aiohttp.ClientSession]
) -> None:
    # Olivia's browser has signed in before: it holds a device cookie.
    olivias = http()
    assert await sign_in(olivias, served, "olivia", PASSWORD) == 200
    assert any(cookie.key == "pb_device" for cookie in olivias.cookie_jar)
    # Behind one address (a proxy, an office): 50 failures with random usernames.
    assert (await flood(served, http, 50))[401] == 50
    # The address is locked for strangers, whatever they type...
    assert await sign_in(http(), served, "olivia", PASSWORD) == 429
    assert await sign_in(http(), served, "alice", PASSWORD) == 429
    # ...but Olivia's own browser signs in with her password.
    assert await sign_in(olivias, served, "olivia", PASSWORD) == 200


async def test_behind_a_trusted_proxy_a_flood_locks_only_its_own_address(
    pg_url: str, world: WebWorld, http: Callable[[], aiohttp.ClientSession]
) -> None:
    async with serve(pg_url, trusted_proxies="127.0.0.1") as served:
        assert (await flood(served, http, 50, CLIENT_A))[401] == 50
        assert await sign_in(http(), served, "olivia", PASSWORD, CLIENT_A) == 429
        # Olivia on a new browser, from her own address.
        assert await sign_in(http(), served, "olivia", PASSWORD, CLIENT_B) == 200


async def test_a_known_device_has_its_own_limit(
    served: Served, world: WebWorld, http: Callable[[], aiohttp.ClientSession]
) -> None:
    olivias = http()
    assert await sign_in(olivias, served, "olivia", PASSWORD) == 200
    # Someone else locks Olivia's account with five wrong passwords...
    stranger = http()
    for _ in range(5):
        assert await sign_in(stranger, served, "olivia", "wrong-wrong-wrong") == 401
    assert await sign_in(stranger, served, "olivia", PASSWORD) == 429
    # ...which does not shut out her own browser,
    assert await sign_in(olivias, served, "olivia", PASSWORD) == 200
    # and her browser's own guesses are limited too: a stolen cookie is not a key.
    for _ in range(5):
        assert await sign_in(olivias, served, "olivia", "wrong-wrong-wrong") == 401
    assert await sign_in(olivias, served, "olivia", PASSWORD) == 429
    # A cookie another browser makes up is just a stranger's.
    forger = http()
    forger.cookie_jar.update_cookies({"pb_device": secrets.token_urlsafe(32)})
    assert await sign_in(forger, served, "olivia", PASSWORD) == 429


# -- the password policy -----------------------------------------------------------

NEW_USER = {"username": "dora", "role": "volunteer", "teams": "Montreal"}


async def test_weak_and_over_long_passwords_are_refused_with_a_message(
    client: ClientFactory, world: WebWorld
) -> None:
    olivia = await client("olivia")
    for weak in ("aaaaaaaaaa", "password12", "dora123456"):
        response = await olivia.form("/ops/users", {**NEW_USER, "password": weak})
        html = await response.text()
        assert response.status == 422, weak
        assert 'id="password-error"' in html
        assert "too common or too easy to guess" in html, weak
    response = await olivia.form(
        "/ops/users", {**NEW_USER, "password": secrets.token_urlsafe(1200)[:1500]}
    )
    assert response.status == 422
    assert "at most 1000 characters" in await response.text()
    async with world.sessions() as session:
        assert await session.scalar(select(func.count()).where(User.username == "dora")) == 0


async def test_the_policy_speaks_french(client: ClientFactory) -> None:
    # Adam has no language of his own: his browser's French.
    adam = await client("adam", language="fr")
    response = await adam.form("/ops/users", {**NEW_USER, "password": "password12"})
    assert response.status == 422
    assert "trop courant ou trop facile à deviner" in await response.text()


async def test_the_longest_password_signs_in_everywhere_and_longer_never_does(
    client: ClientFactory, world: WebWorld, http: Callable[[], aiohttp.ClientSession]
) -> None:
    longest = secrets.token_urlsafe(MAX_PASSWORD_LENGTH)[:MAX_PASSWORD_LENGTH]
    olivia = await client("olivia")
    response = await olivia.form(
        "/ops/users",
        {**NEW_USER, "password": longest},
    )
    assert response.status == 200, await response.text()
    served_url = olivia.base
    form_user = await client()
    response = await form_user.form("/login", {"username": "dora", "password": longest})
    assert response.status == 303
    api_user = http()
    async with api_user.post(
        served_url + "/api/session", json={"username": "dora", "password": longest}
    ) as signed:
        assert signed.status == 200
    # Once cut, one character more would have matched; now it is simply wrong.
    async with api_user.post(
        served_url + "/api/session", json={"username": "dora", "password": longest + "x"}
    ) as refused:
        assert refused.status == 401
