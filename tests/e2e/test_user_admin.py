"""Users (issue 17): an administrator or organizer resets a password, changes a
role and deactivates someone; everyone changes their own password; the users
list warns about volunteers who cannot call.  Each in English and French,
with the rules and the team walls."""

from __future__ import annotations

import html as html_lib
import re

import pytest
from markupsafe import escape
from sqlalchemy import select

from dialer.domain.vocabulary import Role
from dialer.store.models import AuditEntry, TeamMember, User, WebSession
from tests.e2e.conftest import Browser, ClientFactory
from tests.e2e.webworld import PASSWORD, WebWorld
from web.i18n import translate as i18n

NEW_PASSWORD = "violet tractor humming seventeen"
LANGUAGES = pytest.mark.parametrize("language", ["en", "fr"])


def text(language: str, message: str, **values: object) -> str:
    """``message`` as the page shows it in ``language`` (HTML-escaped)."""
    i18n.activate(language, i18n.zone_or("America/Toronto", "UTC"))
    return str(escape(i18n._(message, **values)))


async def set_language(world: WebWorld, username: str, language: str) -> None:
    async with world.sessions.begin() as session:
        user = await session.get(User, world.users[username])
        assert user is not None
        user.language = language


async def signed_in(browser: Browser) -> bool:
    status, _ = await browser.api("GET", "/api/me")
    return status == 200


async def audit_actions(world: WebWorld, user_id: int) -> list[AuditEntry]:
    async with world.sessions() as session:
        return list(
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.entity_type == "user", AuditEntry.entity_id == str(user_id))
                .order_by(AuditEntry.id)
            )
        )


async def user_row(world: WebWorld, username: str) -> User:
    async with world.sessions() as session:
        user = await session.scalar(select(User).where(User.username == username))
    assert user is not None
    return user


@LANGUAGES
async def test_a_reset_password_is_shown_once_and_ends_the_users_sessions(
    client: ClientFactory, world: WebWorld, language: str
) -> None:
    await set_language(world, "olivia", language)
    alice = await client("alice")
    olivia = await client("olivia")
    alice_id = world.users["alice"]

    # A typed password follows the policy, in the organizer's language.
    response = await olivia.form(f"/ops/users/{alice_id}/password", {"password": "password12"})
    page = await response.text()
    assert response.status == 422 and 'id="password-error"' in page
    assert (
        text(
            language,
            "This password is too common or too easy to guess; "
            "use a few unrelated words or a password manager.",
        )
        in page
    )
    assert await signed_in(alice)

    # Empty: one is generated and shown this once; Alice is signed out.
    response = await olivia.form(f"/ops/users/{alice_id}/password", {"password": ""})
    page = await response.text()
    assert response.status == 200, page
    assert text(language, "The password was reset.") in page
    found = re.search(r'<code id="new-password">([^<]+)</code>', page)
    assert found is not None
    generated = html_lib.unescape(found.group(1))
    assert not await signed_in(alice)
    assert await signed_in(olivia)
    _, again = await olivia.page(f"/ops/users/{alice_id}")
    assert generated not in again
    await client("alice", password=generated)
    with pytest.raises(AssertionError):
        await client("alice")

    # A typed one is not echoed back.
    response = await olivia.form(f"/ops/users/{alice_id}/password", {"password": NEW_PASSWORD})
    page = await response.text()
    assert response.status == 200 and NEW_PASSWORD not in page and 'id="new-password"' not in page
    await client("alice", password=NEW_PASSWORD)

    entries = [e for e in await audit_actions(world, alice_id) if e.action == "user.password_reset"]
    assert [e.actor_id for e in entries] == [world.users["olivia"]] * 2
    assert all(
        NEW_PASSWORD not in str(e.changes) and generated not in str(e.changes) for e in entries
    )


async def test_password_resets_respect_the_walls(client: ClientFactory, world: WebWorld) -> None:
    oscar = await client("oscar")  # Quebec's organizer
    olivia = await client("olivia")
    response = await oscar.form(f"/ops/users/{world.users['alice']}/password", {"password": ""})
    assert response.status == 404
    response = await olivia.form(f"/ops/users/{world.users['adam']}/password", {"password": ""})
    assert response.status == 403
    alice = await client("alice")
    response = await alice.form(f"/ops/users/{world.users['bob']}/password", {"password": ""})
    assert response.status == 403
    status, _ = await oscar.page(f"/ops/users/{world.users['alice']}")
    assert status == 404
    # Nothing changed: everyone still signs in with their password.
    for username in ("alice", "adam", "bob"):
        await client(username)


async def test_account_changes_never_reach_across_another_teams_wall(
    client: ClientFactory, world: WebWorld
) -> None:
    """A password, a role or a deactivation acts in every team of the person:
    an organizer may act only on a volunteer all of whose teams are theirs."""
    olivia_id, oscar_id = world.users["olivia"], world.users["oscar"]
    async with world.sessions.begin() as session:
        quebec = await session.scalar(
            select(TeamMember.team_id).where(TeamMember.user_id == oscar_id)
        )
        # Bob helps Quebec too; Oscar organizes it.
        session.add(TeamMember(team_id=quebec, user_id=world.users["bob"]))
        montreal = await session.scalar(
            select(TeamMember.team_id).where(TeamMember.user_id == olivia_id)
        )
        session.add(TeamMember(team_id=montreal, user_id=oscar_id))
    olivia = await client("olivia")
    bob_id = world.users["bob"]
    refused = [
        (f"/ops/users/{bob_id}/password", {"password": ""}),
        (f"/ops/users/{bob_id}/role", {"role": "organizer"}),
        (f"/ops/users/{bob_id}/active", {"active": "0", "confirm": "1"}),
        # Oscar, an organizer, is now in Montreal too: still not Olivia's to take over.
        (f"/ops/users/{oscar_id}/password", {"password": ""}),
        (f"/ops/users/{oscar_id}/role", {"role": "volunteer"}),
    ]
    for path, form in refused:
        response = await olivia.form(path, form)
        assert response.status == 403, path
        assert "Only an administrator can change this account" in await response.text()
    for username in ("bob", "oscar"):
        row = await user_row(world, username)
        assert row.is_active
        assert row.role is (Role.VOLUNTEER if username == "bob" else Role.ORGANIZER)
        await client(username)  # the password is unchanged
    # An administrator may.
    adam = await client("adam")
    response = await adam.form(f"/ops/users/{bob_id}/password", {"password": ""})
    assert response.status == 200


@LANGUAGES
async def test_role_changes_follow_the_rules(
    client: ClientFactory, world: WebWorld, language: str
) -> None:
    await set_language(world, "olivia", language)
    await set_language(world, "adam", language)
    olivia = await client("olivia")
    adam = await client("adam")
    alice_id, adam_id = world.users["alice"], world.users["adam"]

    # An organizer makes a teammate an organizer, but never an administrator.
    response = await olivia.form(f"/ops/users/{alice_id}/role", {"role": "organizer"})
    assert response.status == 200
    assert text(language, "The role was changed.") in await response.text()
    assert (await user_row(world, "alice")).role is Role.ORGANIZER
    response = await olivia.form(f"/ops/users/{alice_id}/role", {"role": "admin"})
    assert response.status == 403
    response = await olivia.form(f"/ops/users/{adam_id}/role", {"role": "volunteer"})
    assert response.status == 403
    response = await olivia.form(f"/ops/users/{alice_id}/role", {"role": "boss"})
    assert response.status == 422
    oscar = await client("oscar")
    response = await oscar.form(f"/ops/users/{alice_id}/role", {"role": "volunteer"})
    assert response.status == 404
    assert (await user_row(world, "alice")).role is Role.ORGANIZER

    # The last active administrator cannot demote themselves...
    response = await adam.form(f"/ops/users/{adam_id}/role", {"role": "organizer"})
    assert response.status == 409
    page = await response.text()
    assert (
        text(
            language,
            "This is the last active administrator; make someone else an administrator first.",
        )
        in page
    )
    assert (await user_row(world, "adam")).role is Role.ADMIN
    # ...until someone else is one.
    response = await adam.form(f"/ops/users/{alice_id}/role", {"role": "admin"})
    assert response.status == 200
    response = await adam.form(f"/ops/users/{adam_id}/role", {"role": "organizer"})
    assert response.status == 200
    assert (await user_row(world, "adam")).role is Role.ORGANIZER
    # Adam's session follows at once: the users page no longer offers "admin".
    _, page = await adam.page("/ops/users")
    assert 'value="admin"' not in page

    changes = [e.changes for e in await audit_actions(world, alice_id) if e.action == "user.role"]
    assert changes == [
        {"from": "volunteer", "to": "organizer"},
        {"from": "organizer", "to": "admin"},
    ]


@LANGUAGES
async def test_deactivation_is_confirmed_and_signs_the_person_out(
    client: ClientFactory, world: WebWorld, language: str
) -> None:
    await set_language(world, "olivia", language)
    alice = await client("alice")
    olivia = await client("olivia")
    alice_id = world.users["alice"]

    # The first press only asks.
    response = await olivia.form(f"/ops/users/{alice_id}/active", {"active": "0"})
    page = await response.text()
    assert response.status == 200 and 'id="deactivate-confirm"' in page
    assert text(language, "Deactivate %(name)s?", name="Alice Martin") in page
    assert (await user_row(world, "alice")).is_active and await signed_in(alice)

    response = await olivia.form(f"/ops/users/{alice_id}/active", {"active": "0", "confirm": "1"})
    page = await response.text()
    assert response.status == 200
    assert text(language, "The account was deactivated; its sessions were ended.") in page
    assert not (await user_row(world, "alice")).is_active
    assert not await signed_in(alice)
    async with world.sessions() as session:
        left = await session.scalar(select(WebSession.id).where(WebSession.user_id == alice_id))
    assert left is None
    with pytest.raises(AssertionError):
        await client("alice")
    _, listing = await olivia.page("/ops/users")
    assert text(language, "Deactivated") in listing

    # Nobody deactivates themselves; the list's Save keeps the flag as it is.
    response = await olivia.form(
        f"/ops/users/{world.users['olivia']}/active", {"active": "0", "confirm": "1"}
    )
    assert response.status == 409
    assert text(language, "You cannot deactivate yourself.") in await response.text()
    response = await olivia.form(
        f"/ops/users/{alice_id}", {"extension": "1001", "teams": "Montreal"}
    )
    assert response.status == 303 and not (await user_row(world, "alice")).is_active

    # Another team's organizer cannot reach her; hers can bring her back.
    oscar = await client("oscar")
    response = await oscar.form(f"/ops/users/{alice_id}/active", {"active": "1"})
    assert response.status == 404
    response = await olivia.form(f"/ops/users/{alice_id}/active", {"active": "1"})
    assert response.status == 200
    assert text(language, "The account was reactivated.") in await response.text()
    await client("alice")
    actions = [
        e.action
        for e in await audit_actions(world, alice_id)
        if e.action in ("user.deactivate", "user.reactivate")
    ]
    assert actions == ["user.deactivate", "user.reactivate"]


@LANGUAGES
async def test_everyone_changes_their_own_password(
    client: ClientFactory, world: WebWorld, language: str
) -> None:
    await set_language(world, "alice", language)
    other_device = await client("alice")
    alice = await client("alice")
    status, page = await alice.page("/account")
    assert status == 200 and text(language, "Change my password") in page
    _, campaigns = await alice.page("/campaigns")
    assert 'href="/account"' in campaigns

    async def change(current: str, new: str, again: str | None = None) -> tuple[int, str]:
        response = await alice.form(
            "/account/password",
            {
                "current_password": current,
                "new_password": new,
                "new_password_again": new if again is None else again,
            },
        )
        return response.status, await response.text()

    status, page = await change("wrong password here", NEW_PASSWORD)
    assert status == 422 and text(language, "This is not your current password.") in page
    status, page = await change(PASSWORD, NEW_PASSWORD, "something else entirely")
    assert status == 422 and text(language, "The two new passwords differ.") in page
    status, page = await change(PASSWORD, "password12")
    assert status == 422
    assert (
        text(
            language,
            "This password is too common or too easy to guess; "
            "use a few unrelated words or a password manager.",
        )
        in page
    )
    assert await signed_in(other_device)

    status, page = await change(PASSWORD, NEW_PASSWORD)
    assert status == 200, page
    assert text(language, "Your password was changed.") in page
    assert await signed_in(alice) and not await signed_in(other_device)
    await client("alice", password=NEW_PASSWORD)
    with pytest.raises(AssertionError):
        await client("alice")
    actions = [e.action for e in await audit_actions(world, world.users["alice"])]
    assert "user.password_change" in actions


async def test_wrong_current_passwords_are_rate_limited(
    client: ClientFactory, world: WebWorld
) -> None:
    bob = await client("bob")
    statuses = []
    for _ in range(7):
        response = await bob.form(
            "/account/password",
            {
                "current_password": "not my password",
                "new_password": NEW_PASSWORD,
                "new_password_again": NEW_PASSWORD,
            },
        )
        statuses.append(response.status)
    assert statuses[:5] == [422] * 5 and statuses[-1] == 429, statuses
    # Locked now, even with the right one.
    response = await bob.form(
        "/account/password",
        {
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "new_password_again": NEW_PASSWORD,
        },
    )
    assert response.status == 429
    assert (await user_row(world, "bob")).password_hash != ""
    # The form needs a session: signed out, it goes to the sign-in page.
    anonymous = await client()
    response = await anonymous.form(
        "/account/password",
        {
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "new_password_again": NEW_PASSWORD,
        },
    )
    assert response.status == 303 and "/login" in response.headers["Location"]


@LANGUAGES
async def test_the_users_list_warns_about_volunteers_who_cannot_call(
    client: ClientFactory, world: WebWorld, language: str
) -> None:
    await set_language(world, "adam", language)
    await set_language(world, "olivia", language)
    no_phone = text(language, "No phone extension: Call cannot ring them.")
    no_team = text(language, "In no team: no campaign to call for.")
    adam = await client("adam")
    _, page = await adam.page("/ops/users")
    assert 'id="users-warnings"' not in page and no_phone not in page

    # Bob loses his extension; Dora is in no team; an organizer never warns.
    olivia = await client("olivia")
    response = await olivia.form(f"/ops/users/{world.users['bob']}", {"teams": "Montreal"})
    assert response.status == 303
    response = await adam.form(
        "/ops/users",
        {"username": "dora", "role": "volunteer", "extension": "1004", "password": ""},
    )
    assert response.status == 200
    response = await adam.form(
        "/ops/users", {"username": "otto", "role": "organizer", "password": ""}
    )
    assert response.status == 200
    dora = await user_row(world, "dora")
    otto = await user_row(world, "otto")

    _, page = await adam.page("/ops/users")
    assert 'id="users-warnings"' in page
    bob_row = re.search(rf'<tr id="user-{world.users["bob"]}"[^>]*>(.*?)</tr>', page, re.S)
    dora_row = re.search(rf'<tr id="user-{dora.id}"[^>]*>(.*?)</tr>', page, re.S)
    otto_row = re.search(rf'<tr id="user-{otto.id}"[^>]*>(.*?)</tr>', page, re.S)
    assert bob_row and dora_row and otto_row
    assert no_phone in bob_row.group(1) and no_team not in bob_row.group(1)
    assert no_team in dora_row.group(1) and no_phone not in dora_row.group(1)
    assert "user-warning" not in otto_row.group(1)
    _, detail = await adam.page(f"/ops/users/{dora.id}")
    assert no_team in detail

    # Olivia sees her team's warning, not Dora (outside her teams).
    _, page = await olivia.page("/ops/users")
    assert no_phone in page and f'id="user-{dora.id}"' not in page
    # Fixed: the warning goes.
    async with world.sessions.begin() as session:
        session.add(TeamMember(team_id=world.team_id, user_id=dora.id))
    response = await olivia.form(
        f"/ops/users/{world.users['bob']}", {"extension": "1002", "teams": "Montreal"}
    )
    assert response.status == 303
    _, page = await adam.page("/ops/users")
    assert 'id="users-warnings"' not in page and no_team not in page
