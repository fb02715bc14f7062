"""The authorization matrix: every role against every route, enforced server-side.

Roles: nobody signed in; alice, a volunteer in the campaign's team; carol, a
volunteer of another team; olivia, an organizer of the campaign's team;
oscar, an organizer of the other team; adam, an admin of no team.  Volunteers
and organizers see only their teams' campaigns, those campaigns' contacts and
calls; only organizers and admins reach the ops pages and edit campaigns, and
only admins cross teams.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.conftest import Browser, ClientFactory
from tests.e2e.webworld import WebWorld

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


def routes(world: WebWorld, call_id: str) -> list[Route]:
    c, other = world.campaign_id, world.other_campaign_id
    ada, alan = world.contacts["ada"], world.contacts["alan"]
    ops_page = {"alice": 403, "carol": 403, **STAFF}
    main_ops = {"alice": 403, "carol": 403, "olivia": 200, "oscar": 404, "adam": 200}
    main_ops_post = {"alice": 403, "carol": 403, "olivia": 303, "oscar": 404, "adam": 303}
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
        # Deactivating the other team's organizer.
        Route(
            "POST",
            f"/ops/users/{world.users['olivia']}",
            {**main_ops_post, "olivia": 303},
            {"teams": "Montreal"},
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
        # Last: no worker ever claimed the request, so a permitted hang-up
        # cancels it at once (and frees Alice for the routes above).
        Route(
            "POST",
            f"/api/calls/{call_id}/hangup",
            {**MAIN_TEAM, "alice": 202, "olivia": 202, "adam": 202},
        ),
    ]
    return pages + api


async def _status(browser: Browser, route: Route, role: str, index: int) -> int:
    if route.form:
        response = await browser.form(route.path, route.body or {})
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
    status, _ = await browser.api(route.method, route.path, body)
    return status


@pytest.mark.parametrize("role", ROLES)
async def test_every_route_for_every_role(
    client: ClientFactory, world: WebWorld, role: str
) -> None:
    alice = await client("alice")
    status, call = await alice.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["ada"], "campaign_id": world.campaign_id},
    )
    assert status == 201, call
    # Alice's call stays requested (no worker in this world) until the last route.
    browser = alice if role == "alice" else await client(None if role == "anonymous" else role)
    wrong = []
    for index, route in enumerate(routes(world, call["call_id"])):
        expected = route.expected.get(role, 401 if route.path.startswith("/api/") else 303)
        got = await _status(browser, route, role, index)
        if got != expected:
            wrong.append(f"{route.method} {route.path}: expected {expected}, got {got}")
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
