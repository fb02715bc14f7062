"""The outcome owed after an answered call, in a real browser (issue 17: defects
2, 6 and 7): the form comes back after leaving the page, Call and the next
contact wait for it, it can be skipped with a reason, a busy call's steps
show as failed with "absent" preselected, and the other tabs follow."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import delete, select, update

from dialer.store.models import CallAttempt, ContactPhone, TeamMember
from tests.browser.conftest import Contexts, shot
from tests.browser.walk import sign_in, state_label, text
from tests.e2e.webworld import Served, WebWorld, serve

pytestmark = pytest.mark.slow


@pytest.fixture
async def live_app(pg_url: str, world: WebWorld) -> AsyncIterator[Served]:
    async with serve(pg_url, with_simulator=True, time_scale=0.3) as running:
        yield running


def contact_url(served: Served, world: WebWorld, contact: str) -> str:
    return f"{served.url}/contacts/{world.contacts[contact]}?campaign={world.campaign_id}"


async def call_and_wait_for_the_form(page: Page) -> None:
    await page.click("#call-button")
    await expect(page.locator("#outcome-form")).to_be_visible(timeout=10_000)


async def test_an_owed_outcome_comes_back_blocks_calling_and_refreshes_the_tabs(
    live_app: Served, world: WebWorld, contexts: Contexts
) -> None:
    served = live_app
    alice = await contexts.page(phone=True)
    await sign_in(alice, served, "alice")
    await alice.goto(contact_url(served, world, "ada"))
    # Ada answers, talks a moment and hangs up.
    await alice.click("#call-button")
    await expect(alice.locator("#call-state")).to_have_text(state_label("en", "talking"))
    await expect(alice.locator("#record-outcome")).to_be_disabled()
    await expect(alice.locator("#outcome-form")).to_be_visible(timeout=10_000)
    # The form is open: no new call until it is saved or skipped.
    await expect(alice.locator("#call-button")).to_be_disabled()
    await expect(alice.locator("#skip-outcome")).to_be_visible()

    # She leaves; "next" brings her back to Ada's form, not a new contact.
    await alice.goto(f"{served.url}/campaigns/{world.campaign_id}/next")
    await alice.wait_for_url(re.compile(rf".*/contacts/{world.contacts['ada']}\?.*call="))
    await expect(alice.locator("#outcome-form")).to_be_visible()
    # Another contact's page says where the owed outcome is and refuses to call.
    await alice.goto(contact_url(served, world, "marie"))
    await expect(alice.locator("#pending-banner")).to_be_visible()
    await expect(alice.locator("#call-button")).to_be_disabled()
    await shot(alice, "en-30-outcome-pending-banner")
    await alice.click("#pending-banner a")
    await expect(alice.locator("#outcome-form")).to_be_visible()

    await alice.check('input[name="outcome"][value="answered"]')
    await alice.click("#step-next")
    await alice.check('input[name="consent"][value="true"]')
    await alice.click("#step-next")
    await alice.check('input[name="survey.vote"][value="yes"]')
    await alice.check('input[name="survey.volunteer"][value="true"]')
    await alice.click("#step-next")
    await alice.fill("#email", "ada@example.org")
    await alice.click("#step-next")
    await alice.check('input[name="mobilized"][value="true"]')
    await alice.click("#step-save")
    await expect(alice.locator("#done-panel")).to_be_visible()
    await expect(alice.locator("#call-button")).to_be_enabled()

    # Without a reload, History and Details show what was just saved.
    await alice.click('a[data-tab="history"]')
    history = alice.locator("#tab-history")
    await expect(history).to_contain_text("Will you vote on Sunday?")
    await expect(history).to_contain_text("Yes, for sure")
    await expect(history).to_contain_text("Agreed to answer")
    await expect(history).to_contain_text("Was mobilized")
    await expect(alice.locator("#tab-details")).to_contain_text("ada@example.org")
    await shot(alice, "en-31-history-after-outcome")


async def test_a_busy_call_fails_its_steps_and_an_answered_one_is_skipped(
    live_app: Served, world: WebWorld, contexts: Contexts
) -> None:
    served = live_app
    async with world.sessions.begin() as session:
        # A last digit 1: the simulator's contact is busy.
        await session.execute(
            update(ContactPhone)
            .where(ContactPhone.id == world.phones["grace"])
            .values(e164="+15145550161")
        )
    bob = await contexts.page(phone=True, locale="fr-CA")
    await sign_in(bob, served, "bob")  # Bob reads French
    await bob.goto(contact_url(served, world, "grace"))
    await call_and_wait_for_the_form(bob)
    steps = bob.locator("#call-status")
    await expect(steps.locator('[data-step="volunteer"]')).to_have_class(re.compile(r"\bdone\b"))
    for step, result in (("contact", "failed"), ("talking", "not-reached")):
        chip = steps.locator(f'[data-step="{step}"]')
        await expect(chip).to_have_class(re.compile(rf"\b{result}\b"))
        await expect(chip).not_to_have_class(re.compile(r"\bdone\b"))
    # Its automatic outcome is the form's answer already; nothing to skip.
    await expect(bob.locator('input[name="outcome"][value="absent"]')).to_be_checked()
    await expect(bob.locator("#skip-outcome")).to_be_hidden()
    await shot(bob, "fr-32-busy-call")
    await bob.click("#step-next")
    await bob.click("#step-next")
    await bob.click("#step-save")
    await expect(bob.locator("#done-panel")).to_be_visible()

    # Gustave answers and stays: Bob hangs up, then skips the outcome.
    await bob.goto(contact_url(served, world, "gustave"))
    await bob.click("#call-button")
    await expect(bob.locator("#call-state")).to_have_text(state_label("fr", "talking"))
    await bob.click("#hangup-button")
    await expect(bob.locator("#outcome-form")).to_be_visible(timeout=10_000)
    await bob.click("#skip-outcome")
    await expect(bob.locator("#skip-form")).to_be_visible()
    await expect(bob.locator("#call-button")).to_be_disabled()
    await bob.click("#skip-confirm")
    await expect(bob.locator('#skip-form [data-error-for="reason"]')).to_have_text(
        text("fr", "Choose a reason.")
    )
    await bob.check('input[name="skip_reason"][value="call_cut_off"]')
    await shot(bob, "fr-33-skip-outcome")
    await bob.click("#skip-confirm")
    await expect(bob.locator("#done-skipped")).to_be_visible()
    await expect(bob.locator("#call-button")).to_be_enabled()
    await bob.click('a[data-tab="history"]')
    await expect(bob.locator("#tab-history")).to_contain_text(
        text("fr", "Outcome skipped: %(reason)s", reason=text("fr", "The call was cut off"))
    )
    async with world.sessions() as session:
        skipped = await session.scalar(
            select(CallAttempt).where(CallAttempt.contact_id == world.contacts["gustave"])
        )
    assert skipped is not None and skipped.outcome_skip_reason == "call_cut_off"


async def test_a_talk_an_organizer_hung_up_is_owed_and_skipped_once_out_of_view(
    live_app: Served, world: WebWorld, contexts: Contexts
) -> None:
    served = live_app
    alice = await contexts.page(phone=True)
    await sign_in(alice, served, "alice")
    await alice.goto(contact_url(served, world, "marie"))  # answers and stays on the line
    await alice.click("#call-button")
    await expect(alice.locator("#call-state")).to_have_text(state_label("en", "talking"))
    async with world.sessions() as session:
        call_id = await session.scalar(
            select(CallAttempt.call_id).where(CallAttempt.contact_id == world.contacts["marie"])
        )
    assert call_id is not None
    # Hung up from the live panel: Marie talked, so her outcome is owed.
    await served.runtime.service.hang_up(world.users["olivia"], call_id)
    await expect(alice.locator("#outcome-form")).to_be_visible(timeout=10_000)
    await expect(alice.locator("#skip-outcome")).to_be_visible()

    # Alice moves to the Quebec team before recording it: Marie is out of view.
    async with world.sessions.begin() as session:
        await session.execute(
            delete(TeamMember).where(
                TeamMember.user_id == world.users["alice"], TeamMember.team_id == world.team_id
            )
        )
        session.add(TeamMember(user_id=world.users["alice"], team_id=world.other_team_id))
    await alice.goto(f"{served.url}/campaigns/{world.other_campaign_id}/next")
    await expect(alice.locator("#pending-banner")).to_be_visible()
    await alice.check('#pending-skip-form input[name="skip_reason"][value="other"]')
    await alice.click("#pending-skip-confirm")
    await expect(alice.locator('#pending-skip-form [data-error-for="note"]')).not_to_be_empty()
    await alice.fill("#pending-skip-note", "Moved to Quebec")
    await alice.click("#pending-skip-confirm")
    # Skipped: Next goes on (her Quebec list is empty), nothing owed any more.
    await expect(alice.locator("#empty-reason")).to_be_visible()
    async with world.sessions() as session:
        skipped = await session.scalar(select(CallAttempt).where(CallAttempt.call_id == call_id))
    assert skipped is not None and skipped.outcome_skip_note == "Moved to Quebec"
