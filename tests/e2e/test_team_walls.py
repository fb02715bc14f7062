"""Teams are walls: what one team does with a shared contact, the people it
manages and the tasks it hands out stay within it; only administrators cross.

The world: Montreal (alice, bob, olivia the organizer) runs "Get out the
vote"; Quebec (carol, oscar the organizer) runs "Quebec canvass"; adam
administers both.  The authorization matrix (test_authorization.py) covers
every route; these tests cover what a page shows and what a change leaves.
"""

from __future__ import annotations

import re
import uuid
from html import unescape
from typing import Any

import pytest
from sqlalchemy import select

from dialer.services import contacts as contact_search
from dialer.store.models import CallingListEntry, Contact, ContactPhone, TeamMember, User
from tests.e2e.conftest import ClientFactory
from tests.e2e.webworld import WebWorld


async def _share_ada_with_quebec(world: WebWorld) -> None:
    async with world.sessions.begin() as session:
        session.add(
            CallingListEntry(
                campaign_id=world.other_campaign_id,
                contact_id=world.contacts["ada"],
                volunteer_id=world.users["carol"],
            )
        )


async def test_a_shared_contact_shows_each_team_only_its_own_history(
    client: ClientFactory, world: WebWorld
) -> None:
    await _share_ada_with_quebec(world)
    ada = world.contacts["ada"]
    alice = await client("alice")
    status, _ = await alice.api(
        "POST",
        "/api/outcomes",
        {
            "submission_id": "walls-alice-1",
            "contact_id": ada,
            "campaign_id": world.campaign_id,
            "outcome": "other",
            "comments": "Montreal-only comment",
        },
    )
    assert status == 201
    status, _ = await alice.api(
        "POST", f"/api/contacts/{ada}/notes", {"body": "Montreal-only note"}
    )
    assert status == 201
    carol = await client("carol")
    status, _ = await carol.api("POST", f"/api/contacts/{ada}/notes", {"body": "Quebec note"})
    assert status == 201

    # The contact list reads a shared contact's calls and outcomes the same way.
    _, mine = await alice.page("/contacts?outcome=other")
    assert "Lovelace" in mine
    _, theirs = await carol.page("/contacts?outcome=other")
    assert "Lovelace" not in theirs

    for who, sees, does_not_see in (
        ("carol", ["Quebec note", "Quebec canvass"], ["Montreal-only", "Alice Martin", "Get out"]),
        ("oscar", ["Quebec note"], ["Montreal-only", "Alice Martin", "Get out the vote"]),
        ("olivia", ["Montreal-only comment", "Montreal-only note", "Alice Martin"], ["Quebec"]),
        ("adam", ["Montreal-only comment", "Quebec note", "Carol Roy", "Alice Martin"], []),
    ):
        browser = alice if who == "alice" else await client(who)
        status, html = await browser.page(f"/contacts/{ada}")
        assert status == 200, who
        for text in sees:
            assert text in html, (who, text)
        for text in does_not_see:
            assert text not in html, (who, text)


async def test_a_task_goes_only_to_someone_who_may_see_the_contact(
    client: ClientFactory, world: WebWorld
) -> None:
    alice = await client("alice")
    ada = world.contacts["ada"]

    async def hand_task_to(assignee: str) -> tuple[int, Any]:
        return await alice.api(
            "POST",
            "/api/outcomes",
            {
                "submission_id": f"walls-task-{assignee}-{uuid.uuid4().hex[:8]}",
                "contact_id": ada,
                "campaign_id": world.campaign_id,
                "outcome": "other",
                "task": {"assignee_id": world.users[assignee], "description": "Call Ada back"},
            },
        )

    status, body = await hand_task_to("carol")
    assert status == 422 and "task.assignee_id" in str(body), body
    _, html = await alice.page(f"/contacts/{ada}?campaign={world.campaign_id}")
    assert "Carol Roy" not in html and "Oscar Organizer" not in html
    assert "Bob Tremblay" in html and "Olivia Organizer" in html
    carol = await client("carol")
    _, tasks = await carol.page("/tasks")
    assert "Ada" not in tasks and "Call Ada back" not in tasks
    status, body = await hand_task_to("olivia")
    assert status == 201, body
    # A contact both teams call is still not a way to reach the other team:
    # Montreal's task stays with Montreal.
    await _share_ada_with_quebec(world)
    status, body = await hand_task_to("carol")
    assert status == 422, body
    _, tasks = await carol.page("/tasks")
    assert "Call Ada back" not in tasks


async def test_organizers_manage_only_their_teams_people(
    client: ClientFactory, world: WebWorld
) -> None:
    oscar = await client("oscar")
    _, html = await oscar.page("/ops/users")
    assert "carol" in html and "alice" not in html and "olivia" not in html
    olivia = await client("olivia")
    _, html = await olivia.page("/ops/users")
    assert "alice" in html and "carol" not in html
    # Oscar cannot deactivate Olivia, nor hand out a team that is not his.
    response = await oscar.form(f"/ops/users/{world.users['olivia']}", {"teams": "Quebec"})
    assert response.status == 404
    response = await oscar.form(
        f"/ops/users/{world.users['carol']}", {"teams": "Quebec,Montreal", "active": "1"}
    )
    assert response.status == 422
    response = await oscar.form(
        "/ops/users",
        {"username": "newbie", "teams": "Montreal", "password": "", "role": "volunteer"},
    )
    assert response.status == 422
    async with world.sessions() as session:
        olivia_row = await session.get(User, world.users["olivia"])
        assert olivia_row is not None and olivia_row.is_active
        assert await session.scalar(select(User).where(User.username == "newbie")) is None


async def test_an_organizer_changes_only_their_own_teams_memberships(
    client: ClientFactory, world: WebWorld
) -> None:
    # Bob also helps Quebec; Olivia (Montreal) edits Bob without touching that.
    async with world.sessions.begin() as session:
        quebec = await session.scalar(
            select(TeamMember.team_id).where(TeamMember.user_id == world.users["carol"])
        )
        session.add(TeamMember(team_id=quebec, user_id=world.users["bob"]))
    olivia = await client("olivia")
    response = await olivia.form(
        f"/ops/users/{world.users['bob']}", {"extension": "1002", "teams": "", "active": "1"}
    )
    assert response.status == 303
    async with world.sessions() as session:
        teams = set(
            await session.scalars(
                select(TeamMember.team_id).where(TeamMember.user_id == world.users["bob"])
            )
        )
    assert teams == {quebec}


async def test_a_user_change_that_fails_validation_changes_nothing(
    client: ClientFactory, world: WebWorld
) -> None:
    olivia = await client("olivia")
    alice_id = world.users["alice"]
    for form in (
        {"extension": "10\x0001", "teams": "Montreal", "active": "1"},
        {"extension": "1" * 41, "teams": "Montreal", "active": "1"},
        {"extension": "1001", "teams": "Montreal\x00", "active": "1"},
        {"extension": "1001", "teams": "M" * 201, "active": "1"},
    ):
        response = await olivia.form(f"/ops/users/{alice_id}", form)
        assert response.status in (400, 422), form
    async with world.sessions() as session:
        alice = await session.get(User, alice_id)
        assert alice is not None and alice.sip_extension == "1001" and alice.is_active
        assert (
            await session.scalar(select(TeamMember.team_id).where(TeamMember.user_id == alice_id))
            == world.team_id
        )


async def test_the_live_panel_of_an_organizer_shows_their_teams_calls(
    client: ClientFactory, world: WebWorld
) -> None:
    alice = await client("alice")
    status, call = await alice.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["ada"], "campaign_id": world.campaign_id},
    )
    assert status == 201
    olivia, oscar = await client("olivia"), await client("oscar")
    # The snapshot waits until the hub has taken in every event published.
    _, seen = await olivia.api("GET", "/api/live/snapshot")
    assert any(item["key"] == call["call_id"] for item in seen["items"])
    assert "Alice Martin" in {person["volunteer_name"] for person in seen["roster"]}
    _, other = await oscar.api("GET", "/api/live/snapshot")
    assert all(item["key"] != call["call_id"] for item in other["items"])
    assert {person["volunteer_name"] for person in other["roster"]} == {"Carol Roy"}


async def test_the_contact_lists_pages_keep_their_filters_and_their_wall(
    client: ClientFactory, world: WebWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Next and Previous are keyset links: they keep the search, stay behind
    the team's wall, and a count past its cap says "more than"."""
    async with world.sessions.begin() as session:
        for n in range(130):
            main = n % 4 != 0
            contact = Contact(first_name=f"Page{n:03d}", last_name="Pagination")
            contact.phones = [ContactPhone(e164=f"+1514555{2000 + n:04d}")]
            session.add(contact)
            await session.flush()
            session.add(
                CallingListEntry(
                    campaign_id=world.campaign_id if main else world.other_campaign_id,
                    contact_id=contact.id,
                    volunteer_id=world.users["alice" if main else "carol"],
                )
            )
    monkeypatch.setattr(contact_search, "COUNT_CAP", 60)
    alice = await client("alice")
    seen: list[str] = []
    path: str | None = "/contacts?q=Paginat&score=&list="
    pages = 0
    while path is not None:
        status, html = await alice.page(path)
        assert status == 200
        if pages == 0:
            assert "More than 60 contacts" in html
        seen += re.findall(r">Page(\d{3}) Pagination<", html)
        following = re.search(r'<a href="([^"]+)" rel="next">', html)
        path = unescape(following.group(1)) if following else None
        if path is not None:
            assert "q=Paginat" in path and "after=" in path
        pages += 1
    assert pages == 2
    assert seen == [f"{n:03d}" for n in range(130) if n % 4 != 0]
    # Back from the last page: the first one again.
    previous = re.search(r'<a href="([^"]+)" rel="prev">', html)
    assert previous is not None
    _, first = await alice.page(unescape(previous.group(1)))
    assert re.findall(r">Page(\d{3}) Pagination<", first) == seen[:50]
