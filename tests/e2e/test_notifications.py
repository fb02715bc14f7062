"""Notifications over HTTP: each trigger makes one, a repeat makes none, the
team walls hold, the bell counts them, and opening one marks it read.

The world (tests/e2e/webworld.py): Montreal (alice, bob, olivia the
organizer) runs "Get out the vote"; Quebec (carol, oscar) runs "Quebec
canvass"; adam administers both.  bob reads French.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import aiohttp
from sqlalchemy import delete, select

from dialer.domain.notifications import NotificationKind
from dialer.domain.vocabulary import CampaignStatus
from dialer.services.notifications import NotificationDispatcher
from dialer.store.models import (
    CallingListEntry,
    Campaign,
    Contact,
    ContactPhone,
    Notification,
    TeamMember,
    utcnow,
)
from tests.e2e.conftest import Browser, ClientFactory
from tests.e2e.importing import upload_csv
from tests.e2e.webworld import ALL_DAY, WebWorld


async def _notifications(world: WebWorld, username: str) -> list[Notification]:
    async with world.sessions() as session:
        found = await session.scalars(
            select(Notification)
            .where(Notification.user_id == world.users[username])
            .order_by(Notification.id)
        )
        return list(found)


def _bell(html: str) -> int:
    found = re.search(r'class="bell-count">(\d+)', html)
    return int(found.group(1)) if found else 0


async def _draft(world: WebWorld, title: str = "Phone the members") -> int:
    async with world.sessions.begin() as session:
        campaign = Campaign(
            title=title,
            status=CampaignStatus.DRAFT,
            team_id=world.team_id,
            allowed_caller_ids=["+15145550000"],
            calling_hours=ALL_DAY,
        )
        session.add(campaign)
        await session.flush()
        return campaign.id


def _editor_form(world: WebWorld, title: str, status: str) -> dict[str, str]:
    return {
        "title": title,
        "team_id": str(world.team_id),
        "status": status,
        "caller_ids": "+1 514 555 0000",
        "weekday_start": "00:00",
        "weekday_end": "23:59",
        "max_attempts": "3",
        "retry_delay_minutes": "0",
    }


async def _save(olivia: Browser, campaign_id: int, form: dict[str, str]) -> None:
    response = await olivia.form(f"/ops/campaigns/{campaign_id}/edit", form)
    assert response.status == 303, await response.text()


async def test_activating_a_campaign_tells_its_volunteers_once(
    client: ClientFactory, world: WebWorld
) -> None:
    campaign_id = await _draft(world)
    olivia = await client("olivia")
    await _save(olivia, campaign_id, _editor_form(world, "Phone the members", "active"))

    for volunteer in ("alice", "bob"):
        [only] = await _notifications(world, volunteer)
        assert only.kind is NotificationKind.NEW_CAMPAIGN and only.campaign_id == campaign_id
    # Another team's volunteer, and the organizer who did it, hear nothing.
    assert await _notifications(world, "carol") == []
    assert await _notifications(world, "olivia") == []

    # Saved again, paused and restarted: still one each.
    await _save(olivia, campaign_id, _editor_form(world, "Phone the members", "active"))
    await _save(olivia, campaign_id, _editor_form(world, "Phone the members", "paused"))
    await _save(olivia, campaign_id, _editor_form(world, "Phone the members", "active"))
    assert len(await _notifications(world, "alice")) == 1

    # Shown in each reader's language, with the count on the bell.
    alice = await client("alice")
    _, html = await alice.page("/notifications")
    assert "New calling action: Phone the members" in html
    assert _bell(html) == 1
    bob = await client("bob", language="fr")
    _, html = await bob.page("/notifications")
    assert "Nouvelle action d&#39;appel : Phone the members" in html
    assert "Tout marquer comme lu" in html


async def _unassigned(world: WebWorld, count: int) -> None:
    async with world.sessions.begin() as session:
        for index in range(count):
            contact = Contact(first_name=f"New{index}", last_name="Member")
            contact.phones = [ContactPhone(e164=f"+1514555030{index}")]
            session.add(contact)
            await session.flush()
            session.add(CallingListEntry(campaign_id=world.campaign_id, contact_id=contact.id))


async def test_an_assignment_batch_tells_each_volunteer_once(
    client: ClientFactory, world: WebWorld
) -> None:
    await _unassigned(world, 3)
    olivia = await client("olivia")
    share = [
        ("action", "share"),
        ("volunteer", str(world.users["alice"])),
        ("volunteer", str(world.users["bob"])),
        # Not on the team: left out of the sharing, and told nothing.
        ("volunteer", str(world.users["carol"])),
    ]
    response = await olivia.form(f"/ops/campaigns/{world.campaign_id}/assign", share)
    assert response.status == 303
    [to_alice] = await _notifications(world, "alice")
    [to_bob] = await _notifications(world, "bob")
    assert to_alice.kind is NotificationKind.ASSIGNMENT
    assert to_alice.params == {"count": 2} and to_bob.params == {"count": 1}
    assert await _notifications(world, "carol") == []

    # The same form sent again finds nothing left to share: no new notification.
    response = await olivia.form(f"/ops/campaigns/{world.campaign_id}/assign", share)
    assert response.status == 303
    assert len(await _notifications(world, "alice")) == 1

    alice = await client("alice")
    _, html = await alice.page("/notifications")
    assert "2 contacts assigned to you in Get out the vote" in html
    bob = await client("bob", language="fr")
    _, html = await bob.page("/notifications")
    assert "1 contact vous a été attribué dans Get out the vote" in html

    # Handing alice's open contacts to bob is a new batch for bob.
    move = {"action": "move", "from": str(world.users["alice"]), "to": str(world.users["bob"])}
    response = await olivia.form(f"/ops/campaigns/{world.campaign_id}/assign", move)
    assert response.status == 303
    latest = (await _notifications(world, "bob"))[-1]
    assert latest.kind is NotificationKind.ASSIGNMENT and latest.params["count"] >= 2


def _outcome_with_task(world: WebWorld, submission: str, assignee: str) -> dict[str, object]:
    return {
        "submission_id": submission,
        "contact_id": world.contacts["ada"],
        "campaign_id": world.campaign_id,
        "outcome": "other",
        "task": {
            "assignee_id": world.users[assignee],
            "description": "Send her the polling station address",
            "due_on": (utcnow().date() + timedelta(days=2)).isoformat(),
        },
    }


async def test_a_task_tells_its_assignee_once(client: ClientFactory, world: WebWorld) -> None:
    alice = await client("alice")
    body = _outcome_with_task(world, "notify-task-1", "bob")
    status, answer = await alice.api("POST", "/api/outcomes", body)
    assert status == 201, answer
    # A re-sent submission (the same id) is a duplicate: no second notification.
    status, _ = await alice.api("POST", "/api/outcomes", body)
    assert status in (200, 201)
    [only] = await _notifications(world, "bob")
    assert only.kind is NotificationKind.TASK and only.task_id is not None
    # A task for oneself is no news.
    status, _ = await alice.api(
        "POST", "/api/outcomes", _outcome_with_task(world, "notify-task-2", "alice")
    )
    assert status == 201
    assert await _notifications(world, "alice") == []

    bob = await client("bob", language="fr")
    _, html = await bob.page("/notifications")
    assert "Nouvelle tâche pour Ada Lovelace : Send her the polling station address" in html


async def test_due_call_backs_are_told_once_within_the_walls(
    served: object, world: WebWorld
) -> None:
    now = utcnow()
    async with world.sessions.begin() as session:
        entries = {
            entry.contact_id: entry for entry in await session.scalars(select(CallingListEntry))
        }
        # alice's Ada: due a minute ago; bob's Grace: due tomorrow.
        entries[world.contacts["ada"]].callback_at = now - timedelta(minutes=1)
        entries[world.contacts["grace"]].callback_at = now + timedelta(days=1)
        # Marie is on Montreal's list but given to carol, who is not on that team.
        entries[world.contacts["marie"]].volunteer_id = world.users["carol"]
        entries[world.contacts["marie"]].callback_at = now - timedelta(minutes=5)
        # Carol's own Alan in Quebec's campaign: hers to hear about.
        entries[world.contacts["alan"]].callback_at = now - timedelta(minutes=2)

    # Two web processes scanning at once, then again: one notification each.
    first, second = NotificationDispatcher(world.sessions), NotificationDispatcher(world.sessions)
    await asyncio.gather(first.scan_callbacks(now), second.scan_callbacks(now))
    await first.scan_callbacks(now + timedelta(seconds=30))

    [to_alice] = await _notifications(world, "alice")
    assert to_alice.kind is NotificationKind.CALLBACK_DUE
    assert to_alice.contact_id == world.contacts["ada"]
    [to_carol] = await _notifications(world, "carol")
    assert to_carol.contact_id == world.contacts["alan"]
    assert await _notifications(world, "bob") == []

    # A new call-back time is a new notification.
    async with world.sessions.begin() as session:
        entry = await session.scalar(
            select(CallingListEntry).where(CallingListEntry.contact_id == world.contacts["ada"])
        )
        assert entry is not None
        entry.callback_at = now + timedelta(minutes=10)
    await first.scan_callbacks(now + timedelta(minutes=11))
    assert len(await _notifications(world, "alice")) == 2


async def test_the_bell_counts_and_opening_marks_read(
    client: ClientFactory, world: WebWorld
) -> None:
    campaign_id = await _draft(world)
    olivia = await client("olivia")
    await _save(olivia, campaign_id, _editor_form(world, "Phone the members", "active"))
    await _unassigned(world, 1)
    response = await olivia.form(
        f"/ops/campaigns/{world.campaign_id}/assign",
        [("action", "share"), ("volunteer", str(world.users["alice"]))],
    )
    assert response.status == 303

    alice = await client("alice")
    _, html = await alice.page("/campaigns")
    assert _bell(html) == 2
    first, _second = await _notifications(world, "alice")

    # Someone else cannot open (nor learn of) alice's notification.
    bob = await client("bob")
    response = await bob.form(f"/notifications/{first.id}/open", {})
    assert response.status == 404
    # Without the CSRF token, nothing is marked.
    response = await alice.form(f"/notifications/{first.id}/open", {}, token=False)
    assert response.status == 403

    response = await alice.form(f"/notifications/{first.id}/open", {})
    assert response.status == 303
    assert response.headers["Location"] == f"/campaigns/{campaign_id}"
    _, html = await alice.page("/campaigns")
    assert _bell(html) == 1

    response = await alice.form("/notifications/read", {})
    assert response.status == 303
    _, html = await alice.page("/notifications")
    assert _bell(html) == 0 and 'id="mark-all-read"' not in html
    assert all(n.read_at is not None for n in await _notifications(world, "alice"))


async def test_leaving_the_team_hides_its_notifications(
    client: ClientFactory, world: WebWorld
) -> None:
    campaign_id = await _draft(world, "Montreal only")
    olivia = await client("olivia")
    await _save(olivia, campaign_id, _editor_form(world, "Montreal only", "active"))
    alice = await client("alice")
    _, html = await alice.page("/notifications")
    assert "Montreal only" in html and _bell(html) == 1
    async with world.sessions.begin() as session:
        await session.execute(delete(TeamMember).where(TeamMember.user_id == world.users["alice"]))
    _, html = await alice.page("/notifications")
    assert "Montreal only" not in html and _bell(html) == 0
    [notification] = await _notifications(world, "alice")
    response = await alice.form(f"/notifications/{notification.id}/open", {})
    assert response.status == 404


def _shared_import(browser: Browser, rows: bytes) -> aiohttp.FormData:
    """The import form sharing the file's contacts between alice and bob."""
    form = aiohttp.FormData()
    form.add_field("csrf_token", browser.csrf)
    form.add_field("assign_to", "alice")
    form.add_field("assign_to", "bob")
    form.add_field("file", rows, filename="members.csv")
    return form


async def test_an_import_shared_among_volunteers_tells_each_once(
    client: ClientFactory, world: WebWorld
) -> None:
    olivia = await client("olivia")
    rows = b"first_name,phone\nGrace,+15145550171\nAlan,+15145550172\nEdsger,+15145550173\n"
    status, _ = await upload_csv(olivia, world.campaign_id, _shared_import(olivia, rows))
    assert status == 200
    [to_alice] = await _notifications(world, "alice")
    [to_bob] = await _notifications(world, "bob")
    assert to_alice.kind is NotificationKind.ASSIGNMENT
    assert to_alice.campaign_id == world.campaign_id
    assert to_alice.params == {"count": 2} and to_bob.params == {"count": 1}

    # The same file again puts no one new on the list: nobody is told again.
    status, _ = await upload_csv(olivia, world.campaign_id, _shared_import(olivia, rows))
    assert status == 200
    assert len(await _notifications(world, "alice")) == 1
    assert len(await _notifications(world, "bob")) == 1
