"""Sign-in, sessions, CSRF, headers and hostile input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest
from sqlalchemy import select, update
from yarl import URL

from dialer.store.models import Contact, ContactNote, LoginFailure, WebSession, utcnow
from tests.e2e.conftest import ClientFactory, form_token
from tests.e2e.webworld import PASSWORD, Served, WebWorld, serve


async def test_sign_in_with_the_form_sets_a_safe_cookie(client: ClientFactory) -> None:
    browser = await client()
    response = await browser.form(
        "/login", {"username": "alice", "password": PASSWORD, "next": "/contacts"}
    )
    assert response.status == 303
    assert response.headers["Location"] == "/contacts"
    cookie = response.cookies["pb_session"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert not cookie["secure"]  # served over http://127.0.0.1
    status, html = await browser.page("/contacts")
    assert status == 200 and "Ada Lovelace" in html


async def test_cookies_are_secure_when_the_site_is_https(pg_url: str, world: WebWorld) -> None:
    async with serve(pg_url, public_url="https://phonebank.example.org") as served:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            response = await http.post(
                served.url + "/api/session", json={"username": "alice", "password": PASSWORD}
            )
            assert response.status == 200
            assert response.cookies["pb_session"]["secure"] is True
            assert "Strict-Transport-Security" in response.headers


async def test_wrong_password_and_the_rate_limit(client: ClientFactory, world: WebWorld) -> None:
    browser = await client()
    for _ in range(5):
        response = await browser.form("/login", {"username": "alice", "password": "nope-nope-nope"})
        assert response.status == 401
        assert "Wrong username or password." in await response.text()
    # Locked for a while, even with the right password; other users are not.
    response = await browser.form("/login", {"username": "ALICE", "password": PASSWORD})
    assert response.status == 429
    status, body = await browser.api(
        "POST", "/api/session", {"username": "alice", "password": PASSWORD}, csrf=False
    )
    assert status == 429 and body["error"]["code"] == "too_many_attempts"
    assert (
        int(
            (await browser.request("POST", "/api/session", json={})).headers.get("Retry-After", "1")
        )
        >= 0
    )
    status, _ = await browser.api(
        "POST", "/api/session", {"username": "bob", "password": PASSWORD}, csrf=False
    )
    assert status == 200
    # Once the window has passed, alice can sign in again.
    async with world.sessions.begin() as session:
        await session.execute(update(LoginFailure).values(at=utcnow() - timedelta(hours=1)))
    status, _ = await browser.api(
        "POST", "/api/session", {"username": "alice", "password": PASSWORD}, csrf=False
    )
    assert status == 200


async def test_unknown_user_is_refused_like_a_wrong_password(client: ClientFactory) -> None:
    browser = await client()
    status, body = await browser.api(
        "POST", "/api/session", {"username": "nobody", "password": PASSWORD}, csrf=False
    )
    assert status == 401 and body["error"]["code"] == "bad_credentials"


async def test_sign_out_ends_the_session_on_the_server(client: ClientFactory) -> None:
    alice = await client("alice")
    token = alice.http.cookie_jar.filter_cookies(URL(alice.base))["pb_session"].value
    response = await alice.form("/logout", {})
    assert response.status == 303
    # Even a copy of the old cookie no longer works.
    async with aiohttp.ClientSession(cookies={"pb_session": token}) as thief:
        async with thief.get(alice.base + "/api/me") as stolen:
            assert stolen.status == 401


@pytest.mark.parametrize("deadline", ["idle", "absolute"])
async def test_sessions_expire(client: ClientFactory, world: WebWorld, deadline: str) -> None:
    alice = await client("alice")
    assert (await alice.api("GET", "/api/me"))[0] == 200
    async with world.sessions.begin() as session:
        values = (
            {"last_seen_at": utcnow() - timedelta(hours=3)}
            if deadline == "idle"
            else {"expires_at": utcnow() - timedelta(seconds=1)}
        )
        await session.execute(update(WebSession).values(**values))
    status, body = await alice.api("GET", "/api/me")
    assert status == 401 and body["error"]["code"] == "unauthenticated"
    response = await alice.request("GET", "/campaigns")
    assert response.status == 303
    assert response.headers["Location"].startswith("/login?next=/campaigns")
    async with world.sessions() as session:
        assert await session.scalar(select(WebSession)) is None


async def test_activity_keeps_an_idle_session_alive(client: ClientFactory, world: WebWorld) -> None:
    alice = await client("alice")
    async with world.sessions.begin() as session:
        await session.execute(
            update(WebSession).values(last_seen_at=utcnow() - timedelta(minutes=110))
        )
    assert (await alice.api("GET", "/api/me"))[0] == 200
    async with world.sessions() as session:
        stored = await session.scalar(select(WebSession))
    assert stored is not None and utcnow() - stored.last_seen_at < timedelta(minutes=1)


# -- CSRF -----------------------------------------------------------------------------


async def test_api_calls_need_the_csrf_header(client: ClientFactory, world: WebWorld) -> None:
    alice = await client("alice")
    body = {"contact_id": world.contacts["ada"], "campaign_id": world.campaign_id}
    status, answer = await alice.api("POST", "/api/calls", body, csrf=False)
    assert status == 403 and answer["error"]["code"] == "csrf"
    status, answer = await alice.api(
        "POST", "/api/calls", body, csrf=False, headers={"X-CSRF-Token": "forged"}
    )
    assert status == 403 and answer["error"]["code"] == "csrf"
    status, _ = await alice.api("POST", "/api/calls", body)
    assert status == 201


async def test_forms_need_the_csrf_field(client: ClientFactory, world: WebWorld) -> None:
    alice = await client("alice")
    path = f"/campaigns/{world.campaign_id}/attendance"
    response = await alice.form(path, {"attending": "yes"}, token=False)
    assert response.status == 403
    assert "Security check failed" in await response.text()
    response = await alice.form(path, {"attending": "yes"})
    assert response.status == 303


async def test_cross_site_requests_are_refused_even_with_the_token(
    client: ClientFactory, world: WebWorld
) -> None:
    alice = await client("alice")
    body = {"contact_id": world.contacts["ada"]}
    status, answer = await alice.api(
        "POST", "/api/calls", body, headers={"Origin": "https://evil.example"}
    )
    assert status == 403 and answer["error"]["code"] == "csrf"
    status, answer = await alice.api(
        "POST", "/api/calls", body, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert status == 403


async def test_the_login_form_needs_its_pre_session_token(client: ClientFactory) -> None:
    browser = await client()
    response = await browser.form(
        "/login", {"username": "alice", "password": PASSWORD}, token=False
    )
    assert response.status == 403
    # A JSON sign-in cannot come from a cross-site form; a form-encoded one is refused.
    response = await browser.request(
        "POST", "/api/session", data={"username": "alice", "password": PASSWORD}
    )
    assert response.status == 403


async def test_security_headers(served: Served) -> None:
    async with aiohttp.ClientSession() as http:
        response = await http.get(served.url + "/login")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    pre = response.cookies["pb_csrf"]
    assert pre["httponly"] is True and pre["samesite"] == "Strict"


async def test_no_open_redirect_after_sign_in(client: ClientFactory) -> None:
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        browser = await client()
        response = await browser.form(
            "/login", {"username": "alice", "password": PASSWORD, "next": target}
        )
        assert response.status == 303
        assert response.headers["Location"] == "/campaigns"


# -- hostile input -------------------------------------------------------------------

SCRIPT = '<script>alert("x")</script>'


@pytest.fixture
async def hostile(world: WebWorld) -> AsyncIterator[int]:
    async with world.sessions.begin() as session:
        contact = await session.get(Contact, world.contacts["ada"])
        assert contact is not None
        contact.first_name = SCRIPT
        contact.tags = ['"><img src=x onerror=alert(1)>']
        session.add(ContactNote(contact_id=contact.id, author_id=world.users["alice"], body=SCRIPT))
    yield world.contacts["ada"]


async def test_typed_markup_is_shown_escaped(
    client: ClientFactory, world: WebWorld, hostile: int
) -> None:
    olivia = await client("olivia")
    for path in (
        "/contacts",
        f"/contacts/{hostile}?campaign={world.campaign_id}",
        f"/campaigns/{world.campaign_id}?owner={world.users['alice']}",
    ):
        status, html = await olivia.page(path)
        assert status == 200, path
        assert SCRIPT not in html, path
        assert "&lt;script&gt;" in html, path
        assert "<img src=x" not in html, path


async def test_markup_in_the_brief_and_survey_is_escaped(
    client: ClientFactory, world: WebWorld
) -> None:
    olivia = await client("olivia")
    _, html = await olivia.page(f"/ops/campaigns/{world.campaign_id}/edit")
    response = await olivia.form(
        f"/ops/campaigns/{world.campaign_id}/edit",
        {
            "title": SCRIPT,
            "brief": SCRIPT,
            "status": "active",
            "team_id": str(world.team_id),
            "weekday_start": "00:00",
            "weekday_end": "23:59",
            "max_attempts": "3",
            "retry_delay_minutes": "0",
            "survey": '{"questions": [{"id": "q", "label": "'
            + SCRIPT.replace('"', '\\"')
            + '", "type": "text"}]}',
        },
    )
    assert response.status == 303, await response.text()
    alice = await client("alice")
    for path in ("/campaigns", f"/contacts/{world.contacts['ada']}?campaign={world.campaign_id}"):
        _, html = await alice.page(path)
        assert SCRIPT not in html and "&lt;script&gt;" in html


async def test_oversize_fields_are_refused(client: ClientFactory, world: WebWorld) -> None:
    alice = await client("alice")
    status, body = await alice.api(
        "POST",
        "/api/outcomes",
        {
            "submission_id": "sub-big-0001",
            "contact_id": world.contacts["ada"],
            "campaign_id": world.campaign_id,
            "outcome": "other",
            "comments": "x" * 10_001,
        },
    )
    assert status == 422 and "comments" in body["error"]["fields"]
    status, body = await alice.api(
        "POST", f"/api/contacts/{world.contacts['ada']}/notes", {"body": "x" * 10_001}
    )
    assert status == 422 and "body" in body["error"]["fields"]
    status, body = await alice.api(
        "POST", "/api/outcomes", {"submission_id": "x", "padding": "y" * 70_000}
    )
    assert status == 413 and body["error"]["code"] == "too_large"
    response = await alice.form(
        f"/campaigns/{world.campaign_id}/attendance", {"attending": "yes", "x": "y" * 20_001}
    )
    assert response.status == 413
    olivia = await client("olivia")
    response = await olivia.form("/ops/campaigns", {"title": "t" * 301})
    assert response.status == 422
    assert "At most 300 characters." in await response.text()


async def test_non_json_api_bodies_are_refused(client: ClientFactory, world: WebWorld) -> None:
    alice = await client("alice")
    response = await alice.request(
        "POST", "/api/calls", data="contact_id=1", headers={"X-CSRF-Token": alice.csrf}
    )
    assert response.status in (403, 415)
    status, body = await alice.api(
        "POST", "/api/calls", None, data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert status == 400 and body["error"]["code"] == "bad_json"


async def test_a_page_token_is_a_form_token(client: ClientFactory, served: Served) -> None:
    alice = await client("alice")
    _, html = await alice.page("/campaigns")
    assert form_token(html) == alice.csrf
