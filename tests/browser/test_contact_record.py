"""The contact's record in a real browser: the Details tab's edit form (a
refused value, a value someone else changed meanwhile, then a saved one),
and the Call tab's calling-hours note after an administrator changes a
team's hours on the Teams page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import expect
from sqlalchemy import select

from dialer.store.models import Contact, ContactPhone, TeamMember, User
from tests.browser.conftest import Contexts, shot
from tests.browser.walk import sign_in
from tests.e2e.test_team_hours import evening_zone
from tests.e2e.webworld import Served, WebWorld, serve


@pytest.fixture
async def app(pg_url: str, world: WebWorld) -> AsyncIterator[Served]:
    async with serve(pg_url) as running:
        yield running


async def test_a_volunteer_fixes_a_record_from_the_details_tab(
    app: Served, world: WebWorld, contexts: Contexts
) -> None:
    page = await contexts.page()
    await sign_in(page, app, "alice")
    ada = world.contacts["ada"]
    await page.goto(f"{app.url}/contacts/{ada}?tab=details")
    await page.click("#contact-edit summary")
    await page.fill("#ce-email", "ada-at-example")
    await page.fill("#ce-new-number", "514 555 0121")
    await page.click("#contact-save")
    # Refused: the same form again, the typed values kept, the error beside the field.
    await expect(page.locator("#email-error")).to_have_text("This is not a valid email address.")
    await expect(page.locator("#ce-new-number")).to_have_value("514 555 0121")
    await shot(page, "contact-edit-refused")
    # Meanwhile an outcome gives Ada's email: Alice's save of hers is refused
    # with the current value (nothing overwritten), and goes through once seen.
    async with world.sessions.begin() as session:
        stored = await session.get(Contact, ada)
        assert stored is not None
        stored.email = "ada@outcome.org"
    await page.fill("#ce-email", "ada@example.org")
    await page.select_option("#ce-score", "5")
    await page.click("#contact-save")
    await expect(page.locator("#edit-conflicts")).to_contain_text("it is now: ada@outcome.org")
    await expect(page.locator("#ce-email")).to_have_value("ada@example.org")
    await shot(page, "contact-edit-conflict")
    await page.click("#contact-save")
    await page.wait_for_url(re.compile(rf".*/contacts/{ada}\?tab=details&saved=1$"))
    await expect(page.locator("#contact-saved")).to_be_visible()
    details = page.locator("#tab-details .facts")
    await expect(details).to_contain_text("ada@example.org")
    await expect(details).to_contain_text("+1 514-555-0121")
    await shot(page, "contact-edit-saved")
    async with world.sessions() as session:
        contact = await session.get(Contact, ada)
        numbers = list(
            await session.scalars(select(ContactPhone.e164).where(ContactPhone.contact_id == ada))
        )
    assert contact is not None and contact.email == "ada@example.org"
    assert contact.support_score == 5 and "+15145550121" in numbers


async def test_the_call_tab_says_when_calling_opens_after_the_team_hours_change(
    app: Served, world: WebWorld, contexts: Contexts
) -> None:
    # Adam, an administrator in Montreal with a phone, calls Nora, who is on
    # no campaign's list (a manual call) and for whom it is 8 p.m.
    async with world.sessions.begin() as session:
        adam = await session.get(User, world.users["adam"])
        assert adam is not None
        adam.sip_extension = "1010"
        session.add(TeamMember(team_id=world.team_id, user_id=adam.id))
        nora = Contact(first_name="Nora", last_name="Evening", timezone=evening_zone())
        nora.phones = [ContactPhone(e164="+15145550133")]
        session.add(nora)
        await session.flush()
        nora_id = nora.id
    page = await contexts.page(phone=False)
    await sign_in(page, app, "adam")
    await page.goto(f"{app.url}/ops/teams")
    team = page.locator(f"#team-{world.team_id}")
    for name, value in (
        ("weekday_start", "09:00"),
        ("weekday_end", "20:00"),
        ("weekend_start", "09:00"),
        ("weekend_end", "20:00"),
    ):
        await team.locator(f"input[name={name}]").fill(value)
    await team.locator("input[name=weekend_enabled]").check()
    await team.locator("button[type=submit]").click()
    await expect(page.locator(f"#team-{world.team_id} [role=status]")).to_have_text(
        "Calling hours saved."
    )
    await page.goto(f"{app.url}/contacts/{nora_id}")
    note = page.locator("#calling-hours")
    await expect(note).to_have_attribute("data-open", "false")
    await expect(note).to_contain_text(re.compile(r"Calling opens on \w+ at 9:00\sAM"))
    await expect(page.locator("#call-button")).to_be_visible()
    await shot(page, "call-tab-calling-hours")
