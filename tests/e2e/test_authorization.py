"""The authorization matrix: every role against every route, enforced server-side.

Roles: nobody signed in; alice, a volunteer in the campaign's team; carol, a
volunteer of another team; olivia, an organizer of the campaign's team;
oscar, an organizer of the other team; adam, an admin of no team.  Volunteers
and organizers see only their teams' campaigns, those campaigns' contacts and
calls; only organizers and admins reach the ops pages and edit campaigns, and
only admins cross teams.  A volunteer's own things (a call, a task, a
notification) are theirs: bob, alice's teammate, owns some that alice may not
touch.

Every POST is sent twice: first without its CSRF token (403 for everyone,
nothing written), then with it; a refused one (anonymous, or a 4xx), and
one that names someone else's row inside a request the role may send, must
leave the database as it was.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest
from sqlalchemy import TextClause, select, text
from sqlalchemy.orm import selectinload

from dialer.store.models import Base, Contact, Notification, NotificationPreference
from tests.e2e.conftest import Browser, ClientFactory
from tests.e2e.webworld import (
    PASSWORD,
    WebWorld,
    add_answered_call,
    add_import_job,
    add_notification,
    add_task,
)

ROLES = ["anonymous", "alice", "carol", "olivia", "oscar", "adam"]
STAFF = {"olivia": 200, "oscar": 200, "adam": 200}
# What only the main campaign's team (and admins) may see: 404 for the other team.
MAIN_TEAM = {"alice": 200, "carol": 404, "olivia": 200, "oscar": 404, "adam": 200}
OTHER_TEAM = {"alice": 404, "carol": 200, "olivia": 404, "oscar": 200, "adam": 200}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    # Expected status per role; "anonymous" defaults to 303 (pages) or 401 (API).
    expected: dict[str, int]
    body: Any = None
    form: bool = False
    # Even when let through, the request must change nothing (it names
    # something of someone else's inside a request the role may send).
    changes_nothing: bool = False


@dataclass
class Seeded:
    """What the routes act on beyond the world's rows, keyed by owner."""

    # Alice's call, requested and never claimed (no worker here) until the last route.
    call_id: str = ""
    # Ended calls the contact answered, their outcome owed: alice's and bob's
    # for the main campaign, carol's a manual call (outside any campaign).
    answered: dict[str, str] = field(default_factory=dict)
    tasks: dict[str, int] = field(default_factory=dict)
    notifications: dict[str, int] = field(default_factory=dict)
    # Import jobs: "main" and "other" campaign.
    jobs: dict[str, int] = field(default_factory=dict)
    # The Details form of a contact as stored, with a new first name.
    edit_forms: dict[str, dict[str, str]] = field(default_factory=dict)
    # Ada's form as stored, but naming Alan's number (another team's contact)
    # to delete and put on the do-not-call list.
    foreign_phone_form: dict[str, str] = field(default_factory=dict)


def _edit_form(contact: Contact, first_name: str | None = None) -> dict[str, str]:
    """The Details form as the page fills it: the values, the same again as
    the record was opened ("orig-"), and the one number."""
    [phone] = contact.phones
    stored = {
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "email": contact.email or "",
        "language": contact.language or "",
        "support_score": str(contact.support_score or ""),
        "tags": ", ".join(contact.tags),
        "notes": contact.notes,
        "address": contact.address or "",
        "area": contact.area or "",
        "timezone": contact.timezone or "",
        "new_number_type": "mobile",
        f"phone-{phone.id}-type": phone.phone_type.value,
    }
    return {
        **stored,
        **{f"orig-{name}": value for name, value in stored.items()},
        "first_name": first_name or f"{contact.first_name}-edited",
        "phone_id": str(phone.id),
    }


async def seed(world: WebWorld, alice: Browser) -> Seeded:
    seeded = Seeded()
    status, call = await alice.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["ada"], "campaign_id": world.campaign_id},
    )
    assert status == 201, call
    seeded.call_id = call["call_id"]
    # Added after Alice's request: an outcome owed would refuse it.
    seeded.answered = {
        "alice": await add_answered_call(world, "alice", "marie"),
        "bob": await add_answered_call(world, "bob", "grace"),
        "carol": await add_answered_call(world, "carol", "alan", main=False),
    }
    seeded.tasks = {
        "alice": await add_task(world, "alice", author="bob"),
        "bob": await add_task(world, "bob"),
        "carol": await add_task(
            world, "carol", contact="alan", author="carol", main=False, done=True
        ),
    }
    seeded.notifications = {
        "alice": await add_notification(world, "alice"),
        "bob": await add_notification(world, "bob"),
        "carol": await add_notification(world, "carol", main=False),
    }
    seeded.jobs = {
        "main": await add_import_job(world),
        "other": await add_import_job(world, main=False),
    }
    async with world.sessions() as session:
        for key in ("ada", "alan"):
            contact = await session.scalar(
                select(Contact)
                .where(Contact.id == world.contacts[key])
                .options(selectinload(Contact.phones))
            )
            assert contact is not None
            seeded.edit_forms[key] = _edit_form(contact)
            if key == "ada":
                seeded.foreign_phone_form = _edit_form(contact, contact.first_name)
    alan_phone = world.phones["alan"]
    for name in (f"phone-{world.phones['ada']}-type", f"orig-phone-{world.phones['ada']}-type"):
        del seeded.foreign_phone_form[name]
    seeded.foreign_phone_form |= {
        "phone_id": str(alan_phone),
        f"phone-{alan_phone}-type": "mobile",
        f"phone-{alan_phone}-dnc": "1",
        f"phone-{alan_phone}-remove": "1",
    }
    return seeded


def routes(world: WebWorld, seeded: Seeded) -> list[Route]:
    c, other = world.campaign_id, world.other_campaign_id
    ada, alan = world.contacts["ada"], world.contacts["alan"]
    call_id = seeded.call_id
    users, tasks, notes, jobs = world.users, seeded.tasks, seeded.notifications, seeded.jobs
    ops_page = {"alice": 403, "carol": 403, **STAFF}
    main_ops = {"alice": 403, "carol": 403, "olivia": 200, "oscar": 404, "adam": 200}
    main_ops_post = {"alice": 403, "carol": 403, "olivia": 303, "oscar": 404, "adam": 303}
    other_ops = {**main_ops, "olivia": 404, "oscar": 200}
    other_ops_post = {**main_ops_post, "olivia": 404, "oscar": 303}
    # The user pages answer with the page (200), not a redirect.
    admin_only = {"alice": 403, "carol": 403, "olivia": 403, "oscar": 403, "adam": 200}
    everyone = dict.fromkeys(ROLES[1:], 200)
    everyone_post = dict.fromkeys(ROLES[1:], 303)
    hours = {
        "weekday_start": "00:00",
        "weekday_end": "23:59",
        "weekend_enabled": "1",
        "weekend_start": "00:00",
        "weekend_end": "23:59",
    }
    deactivate = {"active": "0", "confirm": "1"}
    # Not found for anybody signed in: a notification is its reader's alone
    # (not even an administrator's to open), and no task 999999 exists.
    nobody = dict.fromkeys(ROLES[1:], 404)
    # First: an answered call's outcome owed changes what Next, the contact
    # page and a new call answer; each volunteer's own is skipped here.
    owed = [
        # Bob's call: not alice's (his teammate) to see or act on.
        Route(
            "GET",
            f"/api/calls/{seeded.answered['bob']}",
            {**MAIN_TEAM, "alice": 404},
        ),
        Route(
            "POST",
            f"/api/calls/{seeded.answered['bob']}/skip-outcome",
            {**MAIN_TEAM, "alice": 404},
            {"reason": "call_cut_off"},
        ),
        Route(
            "POST",
            f"/api/calls/{seeded.answered['bob']}/hangup",
            {**MAIN_TEAM, "alice": 404, "olivia": 202, "adam": 202},
        ),
        Route(
            "POST",
            f"/api/calls/{seeded.answered['alice']}/skip-outcome",
            MAIN_TEAM,
            {"reason": "wrong_person"},
        ),
        # Carol's manual call belongs to her team (Quebec).
        Route(
            "POST",
            f"/api/calls/{seeded.answered['carol']}/skip-outcome",
            OTHER_TEAM,
            {"reason": "other", "note": "The line dropped."},
        ),
    ]
    pages = [
        Route("GET", "/campaigns", {"alice": 200, "carol": 200, **STAFF}),
        Route("GET", f"/campaigns/{c}", MAIN_TEAM),
        Route("GET", f"/campaigns/{other}", OTHER_TEAM),
        Route("GET", f"/campaigns/{c}/next", {**MAIN_TEAM, "alice": 303}),
        Route("GET", "/contacts", {"alice": 200, "carol": 200, **STAFF}),
        Route("GET", f"/contacts/{ada}", MAIN_TEAM),
        Route("GET", f"/contacts/{alan}", OTHER_TEAM),
        Route("GET", f"/contacts/{ada}?campaign={other}", dict.fromkeys(ROLES[1:], 404)),
        Route("GET", "/tasks", {"alice": 200, "carol": 200, **STAFF}),
        Route("GET", "/ops/live", ops_page),
        Route("GET", "/ops/campaigns", ops_page),
        Route("GET", f"/ops/campaigns/{c}", main_ops),
        Route("GET", f"/ops/campaigns/{c}/edit", main_ops),
        Route("GET", f"/ops/campaigns/{c}/import", main_ops),
        Route("GET", f"/ops/campaigns/{c}/assign", main_ops),
        Route("GET", f"/ops/campaigns/{c}/export.csv", main_ops),
        Route(
            "GET", f"/ops/campaigns/{other}/export.csv", {**main_ops, "olivia": 404, "oscar": 200}
        ),
        Route("GET", "/ops/dnc", ops_page),
        Route("GET", "/ops/users", ops_page),
        Route(
            "POST",
            f"/campaigns/{c}/attendance",
            {**MAIN_TEAM, "alice": 303, "olivia": 303, "adam": 303},
            {"attending": "yes"},
            form=True,
        ),
        Route(
            "POST",
            "/ops/campaigns",
            {"alice": 403, "carol": 403, "olivia": 303, "oscar": 303, "adam": 303},
            {"title": "New"},
            form=True,
        ),
        # An organizer's campaign stays in their own teams.
        Route(
            "POST",
            "/ops/campaigns",
            {"alice": 403, "carol": 403, "olivia": 303, "oscar": 422, "adam": 303},
            {"title": "New", "team_id": str(world.team_id)},
            form=True,
        ),
        Route(
            "POST",
            f"/ops/campaigns/{c}/edit",
            {**main_ops_post, "olivia": 422, "adam": 422},
            {"title": ""},
            form=True,
        ),
        Route(
            "POST",
            f"/ops/campaigns/{c}/assign",
            main_ops_post,
            {"action": "share"},
            form=True,
        ),
        Route(
            "POST",
            "/ops/dnc",
            {"alice": 403, "carol": 403, "olivia": 303, "oscar": 303, "adam": 303},
            {"number": "+15145550111"},
            form=True,
        ),
        Route(
            "POST",
            f"/ops/dnc/{alan}/remove",
            {"alice": 403, "carol": 403, "olivia": 404, "oscar": 303, "adam": 303},
            {},
            form=True,
        ),
        Route(
            "POST",
            f"/ops/users/{world.users['alice']}",
            main_ops_post,
            {"extension": "1001", "teams": "Montreal", "active": "1"},
            form=True,
        ),
        # Deactivating the other team's organizer ("active" must be sent: a
        # form without it leaves the account as it is).
        Route(
            "POST",
            f"/ops/users/{world.users['olivia']}",
            {**main_ops_post, "olivia": 303},
            {"teams": "Montreal", "active": "0"},
            form=True,
        ),
        # -- one's own account ---------------------------------------------------------
        Route("GET", "/account", everyone),
        # Everyone signed in reaches it; the new passwords differ, so it is
        # refused before any (slow) hashing and nothing changes.
        Route(
            "POST",
            "/account/password",
            dict.fromkeys(ROLES[1:], 422),
            {
                "current_password": PASSWORD,
                "new_password": "a brand new passphrase for the matrix",
                "new_password_again": "a brand new passphrase for the matrix!",
            },
            form=True,
        ),
        # -- teams' calling hours: organizers their own teams, admins any ----------------
        Route("GET", "/ops/teams", ops_page),
        Route(
            "POST", f"/ops/teams/{world.team_id}", {**main_ops_post, "oscar": 403}, hours, form=True
        ),
        Route(
            "POST",
            f"/ops/teams/{world.other_team_id}",
            {**other_ops_post, "olivia": 403},
            hours,
            form=True,
        ),
        Route(
            "POST",
            "/ops/teams/999999",
            {**main_ops_post, **dict.fromkeys(STAFF, 404)},
            hours,
            form=True,
        ),
        # -- editing a contact: whoever sees it -----------------------------------------
        Route("GET", f"/contacts/{ada}/edit", MAIN_TEAM),
        Route("GET", f"/contacts/{alan}/edit", OTHER_TEAM),
        # Another contact's number slipped into Ada's form: ignored.
        Route(
            "POST",
            f"/contacts/{ada}/edit",
            {**MAIN_TEAM, "alice": 303, "olivia": 303, "adam": 303},
            seeded.foreign_phone_form,
            form=True,
            changes_nothing=True,
        ),
        Route(
            "POST",
            f"/contacts/{ada}/edit",
            {**MAIN_TEAM, "alice": 303, "olivia": 303, "adam": 303},
            seeded.edit_forms["ada"],
            form=True,
        ),
        Route(
            "POST",
            f"/contacts/{alan}/edit",
            {**OTHER_TEAM, "carol": 303, "oscar": 303, "adam": 303},
            seeded.edit_forms["alan"],
            form=True,
        ),
        # -- notifications: each reader's own -------------------------------------------
        Route("GET", "/notifications", everyone),
        Route(
            "POST", f"/notifications/{notes['alice']}/open", {**nobody, "alice": 303}, {}, form=True
        ),
        # Bob's, alice's teammate: not hers, nor their organizer's, to open.
        Route("POST", f"/notifications/{notes['bob']}/open", nobody, {}, form=True),
        Route(
            "POST", f"/notifications/{notes['carol']}/open", {**nobody, "carol": 303}, {}, form=True
        ),
        Route("POST", "/notifications/read", everyone_post, {}, form=True),
        Route("POST", "/notifications/email", everyone_post, {"email": "on"}, form=True),
        # -- tasks: the assignee, the team's organizers, admins ---------------------------
        Route(
            "POST",
            f"/tasks/{tasks['bob']}/done",
            {**MAIN_TEAM, "alice": 404, "olivia": 303, "adam": 303},
            {},
            form=True,
        ),
        Route(
            "POST",
            f"/tasks/{tasks['alice']}/done",
            {**MAIN_TEAM, "alice": 303, "olivia": 303, "adam": 303},
            {},
            form=True,
        ),
        Route(
            "POST",
            f"/tasks/{tasks['carol']}/reopen",
            {**OTHER_TEAM, "carol": 303, "oscar": 303, "adam": 303},
            {},
            form=True,
        ),
        Route("POST", "/tasks/999999/done", nobody, {}, form=True),
        # -- import reports: the campaign's staff, the job under its own campaign -------
        Route("GET", f"/ops/campaigns/{c}/import/jobs/{jobs['main']}", main_ops),
        Route(
            "GET",
            f"/ops/campaigns/{other}/import/jobs/{jobs['main']}",
            {**main_ops, **dict.fromkeys(STAFF, 404)},
        ),
        Route("GET", f"/ops/campaigns/{c}/import/jobs/{jobs['main']}/rejected.csv", main_ops),
        Route("GET", f"/ops/campaigns/{c}/import/jobs/{jobs['main']}/changes.csv", main_ops),
        Route("GET", f"/ops/campaigns/{other}/import/jobs/{jobs['other']}/rejected.csv", other_ops),
        Route("GET", f"/ops/campaigns/{other}/import/jobs/{jobs['other']}/changes.csv", other_ops),
        # The main campaign's job asked for under the other campaign: nobody's.
        Route(
            "GET",
            f"/ops/campaigns/{other}/import/jobs/{jobs['main']}/rejected.csv",
            {**main_ops, **dict.fromkeys(STAFF, 404)},
        ),
        Route(
            "GET",
            f"/ops/campaigns/{c}/import/jobs/{jobs['other']}/changes.csv",
            {**main_ops, **dict.fromkeys(STAFF, 404)},
        ),
        # -- one user's page: password, role, (de)activation ------------------------------
        Route("GET", f"/ops/users/{users['bob']}", main_ops),
        Route("GET", f"/ops/users/{users['carol']}", other_ops),
        Route("GET", f"/ops/users/{users['adam']}", admin_only),
        Route("POST", f"/ops/users/{users['bob']}/password", main_ops, {"password": ""}, form=True),
        Route(
            "POST", f"/ops/users/{users['carol']}/password", other_ops, {"password": ""}, form=True
        ),
        Route(
            "POST", f"/ops/users/{users['adam']}/password", admin_only, {"password": ""}, form=True
        ),
        # The last active administrator stays one.
        Route(
            "POST",
            f"/ops/users/{users['adam']}/role",
            {**admin_only, "adam": 409},
            {"role": "volunteer"},
            form=True,
        ),
        Route("POST", f"/ops/users/{users['bob']}/active", main_ops, deactivate, form=True),
        Route("POST", f"/ops/users/{users['bob']}/active", main_ops, {"active": "1"}, form=True),
        Route("POST", f"/ops/users/{users['carol']}/active", other_ops, deactivate, form=True),
        # Nobody deactivates themselves.
        Route(
            "POST",
            f"/ops/users/{users['adam']}/active",
            {**admin_only, "adam": 409},
            deactivate,
            form=True,
        ),
        Route(
            "POST",
            f"/ops/users/{users['olivia']}/active",
            {**main_ops, "olivia": 409},
            deactivate,
            form=True,
        ),
        # Role changes after the others: once an organizer, bob's account is no
        # longer his team's organizer's to act on.
        Route(
            "POST", f"/ops/users/{users['bob']}/role", main_ops, {"role": "organizer"}, form=True
        ),
        Route(
            "POST", f"/ops/users/{users['carol']}/role", other_ops, {"role": "organizer"}, form=True
        ),
        # Only an administrator makes administrators (last: bob is one after it).
        Route(
            "POST",
            f"/ops/users/{users['bob']}/role",
            admin_only,
            {"role": "admin"},
            form=True,
        ),
    ]
    api = [
        Route("GET", "/api/me", {"alice": 200, "carol": 200, **STAFF}),
        Route("GET", f"/api/campaigns/{c}/next", MAIN_TEAM),
        Route("GET", f"/api/campaigns/{other}/next", OTHER_TEAM),
        Route("GET", f"/api/campaigns/{c}/next?owner={world.users['bob']}", MAIN_TEAM),
        Route(
            "GET",
            f"/api/campaigns/{c}/next?owner={world.users['carol']}",
            {"alice": 403, "carol": 404, "olivia": 403, "oscar": 404, "adam": 403},
        ),
        Route("GET", f"/api/calls/{call_id}", MAIN_TEAM),
        # A call still going has no outcome to skip yet.
        Route(
            "POST",
            f"/api/calls/{call_id}/skip-outcome",
            {**MAIN_TEAM, "alice": 422, "olivia": 422, "adam": 422},
            {"reason": "call_cut_off"},
        ),
        # Calling Grace (bob's list): alice is already on a call (409 volunteer_busy),
        # staff have no extension (409), carol is not in the team.
        Route(
            "POST",
            "/api/calls",
            {"alice": 409, "carol": 403, "olivia": 409, "oscar": 403, "adam": 409},
            {"contact_id": world.contacts["grace"], "campaign_id": c},
        ),
        Route(
            "POST",
            "/api/calls",
            {"alice": 409, "carol": 404, "olivia": 409, "oscar": 404, "adam": 409},
            {"contact_id": world.contacts["grace"]},
        ),
        Route(
            "POST",
            "/api/outcomes",
            {"alice": 201, "carol": 403, "olivia": 201, "oscar": 403, "adam": 201},
            {"contact_id": world.contacts["gustave"], "campaign_id": c, "outcome": "other"},
        ),
        # Recording on Alice's call: hers, her team's organizer's, an admin's.
        Route(
            "POST",
            "/api/outcomes",
            {"alice": 201, "carol": 403, "olivia": 201, "oscar": 403, "adam": 201},
            {"contact_id": ada, "call_id": call_id, "outcome": "other"},
        ),
        Route(
            "POST",
            f"/api/contacts/{ada}/notes",
            {**MAIN_TEAM, "alice": 201, "olivia": 201, "adam": 201},
            {"body": "note"},
        ),
        Route(
            "POST",
            f"/api/contacts/{alan}/notes",
            {**OTHER_TEAM, "carol": 201, "oscar": 201, "adam": 201},
            {"body": "note"},
        ),
        Route(
            "POST",
            "/api/preferences",
            {"alice": 200, "carol": 200, **STAFF},
            {"confirm_before_dial": False},
        ),
        Route("GET", "/api/live/snapshot", {"alice": 200, "carol": 200, **STAFF}),
        Route("GET", "/api/live/events", {"alice": 200, "carol": 200, **STAFF}),
        Route("GET", "/api/openapi.json", {"anonymous": 200, "alice": 200, "carol": 200, **STAFF}),
        # Supervision: organizers of the call's team and admins only, never the
        # call's own volunteer; the call is still requested, so even they are
        # refused (409), and nobody's refusal writes anything.
        Route(
            "POST",
            f"/api/calls/{call_id}/supervise",
            {**MAIN_TEAM, "alice": 403, "olivia": 409, "adam": 409},
            {"mode": "listen"},
        ),
        # Last: no worker ever claimed the request, so a permitted hang-up
        # cancels it at once (and frees Alice for the routes above).
        Route(
            "POST",
            f"/api/calls/{call_id}/hangup",
            {**MAIN_TEAM, "alice": 202, "olivia": 202, "adam": 202},
        ),
    ]
    return owed + pages + api


async def _status(
    browser: Browser, route: Route, role: str, index: int, *, csrf: bool = True
) -> int:
    if route.form:
        response = await browser.form(route.path, route.body or {}, token=csrf)
        response.release()
        return response.status
    body = route.body
    if route.path == "/api/outcomes" and body is not None:
        body = {**body, "submission_id": f"authz-{role}-{index:04d}"}
    if route.path.startswith("/api/live/events"):
        response = await browser.request("GET", route.path)
        status = response.status
        response.close()
        return status
    status, _ = await browser.api(route.method, route.path, body, csrf=csrf)
    return status


# What changes by itself or on every request, not by what a route does:
# sign-in bookkeeping, worker heartbeats, a session's sliding expiry, the
# notification dispatcher's stamp.
UNWATCHED_TABLES = {"login_failures", "worker_heartbeats", "known_devices"}
UNWATCHED_COLUMNS = {
    ("web_sessions", "last_seen_at"),
    ("web_sessions", "expires_at"),
    ("notifications", "dispatched_at"),
}
State = dict[str, Any]


@cache
def _state_query() -> TextClause:
    """One statement (one round trip: it runs around every POST) that reads
    every watched row of every table, as JSON by table name."""
    parts = []
    for table in Base.metadata.sorted_tables:
        if table.name in UNWATCHED_TABLES:
            continue
        dropped = "".join(
            f" - '{column}'" for name, column in UNWATCHED_COLUMNS if name == table.name
        )
        order = ", ".join(f"t.{column.name}" for column in table.primary_key.columns)
        parts.append(
            f"'{table.name}', (SELECT coalesce(jsonb_agg(to_jsonb(t){dropped} ORDER BY {order}),"
            f" '[]'::jsonb) FROM {table.name} t)"
        )
    return text(f"SELECT jsonb_build_object({', '.join(parts)})")


async def database_state(world: WebWorld) -> State:
    """Every row of every table a route may write, to compare before and after."""
    async with world.sessions() as session:
        state: State = (await session.execute(_state_query())).scalar_one()
    return state


def changed_tables(before: State, after: State) -> list[str]:
    return sorted(name for name in before if before[name] != after.get(name))


@pytest.mark.parametrize("role", ROLES)
async def test_every_route_for_every_role(
    client: ClientFactory, world: WebWorld, role: str
) -> None:
    alice = await client("alice")
    seeded = await seed(world, alice)
    # Alice's call stays requested (no worker in this world) until the last route.
    browser = alice if role == "alice" else await client(None if role == "anonymous" else role)
    wrong = []
    for index, route in enumerate(routes(world, seeded)):
        expected = route.expected.get(role, 401 if route.path.startswith("/api/") else 303)
        name = f"{route.method} {route.path} {route.body or ''}"
        if route.method == "GET":
            got = await _status(browser, route, role, index)
            if got != expected:
                wrong.append(f"{name}: expected {expected}, got {got}")
            continue
        before = await database_state(world)
        got = await _status(browser, route, role, index, csrf=False)
        after = await database_state(world)
        if got != 403:
            wrong.append(f"{name} without its CSRF token: expected 403, got {got}")
        if changed := changed_tables(before, after):
            wrong.append(f"{name} without its CSRF token changed {changed}")
        got = await _status(browser, route, role, index)
        if got != expected:
            wrong.append(f"{name}: expected {expected}, got {got}")
        if role == "anonymous" or expected >= 400 or route.changes_nothing:
            if changed := changed_tables(after, await database_state(world)):
                wrong.append(f"{name} ({got}) should change nothing, changed {changed}")
    # Mark all read and the email choice are the reader's own.
    async with world.sessions() as session:
        unread = set(
            await session.scalars(select(Notification.id).where(Notification.read_at.is_(None)))
        )
        preferences = set(await session.scalars(select(NotificationPreference.user_id)))
    others = {owner for owner in seeded.notifications if owner != role}
    assert {seeded.notifications[owner] for owner in others} <= unread
    assert preferences == ({world.users[role]} if role != "anonymous" else set())
    assert wrong == []


async def test_a_volunteer_never_sees_another_campaigns_contacts_in_search(
    client: ClientFactory, world: WebWorld
) -> None:
    alice = await client("alice")
    _, html = await alice.page("/contacts?q=Turing")
    assert "Alan" not in html
    _, html = await alice.page("/contacts")
    assert "Ada Lovelace" in html and "Grace Hopper" in html and "Alan Turing" not in html
    carol = await client("carol")
    _, html = await carol.page("/contacts")
    assert "Alan Turing" in html and "Ada Lovelace" not in html


async def test_live_events_are_filtered_per_volunteer(
    client: ClientFactory, world: WebWorld
) -> None:
    alice = await client("alice")
    bob = await client("bob")
    olivia = await client("olivia")
    status, call = await alice.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["ada"], "campaign_id": world.campaign_id},
    )
    assert status == 201
    # The live hub takes the new call from the broadcaster in its own task.
    async with asyncio.timeout(5):
        while True:
            _, mine = await alice.api("GET", "/api/live/snapshot")
            if any(item["kind"] == "call" for item in mine["items"]):
                break
            await asyncio.sleep(0.02)
    _, theirs = await bob.api("GET", "/api/live/snapshot")
    _, everything = await olivia.api("GET", "/api/live/snapshot")
    assert [item["key"] for item in mine["items"] if item["kind"] == "call"] == [call["call_id"]]
    assert theirs["items"] == [] and "roster" not in theirs
    assert [item["key"] for item in everything["items"] if item["kind"] == "call"] == [
        call["call_id"]
    ]
    assert {person["volunteer_name"] for person in everything["roster"]} >= {"Alice Martin"}
