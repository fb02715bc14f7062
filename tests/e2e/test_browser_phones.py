"""Browser phones in the web app: choosing one, the account the browser gets, the
headers that let it use the microphone and reach Asterisk, and what Asterisk
reads (the ps_* views of migration 0013) as users come, change and go."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.compliance import DialingPolicy
from dialer.domain.vocabulary import VolunteerPhone
from dialer.runtime.cli import _user_extensions
from dialer.runtime.settings import Settings
from dialer.services.users import UserError, set_phone
from dialer.services.volunteer_phones import NumberRules, PhoneChoice, volunteer_channel
from dialer.store.models import AuditEntry, CallAttempt, TeamMember, User
from tests.e2e.conftest import Browser, ClientFactory
from tests.e2e.webworld import PASSWORD, Served, WebWorld, serve

WS_URL = "wss://pbx.example.org:8089/ws"


@pytest.fixture
async def served(pg_url: str, world: WebWorld) -> AsyncIterator[Served]:
    async with serve(
        pg_url,
        phone_ws_url=WS_URL,
        phone_ice_servers="stun:stun.example.org:3478, turn:turn.example.org:3478",
        phone_turn_username="phonebank",
        phone_turn_password="turn-secret",
    ) as running:
        yield running


async def asterisk_sees(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    """What realtime gives Asterisk: endpoint id -> (password, AOR's max_contacts)."""
    async with sessions() as session:
        rows = await session.execute(
            text(
                "SELECT e.id, a.password, o.max_contacts, e.webrtc FROM ps_endpoints e"
                " JOIN ps_auths a ON a.id = e.auth JOIN ps_aors o ON o.id = e.aors"
            )
        )
        return {row.id: (row.password, row.max_contacts, row.webrtc) for row in rows}


async def set_active(world: WebWorld, user_id: int, active: bool) -> None:
    async with world.sessions.begin() as session:
        await session.execute(
            text("UPDATE users SET is_active = :active WHERE id = :id"),
            {"active": active, "id": user_id},
        )


async def user_named(sessions: async_sessionmaker[AsyncSession], username: str) -> User:
    async with sessions() as session:
        user = await session.scalar(select(User).where(User.username == username))
    assert user is not None
    return user


async def test_an_organizer_gives_a_new_volunteer_a_browser_phone(
    client: ClientFactory, world: WebWorld
) -> None:
    olivia = await client("olivia")
    response = await olivia.form(
        "/ops/users",
        {
            "username": "wendy",
            "display_name": "Wendy Web",
            "role": "volunteer",
            "phone": "browser",
            "extension": "",
            "teams": "Montreal",
            "password": PASSWORD,
        },
    )
    assert response.status == 200
    wendy = await user_named(world.sessions, "wendy")
    # No extension typed: the first free one of the browser range.
    assert wendy.phone is VolunteerPhone.BROWSER and wendy.sip_extension == "7000"
    assert wendy.sip_secret is not None and len(wendy.sip_secret) == 32
    assert await asterisk_sees(world.sessions) == {"7000": (wendy.sip_secret, "1", "yes")}
    # The audit log says which phone, never the secret.
    async with world.sessions() as session:
        changes = await session.scalar(
            select(AuditEntry.changes).where(
                AuditEntry.action == "user.create", AuditEntry.entity_id == str(wendy.id)
            )
        )
    assert changes is not None and changes["phone"] == "browser"
    assert wendy.sip_secret not in str(changes)

    # Her own account, for her browser only, never cached.
    browser = await client("wendy")
    response = await browser.request("GET", "/api/phone")
    assert response.headers["Cache-Control"] == "no-store"
    account = await response.json()
    assert account == {
        "kind": "browser",
        "choices": ["browser"],
        "websocket": WS_URL,
        "uri": "sip:7000@pbx.example.org",
        "username": "7000",
        "password": wendy.sip_secret,
        "display_name": "Wendy Web",
        "ice_servers": [
            {"urls": "stun:stun.example.org:3478"},
            {
                "urls": "turn:turn.example.org:3478",
                "username": "phonebank",
                "credential": "turn-secret",
            },
        ],
        "echo_test": "*43",
    }
    # Her pages carry the phone and may use the microphone and Asterisk's socket.
    response = await browser.request("GET", "/campaigns")
    html = await response.text()
    assert 'id="browser-phone"' in html and "jssip-3.13.8.min.js" in html
    assert wendy.sip_secret not in html
    assert (
        "connect-src 'self' wss://pbx.example.org:8089"
        in response.headers["Content-Security-Policy"]
    )
    assert "microphone=(self)" in response.headers["Permissions-Policy"]


async def test_a_desk_phone_user_gets_no_account_and_no_phone_on_the_page(
    client: ClientFactory,
) -> None:
    alice = await client("alice")
    status, account = await alice.api("GET", "/api/phone")
    assert status == 200 and account == {"kind": "desk", "choices": ["desk"]}
    status, html = await alice.page("/campaigns")
    assert status == 200 and 'id="browser-phone"' not in html


async def test_switching_phones_makes_and_removes_the_endpoint(
    client: ClientFactory, world: WebWorld
) -> None:
    olivia = await client("olivia")
    alice_id = world.users["alice"]
    form = {"extension": "1001", "pbx": "", "teams": "Montreal", "phone": "browser"}
    response = await olivia.form(f"/ops/users/{alice_id}", form)
    assert response.status == 303
    alice = await user_named(world.sessions, "alice")
    # Her extension stays: it is her endpoint's name now.
    assert await asterisk_sees(world.sessions) == {"1001": (alice.sip_secret, "1", "yes")}
    first_secret = alice.sip_secret

    # Saving the row again keeps her secret: her open browser stays registered;
    # so does saving it with the extension left empty (the phone keeps its own).
    response = await olivia.form(f"/ops/users/{alice_id}", form)
    assert (await user_named(world.sessions, "alice")).sip_secret == first_secret
    response = await olivia.form(f"/ops/users/{alice_id}", {**form, "extension": ""})
    alice = await user_named(world.sessions, "alice")
    assert (alice.sip_extension, alice.sip_secret) == ("1001", first_secret)

    # Deactivated: gone from Asterisk at once.
    async with world.sessions.begin() as session:
        await session.execute(
            text("UPDATE users SET is_active = false WHERE id = :id"), {"id": alice_id}
        )
    assert await asterisk_sees(world.sessions) == {}
    async with world.sessions.begin() as session:
        await session.execute(
            text("UPDATE users SET is_active = true WHERE id = :id"), {"id": alice_id}
        )

    # Back to her desk phone: no endpoint and no secret left.
    response = await olivia.form(f"/ops/users/{alice_id}", {**form, "phone": "desk"})
    alice = await user_named(world.sessions, "alice")
    assert alice.phone is VolunteerPhone.DESK and alice.sip_secret is None
    assert await asterisk_sees(world.sessions) == {}
    status, account = await (await client("alice")).api("GET", "/api/phone")
    assert (status, account["kind"]) == (200, "desk")

    # A value the form never offers is refused, and nothing changes.
    response = await olivia.form(f"/ops/users/{alice_id}", {**form, "phone": "fax"})
    assert response.status == 422
    assert (await user_named(world.sessions, "alice")).phone is VolunteerPhone.DESK


async def test_without_a_websocket_url_the_browser_phone_says_what_is_missing(
    pg_url: str, world: WebWorld, client: ClientFactory
) -> None:
    async with world.sessions.begin() as session:
        await set_phone(session, "alice", PhoneChoice(VolunteerPhone.BROWSER))
    async with serve(pg_url) as bare:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            alice = Browser(http, bare.url)
            status, body = await alice.api(
                "POST", "/api/session", {"username": "alice", "password": PASSWORD}, csrf=False
            )
            assert status == 200
            status, body = await alice.api("GET", "/api/phone")
            assert status == 503 and body["error"]["code"] == "phone_not_configured"
            assert "DIALER_WEB_PHONE_WS_URL" in body["error"]["message"]
            response = await alice.request("GET", "/campaigns")
            assert "microphone=()" in response.headers["Permissions-Policy"]


async def test_the_cli_gives_a_phone_and_refuses_a_taken_extension(
    world: WebWorld,
) -> None:
    async with world.sessions.begin() as session:
        bob = await set_phone(session, "bob", PhoneChoice(VolunteerPhone.BROWSER, extension="7100"))
        assert bob.sip_extension == "7100" and bob.sip_secret
    async with world.sessions.begin() as session:
        with pytest.raises(UserError) as refused:
            await set_phone(session, "alice", PhoneChoice(VolunteerPhone.BROWSER, extension="7100"))
        assert refused.value.field == "extension"
    async with world.sessions.begin() as session:
        with pytest.raises(UserError):
            await set_phone(session, "nobody", PhoneChoice(VolunteerPhone.BROWSER))


async def test_an_own_number_is_approved_by_the_organizer_who_gives_it(
    client: ClientFactory, world: WebWorld
) -> None:
    olivia = await client("olivia")
    fields = {
        "username": "maude",
        "role": "volunteer",
        "phone": "own_number",
        "teams": "Montreal",
        "password": PASSWORD,
    }
    # Outside the dialing policy (Canada and France here), or
    # not a number at all: refused, with the reason, and nobody is created.
    for typed, reason in (("+44 20 7946 0958", "dialing policy"), ("12", "invalid")):
        response = await olivia.form("/ops/users", {**fields, "own_number": typed})
        assert response.status == 422
        assert reason in await response.text()
    response = await olivia.form("/ops/users", {**fields, "own_number": "514 555 0123"})
    assert response.status == 200
    maude = await user_named(world.sessions, "maude")
    assert maude.phone is VolunteerPhone.OWN_NUMBER and maude.own_number == "+15145550123"
    assert maude.own_number_approved_by_id == world.users["olivia"]
    assert maude.own_number_approved_at is not None and maude.sip_secret is None
    assert await asterisk_sees(world.sessions) == {}
    status, account = await (await client("maude")).api("GET", "/api/phone")
    assert (status, account) == (200, {"kind": "own_number", "choices": ["own_number"]})


async def test_a_call_to_an_own_number_the_policy_no_longer_allows_is_refused(
    client: ClientFactory, world: WebWorld
) -> None:
    # Set while allowed; a premium-rate number is what a tampered row would hold.
    async with world.sessions.begin() as session:
        await session.execute(
            text(
                "UPDATE users SET phone = 'own_number', own_number = '+19005550123',"
                " own_number_approved_at = now() WHERE username = 'alice'"
            )
        )
    alice = await client("alice")
    status, body = await alice.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["ada"], "campaign_id": world.campaign_id},
    )
    assert status == 409 and body["error"]["code"] == "own_number_not_allowed"
    assert "own phone number" in body["error"]["message"]


def test_an_own_number_is_dialed_through_the_contacts_context() -> None:
    user = User(phone=VolunteerPhone.OWN_NUMBER, own_number="+15145550123", sip_extension="1001")
    channel = volunteer_channel(user, template="PJSIP/{extension}", outbound_context="dialer-out")
    assert channel == "Local/15145550123@dialer-out/n"
    user.phone = VolunteerPhone.BROWSER
    assert volunteer_channel(user, template="PJSIP/{extension}", outbound_context="x") == (
        "PJSIP/1001"
    )


async def test_a_session_can_ring_the_volunteers_own_number_instead(
    client: ClientFactory, world: WebWorld
) -> None:
    """A browser-phone volunteer with an approved own number takes this
    session's calls on their mobile; another session keeps the browser."""
    olivia = await client("olivia")
    alice_id = world.users["alice"]
    form = {
        "extension": "1001",
        "pbx": "",
        "teams": "Montreal",
        "phone": "browser",
        "own_number": "514 555 0177",
    }
    assert (await olivia.form(f"/ops/users/{alice_id}", form)).status == 303
    alice = await user_named(world.sessions, "alice")
    assert alice.phone is VolunteerPhone.BROWSER and alice.own_number == "+15145550177"

    laptop, other = await client("alice"), await client("alice")
    status, account = await laptop.api("GET", "/api/phone")
    assert account["kind"] == "browser" and account["choices"] == ["browser", "own_number"]
    # Her pages offer the choice in the header.
    status, html = await laptop.page("/campaigns")
    assert 'id="phone-choice"' in html and "+15145550177" in html

    status, body = await laptop.api("POST", "/api/phone", {"kind": "own_number"})
    assert (status, body["kind"]) == (200, "own_number")
    status, html = await laptop.page("/campaigns")
    assert 'id="browser-phone"' not in html  # no browser phone to register now
    status, call = await laptop.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["ada"], "campaign_id": world.campaign_id},
    )
    assert status == 201, call
    async with world.sessions() as session:
        rang = await session.scalar(
            select(CallAttempt.volunteer_phone).where(CallAttempt.call_id == call["call_id"])
        )
    assert rang is VolunteerPhone.OWN_NUMBER
    # The other session still rings the browser.
    status, account = await other.api("GET", "/api/phone")
    assert account["kind"] == "browser"

    # A phone she does not have is refused; so is nonsense.
    for kind in ("desk", "fax", None):
        status, body = await laptop.api("POST", "/api/phone", {"kind": kind})
        assert status == 422 and body["error"]["fields"]["kind"]

    # The organizer clears her own number: the session falls back to the browser.
    assert (await olivia.form(f"/ops/users/{alice_id}", {**form, "own_number": ""})).status == 303
    status, account = await laptop.api("GET", "/api/phone")
    assert account["kind"] == "browser" and account["choices"] == ["browser"]


async def test_the_header_form_chooses_the_phone_without_a_script(
    client: ClientFactory, world: WebWorld
) -> None:
    async with world.sessions.begin() as session:
        await set_phone(
            session,
            "bob",
            PhoneChoice(VolunteerPhone.DESK, extension="1002", own_number="+15145550155"),
            numbers=NumberRules("CA", DialingPolicy.parse(["CA"], [])),
        )
    bob = await client("bob")
    response = await bob.form("/account/phone", {"phone": "own_number", "next": "/tasks"})
    assert response.status == 303 and response.headers["Location"] == "/tasks"
    assert (await bob.api("GET", "/api/phone"))[1]["kind"] == "own_number"
    response = await bob.form("/account/phone", {"phone": "desk", "next": "https://evil.example"})
    assert response.headers["Location"] == "/"
    assert (await bob.api("GET", "/api/phone"))[1]["kind"] == "desk"


async def test_a_password_reset_or_deactivation_gives_the_browser_phone_a_new_password(
    client: ClientFactory, world: WebWorld
) -> None:
    async with world.sessions.begin() as session:
        await set_phone(session, "alice", PhoneChoice(VolunteerPhone.BROWSER))
    secrets = [(await user_named(world.sessions, "alice")).sip_secret]
    # Her own password change (it ends her other sessions)...
    alice = await client("alice")
    new = "a brand new passphrase, long"
    response = await alice.form(
        "/account/password",
        {"current_password": PASSWORD, "new_password": new, "new_password_again": new},
    )
    assert response.status in (200, 303)
    secrets.append((await user_named(world.sessions, "alice")).sip_secret)
    # ...an administrator's reset, and a deactivation: a new secret each time.
    adam = await client("adam")
    response = await adam.form(f"/ops/users/{world.users['alice']}/password", {"password": ""})
    assert response.status in (200, 303)
    secrets.append((await user_named(world.sessions, "alice")).sip_secret)
    response = await adam.form(
        f"/ops/users/{world.users['alice']}/active", {"active": "0", "confirm": "1"}
    )
    secrets.append((await user_named(world.sessions, "alice")).sip_secret)
    assert None not in secrets and len(set(secrets)) == 4


async def test_only_an_organizer_of_all_their_teams_changes_a_volunteers_phone(
    client: ClientFactory, world: WebWorld
) -> None:
    """Bob is in Montreal; Oscar runs Quebec.  Once Bob is in Quebec too,
    Oscar manages him there but may not send his calls to another number."""
    async with world.sessions.begin() as session:
        session.add(TeamMember(team_id=world.other_team_id, user_id=world.users["bob"]))
    oscar = await client("oscar")
    form = {"extension": "1002", "pbx": "", "teams": "Quebec", "phone": "own_number",
            "own_number": "514 555 0199"}  # fmt: skip
    response = await oscar.form(f"/ops/users/{world.users['bob']}", form)
    assert response.status == 403
    bob = await user_named(world.sessions, "bob")
    assert bob.phone is VolunteerPhone.DESK and bob.own_number is None
    olivia = await client("olivia")
    form["teams"] = "Montreal"
    response = await olivia.form(f"/ops/users/{world.users['bob']}", form)
    assert response.status == 403  # Olivia does not run Quebec either
    adam = await client("adam")
    form["teams"] = "Montreal, Quebec"
    assert (await adam.form(f"/ops/users/{world.users['bob']}", form)).status == 303
    assert (await user_named(world.sessions, "bob")).own_number == "+15145550199"


async def test_check_pbx_looks_up_desk_phones_only_by_default(pg_url: str, world: WebWorld) -> None:
    """A browser phone registers only while its volunteer works: never a failure."""
    async with world.sessions.begin() as session:
        await set_phone(session, "alice", PhoneChoice(VolunteerPhone.BROWSER))
    settings = Settings(_env_file=None, database_url=SecretStr(pg_url))
    assert await _user_extensions(settings) == ["1002", "1003", "1009"]
