"""The README's two screenshots: a volunteer mid-call on a contact's Call tab,
and an organizer's live panel showing that same call.

Every run checks that both screens show what the README describes (the call
talking with its timer and Hang up button; the call's row on the live panel
with the volunteer marked on a call). With DIALER_SCREENSHOTS=1 it also
writes docs/screenshots/volunteer-call.png and organizer-live.png:

    DIALER_SCREENSHOTS=1 .venv/bin/pytest tests/browser/test_screenshots.py
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Page, ViewportSize, expect
from sqlalchemy import update

from dialer.store.models import Contact
from tests.browser.conftest import Contexts
from tests.browser.walk import sign_in
from tests.e2e.webworld import Served, WebWorld, serve

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# As wide as the other browser tests' desktop (the organizer's menu fits on one
# line) but shorter: the images sit in the README, where a wide picture reads best.
README_VIEWPORT: ViewportSize = {"width": 1280, "height": 640}


@pytest.fixture
async def live_app(pg_url: str, world: WebWorld) -> AsyncIterator[Served]:
    async with serve(pg_url, with_simulator=True, time_scale=0.25) as running:
        yield running


async def save(page: Page, name: str) -> None:
    """Writes the README image only when asked, so ordinary runs leave the tree alone."""
    if os.environ.get("DIALER_SCREENSHOTS") != "1":
        return
    DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(DOCS_SCREENSHOTS / f"{name}.png"))


async def test_readme_screenshots_volunteer_call_and_live_panel(
    live_app: Served, world: WebWorld, contexts: Contexts
) -> None:
    served = live_app
    # The world gives its contacts a made-up zone where it is midday now; the
    # picture reads better with a real place (the campaign calls at any hour).
    async with world.sessions.begin() as session:
        await session.execute(
            update(Contact)
            .where(Contact.id == world.contacts["marie"])
            .values(timezone="America/Toronto")
        )
    organizer = await contexts.page(phone=False)
    await organizer.set_viewport_size(README_VIEWPORT)
    await sign_in(organizer, served, "olivia")
    await organizer.goto(served.url + "/ops/live")
    await expect(organizer.locator("#live-status")).to_have_class(re.compile("ok"))

    volunteer = await contexts.page(phone=False)
    await volunteer.set_viewport_size(README_VIEWPORT)
    await sign_in(volunteer, served, "alice")
    # Marie Curie's number ends in 4: the simulated contact answers and stays
    # on the line, so the call is still talking while both pictures are taken.
    await volunteer.goto(
        f"{served.url}/contacts/{world.contacts['marie']}?campaign={world.campaign_id}"
    )
    await expect(volunteer.locator("#contact-name")).to_have_text("Marie Curie")
    await expect(volunteer.locator("#contact-time")).to_contain_text("America/Toronto")
    await volunteer.click("#call-button")
    await expect(volunteer.locator("#call-state")).to_have_text("Talking", timeout=10_000)
    await expect(volunteer.locator("#hangup-button")).to_be_visible()
    # Past 0:00, so the picture shows a running timer.
    await expect(volunteer.locator("#call-timer")).to_have_text(re.compile(r"0:0[1-9]"))
    await save(volunteer, "volunteer-call")

    row = organizer.locator("#calls tr[data-call]")
    await expect(row).to_have_count(1)
    await expect(row.locator('[data-f="contact"]')).to_have_text("Marie Curie")
    await expect(row.locator('[data-f="volunteer"]')).to_have_text("Alice Martin")
    await expect(row.locator('[data-f="state"]')).to_have_text("Talking")
    await expect(row.locator('[data-f="duration"]')).to_have_text(re.compile(r"0:0[1-9]"))
    await expect(organizer.locator("#volunteers")).to_contain_text("Alice Martin")
    await save(organizer, "organizer-live")

    # Leave no call up behind the test.
    await volunteer.click("#hangup-button")
    await expect(organizer.locator("#calls tr[data-call]")).to_have_count(0, timeout=10_000)
