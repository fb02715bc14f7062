"""The bell in a real browser: an assignment shows as a count in the nav,
opening it marks it read and leads to the campaign; then a task is marked
done from the tasks page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import expect
from sqlalchemy import select

from dialer.domain.vocabulary import TaskStatus
from dialer.services.notifications import contacts_assigned
from dialer.store.models import FollowUpTask, utcnow
from tests.browser.conftest import Contexts, shot
from tests.browser.walk import sign_in
from tests.e2e.webworld import Served, WebWorld, serve


@pytest.fixture
async def app(pg_url: str, world: WebWorld) -> AsyncIterator[Served]:
    async with serve(pg_url) as running:
        yield running


async def test_the_bell_counts_opens_and_a_task_is_done(
    app: Served, world: WebWorld, contexts: Contexts
) -> None:
    async with world.sessions.begin() as session:
        await contacts_assigned(session, world.campaign_id, {world.users["alice"]: 2}, at=utcnow())
        task = FollowUpTask(
            contact_id=world.contacts["ada"],
            assignee_id=world.users["alice"],
            created_by_id=world.users["olivia"],
            campaign_id=world.campaign_id,
            description="Send the polling station address",
            due_on=utcnow().date(),
        )
        session.add(task)
        await session.flush()
        task_id = task.id

    page = await contexts.page(phone=False)
    await sign_in(page, app, "alice")
    bell = page.locator("#bell .bell-count")
    await expect(bell).to_have_text(re.compile(r"^1\b"))
    await shot(page, "notifications-bell")

    await page.click("#bell")
    await expect(page.locator(".notifications li.unread")).to_have_count(1)
    await page.get_by_role("button", name="2 contacts assigned to you in Get out the vote").click()
    await page.wait_for_url(re.compile(rf".*/campaigns/{world.campaign_id}$"))
    await expect(page.locator("#bell .bell-count")).to_have_count(0)

    await page.goto(app.url + "/tasks")
    row = page.locator(f"#task-{task_id}")
    await expect(row).to_contain_text("Send the polling station address")
    await row.get_by_role("button", name="Done").click()
    await expect(page.locator(f"#done-tasks #task-{task_id}")).to_be_visible()
    await shot(page, "tasks-done")
    async with world.sessions() as session:
        stored = await session.scalar(select(FollowUpTask).where(FollowUpTask.id == task_id))
    assert stored is not None and stored.status is TaskStatus.DONE
