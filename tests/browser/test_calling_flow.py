"""The whole calling flow in a real browser, against the AMI simulator.

A volunteer signs in on a phone-sized screen, calls contacts, watches the
call's state change live, hangs up or lets the contact end, and records
the outcome, survey, contact details, a follow-up task and a call-back; an
organizer watches the same calls appear and end on the live panel.  Run
once in English and once in French, with screenshots of each screen.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from playwright.async_api import expect
from sqlalchemy import select

from dialer.domain.vocabulary import CallOutcome, DispositionOutcome, TaskStatus
from dialer.store.models import CallAttempt, Contact, Disposition, FollowUpTask
from tests.browser.conftest import Contexts, shot
from tests.browser.walk import sign_in, state_label, switch_language
from tests.e2e.webworld import Served, WebWorld, serve
from web.i18n import labels
from web.i18n import translate as i18n

pytestmark = pytest.mark.slow


@pytest.fixture
async def live_app(pg_url: str, world: WebWorld) -> AsyncIterator[Served]:
    async with serve(pg_url, with_simulator=True, time_scale=0.5) as running:
        yield running


def local_input(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M")


@pytest.mark.parametrize("language", ["en", "fr"])
async def test_volunteer_calls_and_records_while_organizer_watches(
    live_app: Served, world: WebWorld, contexts: Contexts, language: str
) -> None:
    served = live_app
    organizer = await contexts.page(phone=False, locale="en-CA")
    await sign_in(organizer, served, "olivia")
    await organizer.goto(served.url + "/ops/live")
    await expect(organizer.locator("#live-status")).to_have_class(re.compile("ok"))

    volunteer = await contexts.page(phone=True, locale="fr-CA" if language == "fr" else "en-CA")
    await sign_in(volunteer, served, "alice")
    await switch_language(volunteer, language)
    await expect(volunteer.locator(f"#campaign-{world.campaign_id}")).to_be_visible()
    await shot(volunteer, f"{language}-01-campaigns")

    # Attendance, then the campaign and its list.
    await volunteer.locator(f"#campaign-{world.campaign_id} form button").click()
    await expect(volunteer.locator(f"#campaign-{world.campaign_id} .ok")).to_be_visible()
    await volunteer.goto(f"{served.url}/campaigns/{world.campaign_id}")
    await shot(volunteer, f"{language}-02-campaign-list")

    # Start calling: the first contact on the list is Ada (the simulator's
    # last-digit-7 rule: answers, talks, then hangs up by herself).
    await volunteer.click("#start-calling")
    await volunteer.wait_for_url(re.compile(rf".*/contacts/{world.contacts['ada']}\?campaign="))
    await expect(volunteer.locator("#contact-name")).to_have_text("Ada Lovelace")
    await expect(volunteer.locator("#contact-clock")).not_to_be_empty()
    await shot(volunteer, f"{language}-03-contact-call-tab")

    await volunteer.fill("#comments", "Friendly; <b>asked</b> about transit.")
    await volunteer.click("#call-button")
    await expect(volunteer.locator("#call-status")).to_be_visible()
    talking = state_label(language, "talking")
    await expect(volunteer.locator("#call-state")).to_have_text(talking, timeout=10_000)
    await expect(volunteer.locator("#call-timer")).to_have_text(re.compile(r"\d+:\d\d"))
    await shot(volunteer, f"{language}-04-call-talking")

    # The organizer sees the call live, with names and the caller ID.
    row = organizer.locator("#calls tr[data-call]")
    await expect(row).to_have_count(1)
    await expect(row.locator('[data-f="contact"]')).to_have_text("Ada Lovelace")
    await expect(row.locator('[data-f="volunteer"]')).to_have_text("Alice Martin")
    await expect(row.locator('[data-f="campaign"]')).to_have_text("Get out the vote")
    await shot(organizer, f"{language}-05-live-panel-call")

    # The contact hangs up; the call ends on both screens.
    ended = state_label(language, "ended")
    await expect(volunteer.locator("#call-state")).to_have_text(ended, timeout=10_000)
    i18n.activate(language, i18n.zone_or("UTC", "UTC"))
    await expect(volunteer.locator("#call-ended-reason")).to_contain_text(
        labels.call_outcome(CallOutcome.COMPLETED)
    )
    await expect(organizer.locator("#calls tr[data-call]")).to_have_count(0)

    # The outcome flow opens by itself: answered (key 3) -> consent (key 1).
    await expect(volunteer.locator("#outcome-form")).to_be_visible()
    await shot(volunteer, f"{language}-06-outcome-first-question")
    await volunteer.locator('#outcome-form input[name="outcome"]').first.focus()
    await volunteer.keyboard.press("3")
    await expect(volunteer.locator('fieldset[data-step="consent"]')).to_be_visible()
    await volunteer.keyboard.press("1")
    await expect(volunteer.locator('fieldset[data-step="survey"]')).to_be_visible()

    # A required question left empty is caught before moving on.
    await volunteer.click("#step-next")
    await expect(volunteer.locator('[data-error-for="survey.vote"]')).not_to_be_empty()
    await volunteer.check('input[name="survey.vote"][value="yes"]')
    await volunteer.check('input[name="survey.volunteer"][value="true"]')
    await volunteer.check('input[name="survey.issues"][value="transit"]')
    await shot(volunteer, f"{language}-07-survey")

    # Reload half-way: everything typed comes back.
    await volunteer.reload()
    await expect(volunteer.locator("#restored")).to_be_visible()
    await expect(volunteer.locator('input[name="survey.vote"][value="yes"]')).to_be_checked()
    await expect(volunteer.locator("#comments")).to_have_value(
        "Friendly; <b>asked</b> about transit."
    )
    await volunteer.click("#step-next")
    await expect(volunteer.locator('fieldset[data-step="details"]')).to_be_visible()
    await volunteer.fill("#email", "ada@example.org")
    await volunteer.select_option("#contact-lang", "fr")
    await volunteer.fill("#new-number", "514 555 0199")
    await shot(volunteer, f"{language}-08-details")
    await volunteer.click("#step-next")
    await expect(volunteer.locator('fieldset[data-step="wrapup"]')).to_be_visible()
    await volunteer.check('input[name="mobilized"][value="true"]')
    await volunteer.check('input[name="support_score"][value="5"]')
    callback = datetime.now() + timedelta(days=2)  # the browser's local time
    await volunteer.fill("#callback-at", local_input(callback))
    await volunteer.select_option("#task-assignee", str(world.users["bob"]))
    await volunteer.fill("#task-description", "Bring a lawn sign")
    await shot(volunteer, f"{language}-09-wrap-up")

    # A failed submit (offline) keeps everything; the retry is stored once.
    await volunteer.context.set_offline(True)
    await volunteer.click("#step-save")
    await expect(volunteer.locator("#form-error")).to_be_visible()
    await shot(volunteer, f"{language}-10-save-failed")
    await volunteer.context.set_offline(False)
    await volunteer.click("#step-save")
    await expect(volunteer.locator("#done-panel")).to_be_visible()
    await shot(volunteer, f"{language}-11-saved")

    async with world.sessions() as session:
        stored = list(
            await session.scalars(
                select(Disposition).where(Disposition.contact_id == world.contacts["ada"])
            )
        )
        contact = await session.get(Contact, world.contacts["ada"])
        task = await session.scalar(select(FollowUpTask))
    assert len(stored) == 1
    disposition = stored[0]
    assert disposition.outcome is DispositionOutcome.ANSWERED
    assert disposition.consent is True
    assert disposition.survey_answers == {"vote": "yes", "volunteer": True, "issues": ["transit"]}
    assert disposition.comments == "Friendly; <b>asked</b> about transit."
    assert disposition.mobilized is True and disposition.support_score == 5
    assert disposition.callback_at is not None
    assert contact is not None and contact.email == "ada@example.org" and contact.language == "fr"
    assert task is not None and task.assignee_id == world.users["bob"]
    assert task.status is TaskStatus.OPEN and task.description == "Bring a lawn sign"

    # Next contact: Marie stays on the line until the volunteer hangs up.
    await volunteer.click("#next-contact")
    await volunteer.wait_for_url(re.compile(rf".*/contacts/{world.contacts['marie']}\?campaign="))
    await expect(volunteer.locator("#contact-language")).to_contain_text(
        "French" if language == "en" else "français"
    )
    await volunteer.click("#call-button")
    await expect(volunteer.locator("#call-state")).to_have_text(talking, timeout=10_000)
    await expect(organizer.locator("#calls tr[data-call]")).to_have_count(1)
    await expect(organizer.locator('#calls [data-f="contact"]')).to_have_text("Marie Curie")
    await volunteer.fill("#comments", "Busy right now; call back tomorrow.")
    await volunteer.click("#hangup-button")
    await expect(volunteer.locator("#call-state")).to_have_text(ended, timeout=10_000)
    # Marie never hangs up by herself: the call ended because we did.  After
    # a conversation the PBX reports the call as completed.
    await expect(volunteer.locator("#call-ended-reason")).not_to_be_empty()
    await expect(organizer.locator("#calls tr[data-call]")).to_have_count(0)
    await volunteer.locator('#outcome-form input[name="outcome"]').first.focus()
    await volunteer.keyboard.press("4")  # call back later
    await expect(volunteer.locator('fieldset[data-step="details"]')).to_be_visible()
    await volunteer.click("#step-next")
    await volunteer.click("#step-save")
    await expect(volunteer.locator('[data-error-for="callback_at"]')).not_to_be_empty()
    await volunteer.fill("#callback-at", local_input(callback))
    await volunteer.click("#step-save")
    await expect(volunteer.locator("#done-panel")).to_be_visible()
    await shot(organizer, f"{language}-12-live-panel-after")

    async with world.sessions() as session:
        marie = await session.scalar(
            select(Disposition).where(Disposition.contact_id == world.contacts["marie"])
        )
        calls = list(await session.scalars(select(CallAttempt).order_by(CallAttempt.id)))
    assert marie is not None and marie.outcome is DispositionOutcome.CALL_BACK_LATER
    assert calls[0].outcome is CallOutcome.COMPLETED
    assert calls[1].outcome in (CallOutcome.COMPLETED, CallOutcome.HUNG_UP_BY_VOLUNTEER)
    assert calls[1].ended_at is not None


async def test_teammate_helps_from_others_and_organizer_hangs_up(
    live_app: Served, world: WebWorld, contexts: Contexts
) -> None:
    served = live_app
    organizer = await contexts.page(phone=False)
    await sign_in(organizer, served, "olivia")
    await organizer.goto(served.url + "/ops/live")
    await expect(organizer.locator("#live-status")).to_have_class(re.compile("ok"))

    bob = await contexts.page(phone=True, locale="fr-CA")
    await sign_in(bob, served, "bob")  # bob's own language is French
    await expect(bob.locator("html")).to_have_attribute("lang", "fr")
    await bob.goto(f"{served.url}/campaigns/{world.campaign_id}")
    async with bob.expect_navigation():
        await bob.select_option("#owner", str(world.users["alice"]))
    await expect(bob.locator("table.table tbody")).to_contain_text("Marie Curie")
    await shot(bob, "fr-20-others-list")
    await bob.click("#start-calling")
    await bob.wait_for_url(re.compile(r".*/contacts/\d+\?campaign=\d+&owner=\d+"))
    await expect(bob.locator("#contact-name")).to_have_text(re.compile("Ada Lovelace|Marie Curie"))

    # Call Marie (stays on the line); the organizer hangs up from the panel.
    if await bob.locator("#contact-name").inner_text() != "Marie Curie":
        await bob.goto(
            f"{served.url}/contacts/{world.contacts['marie']}?campaign={world.campaign_id}"
            f"&owner={world.users['alice']}"
        )
    await bob.click("#call-button")
    await expect(bob.locator("#call-state")).to_have_text(
        state_label("fr", "talking"), timeout=10_000
    )
    row = organizer.locator("#calls tr[data-call]")
    await expect(row.locator('[data-f="volunteer"]')).to_have_text("Bob Tremblay")
    await row.locator("[data-hangup]").click()
    await organizer.locator('#hangup-confirm button[value="hangup"]').click()  # confirms first
    await expect(organizer.locator("#calls tr[data-call]")).to_have_count(0, timeout=10_000)
    await expect(bob.locator("#call-state")).to_have_text(state_label("fr", "ended"))
    await expect(bob.locator("#call-ended-reason")).not_to_be_empty()
    await shot(bob, "fr-21-hung-up-by-organizer")
    await bob.locator('#outcome-form input[name="outcome"]').first.focus()
    await bob.keyboard.press("2")  # absent
    await bob.click("#step-next")
    await bob.click("#step-save")
    await expect(bob.locator("#done-panel")).to_be_visible()
    async with world.sessions() as session:
        stored = await session.scalar(
            select(Disposition).where(Disposition.contact_id == world.contacts["marie"])
        )
    assert stored is not None
    assert stored.volunteer_id == world.users["bob"]
    assert stored.outcome is DispositionOutcome.ABSENT
