"""The tasks page: due dates (overdue marked), sorted by them, Done and Reopen
for the assignee or the team's organizers only, each in the audit log."""

from __future__ import annotations

import re
from datetime import date, timedelta

from sqlalchemy import select

from dialer.domain.vocabulary import TaskStatus
from dialer.store.models import AuditEntry, FollowUpTask, utcnow
from tests.e2e.conftest import ClientFactory
from tests.e2e.webworld import WebWorld


async def _task(world: WebWorld, assignee: str, description: str, due: date | None) -> int:
    async with world.sessions.begin() as session:
        task = FollowUpTask(
            contact_id=world.contacts["ada"],
            assignee_id=world.users[assignee],
            created_by_id=world.users["alice"],
            campaign_id=world.campaign_id,
            description=description,
            due_on=due,
        )
        session.add(task)
        await session.flush()
        return task.id


async def _status(world: WebWorld, task_id: int) -> FollowUpTask:
    async with world.sessions() as session:
        task = await session.get(FollowUpTask, task_id)
        assert task is not None
        return task


async def test_the_outcome_forms_due_date_is_stored_and_shown_sorted_with_overdue_marked(
    client: ClientFactory, world: WebWorld
) -> None:
    today = utcnow().date()
    bob = await client("bob")
    status, body = await bob.api(
        "POST",
        "/api/outcomes",
        {
            "submission_id": "task-due-1",
            "contact_id": world.contacts["ada"],
            "campaign_id": world.campaign_id,
            "outcome": "other",
            "task": {
                "assignee_id": world.users["alice"],
                "description": "Later one",
                "due_on": (today + timedelta(days=5)).isoformat(),
            },
        },
    )
    assert status == 201, body
    async with world.sessions() as session:
        stored = await session.scalar(
            select(FollowUpTask).where(FollowUpTask.description == "Later one")
        )
    assert stored is not None and stored.due_on == today + timedelta(days=5)
    await _task(world, "alice", "Late one", today - timedelta(days=3))
    await _task(world, "alice", "Undated one", None)

    alice = await client("alice")
    _, html = await alice.page("/tasks")
    order = [html.index(text) for text in ("Late one", "Later one", "Undated one")]
    assert order == sorted(order)
    late = re.search(
        r'<li id="task-\d+" class="([^"]*)"[^>]*>\s*<span><a[^>]*>[^<]*</a>:</span>\s*'
        r'<span class="pre">Late one',
        html,
    )
    assert late is not None and late.group(1) == "overdue"
    assert "overdue, was due" in html and "no due date" in html

    # bob reads French.
    # Two days back: overdue in any reader's time zone.
    await _task(world, "bob", "En retard", today - timedelta(days=2))
    await _task(world, "bob", "Sans date", None)
    _, html = await bob.page("/tasks")
    assert "en retard, échéance le" in html and "sans échéance" in html


async def test_done_and_reopen_by_the_assignee_are_audited(
    client: ClientFactory, world: WebWorld
) -> None:
    task_id = await _task(world, "bob", "Call her back about the ride", None)
    bob = await client("bob")
    # The CSRF token is required.
    response = await bob.form(f"/tasks/{task_id}/done", {}, token=False)
    assert response.status == 403
    assert (await _status(world, task_id)).status is TaskStatus.OPEN

    response = await bob.form(f"/tasks/{task_id}/done", {})
    assert response.status == 303 and response.headers["Location"] == "/tasks"
    task = await _status(world, task_id)
    assert task.status is TaskStatus.DONE and task.completed_at is not None
    _, html = await bob.page("/tasks")
    assert 'id="done-tasks"' in html and f'action="/tasks/{task_id}/reopen"' in html

    # A second click changes nothing more.
    response = await bob.form(f"/tasks/{task_id}/done", {})
    assert response.status == 303

    response = await bob.form(f"/tasks/{task_id}/reopen", {})
    assert response.status == 303
    task = await _status(world, task_id)
    assert task.status is TaskStatus.OPEN and task.completed_at is None

    async with world.sessions() as session:
        actions = list(
            await session.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.entity_type == "task", AuditEntry.entity_id == str(task_id))
                .order_by(AuditEntry.id)
            )
        )
    assert actions == ["task.done", "task.reopen"]


async def test_only_the_assignee_and_the_teams_staff_may_settle_a_task(
    client: ClientFactory, world: WebWorld
) -> None:
    task_id = await _task(world, "bob", "Bring the flyers", None)
    # A teammate who is not the assignee, and another team's organizer: not found.
    for outsider in ("alice", "oscar", "carol"):
        browser = await client(outsider)
        response = await browser.form(f"/tasks/{task_id}/done", {})
        assert response.status == 404, outsider
        assert (await _status(world, task_id)).status is TaskStatus.OPEN
    # The team's organizer and an administrator may.
    olivia = await client("olivia")
    response = await olivia.form(f"/tasks/{task_id}/done", {})
    assert response.status == 303
    assert (await _status(world, task_id)).status is TaskStatus.DONE
    adam = await client("adam")
    response = await adam.form(f"/tasks/{task_id}/reopen", {})
    assert response.status == 303
    assert (await _status(world, task_id)).status is TaskStatus.OPEN
    # An unknown task is the same "not found".
    response = await olivia.form("/tasks/999999/done", {})
    assert response.status == 404
