"""A volunteer's power session in a real browser, against the AMI simulator.

Alice starts calling from a power campaign's page: her desk phone is called
once, then her list is dialed for her.  Ada (number ending in 7) answers,
talks and hangs up; the outcome form opens on the session screen and, once
saved, Marie (ending in 4: stays on the line) is dialed without Alice
leaving the page.  She pauses with a reason, resumes, asks for a last call
and hangs up; after Marie's outcome the session ends and says why.  Run in
English and in French, with screenshots.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select, update

from dialer.domain.vocabulary import (
    DialingMode,
    DispositionOutcome,
    PowerNextCall,
    PowerSessionState,
)
from dialer.store.models import Campaign, Disposition, PowerSession
from tests.browser.conftest import Contexts, shot
from tests.browser.walk import sign_in, switch_language
from tests.browser.walk import text as wording
from tests.e2e.webworld import Served, WebWorld, serve
from web.i18n import labels
from web.i18n import translate as i18n

pytestmark = pytest.mark.slow


@pytest.fixture
async def live_app(pg_url: str, world: WebWorld) -> AsyncIterator[Served]:
    async with world.sessions.begin() as session:
        await session.execute(
            update(Campaign)
            .where(Campaign.id == world.campaign_id)
            .values(dialing_mode=DialingMode.POWER)
        )
    # Full-length calls: Ada talks 3 s, long enough to see her "talking".
    async with serve(pg_url, with_simulator=True, time_scale=1.0) as running:
        yield running


def power_label(language: str, state: PowerSessionState) -> str:
    i18n.activate(language, i18n.zone_or("America/Toronto", "UTC"))
    return labels.power_state(state)


def end_label(language: str, reason: str) -> str:
    i18n.activate(language, i18n.zone_or("America/Toronto", "UTC"))
    return labels.power_end_reason(reason)


async def record_outcome(page: Page, outcome: str) -> None:
    """The outcome form on the session screen, by keyboard as far as it goes."""
    form = page.locator("#outcome-form")
    await expect(form).to_be_visible(timeout=15_000)
    await page.locator(f'#outcome-form input[name="outcome"][value="{outcome}"]').check()
    await page.click("#step-next")
    while await page.locator("#step-save").is_hidden():
        consent = page.locator('#outcome-form fieldset[data-step="consent"]')
        if await consent.is_visible():
            await consent.locator('input[value="false"]').check()
        await page.click("#step-next")
    await page.click("#step-save")


@pytest.mark.parametrize("language", ["en", "fr"])
async def test_a_power_session_start_to_end(
    live_app: Served, world: WebWorld, contexts: Contexts, language: str
) -> None:
    served = live_app
    page = await contexts.page(phone=True, locale="fr-CA" if language == "fr" else "en-CA")
    await sign_in(page, served, "alice")
    await switch_language(page, language)

    # The campaign page offers the session, not click-to-call.
    await page.goto(f"{served.url}/campaigns/{world.campaign_id}")
    start = page.locator("#start-calling")
    await expect(start).to_have_text(wording(language, "Start calling"))
    await expect(page.locator("#power-explain")).to_be_visible()
    await shot(page, f"{language}-power-01-campaign")
    await start.click()
    await page.wait_for_url(re.compile(rf".*/campaigns/{world.campaign_id}/power$"))

    status = page.locator("#power-status")
    contact = page.locator("#power-contact")
    # Ada is dialed, answers and talks; her record's header and the brief show.
    await expect(page.locator("#contact-name")).to_have_text("Ada Lovelace", timeout=15_000)
    await expect(status).to_have_attribute("data-state", "talking", timeout=10_000)
    await expect(page.locator("#power-state")).to_have_text(
        power_label(language, PowerSessionState.TALKING)
    )
    await expect(contact.locator("#hangup-button")).to_be_visible()
    await expect(contact.locator("#call-button")).to_have_count(0)
    await expect(page.locator("#power-calls")).to_have_text("1")
    await shot(page, f"{language}-power-02-talking")

    # She hangs up: wrap-up, the outcome form on this very page.
    await expect(status).to_have_attribute("data-state", "wrap_up", timeout=15_000)
    await expect(page.locator("#power-state")).to_have_text(
        power_label(language, PowerSessionState.WRAP_UP)
    )
    await shot(page, f"{language}-power-03-wrap-up")
    await record_outcome(page, DispositionOutcome.REFUSED.value)

    # Saved: Marie is dialed next, on the same page.
    await expect(page.locator("#contact-name")).to_have_text("Marie Curie", timeout=15_000)
    assert page.url.endswith(f"/campaigns/{world.campaign_id}/power")
    await expect(page.locator("#power-previous")).to_contain_text("Ada Lovelace")
    await expect(status).to_have_attribute("data-state", "talking", timeout=10_000)
    await expect(page.locator("#power-calls")).to_have_text("2")

    # Pause, with a reason: the call goes on, no new contact after it.
    await page.click("#power-pause")
    await expect(page.locator("#power-pause-form")).to_be_visible()
    await page.locator('#power-pause-form input[value="technical"]').check()
    await page.fill("#power-pause-note", "headset crackles")
    await page.click("#power-pause-confirm")
    paused = page.locator("#power-paused")
    await expect(paused).to_be_visible()
    technical = wording(language, "Technical problem")
    reason = wording(language, "%(reason)s: %(words)s", reason=technical, words="headset crackles")
    await expect(paused).to_contain_text(reason)
    await expect(page.locator("#power-resume")).to_be_focused()
    await expect(page.locator("#power-pause")).to_be_hidden()
    await shot(page, f"{language}-power-04-paused")

    await page.click("#power-resume")
    await expect(paused).to_be_hidden()
    await expect(page.locator("#power-pause")).to_be_visible()
    # Marie stays on the line: the state's timer runs.
    await expect(page.locator("#power-state-timer")).to_have_text(re.compile(r"^0:0[1-9]$"))

    # Last call, then hang up on Marie and record her outcome: the session ends.
    await page.click("#power-last-call")
    await expect(page.locator("#power-last-notice")).to_be_visible()
    await expect(page.locator("#power-last-call")).to_be_disabled()
    await contact.locator("#hangup-button").click()
    await expect(status).to_have_attribute("data-state", "wrap_up", timeout=15_000)
    await record_outcome(page, DispositionOutcome.ANSWERED.value)

    ended = page.locator("#power-ended")
    await expect(ended).to_have_text(end_label(language, "last_call"), timeout=15_000)
    await expect(page.locator("#power-session")).to_be_hidden()
    again = page.locator("#power-start-button")
    await expect(again).to_have_text(wording(language, "Start again"))
    await expect(again).to_be_focused()
    await shot(page, f"{language}-power-05-ended")

    async with world.sessions() as session:
        row = (await session.scalars(select(PowerSession))).one()
        assert row.ended_at is not None and row.end_reason == "last_call"
        assert row.calls == 2
        outcomes = {d.contact_id: d.outcome for d in await session.scalars(select(Disposition))}
    assert outcomes == {
        world.contacts["ada"]: DispositionOutcome.REFUSED,
        world.contacts["marie"]: DispositionOutcome.ANSWERED,
    }


async def test_the_next_contact_rings_while_the_last_ones_outcome_is_recorded(
    pg_url: str, world: WebWorld, contexts: Contexts
) -> None:
    async with world.sessions.begin() as session:
        await session.execute(
            update(Campaign)
            .where(Campaign.id == world.campaign_id)
            .values(dialing_mode=DialingMode.POWER, power_next_call=PowerNextCall.AT_CALL_END)
        )
    async with serve(pg_url, with_simulator=True, time_scale=1.0) as served:
        page = await contexts.page(phone=True, locale="en-CA")
        await sign_in(page, served, "alice")
        await page.goto(f"{served.url}/campaigns/{world.campaign_id}/power")
        await page.click("#power-start-button")
        await expect(page.locator("#contact-name")).to_have_text("Ada Lovelace", timeout=15_000)
        # Ada hangs up: her outcome form stays, and Marie is dialed meanwhile.
        await expect(page.locator("#outcome-form")).to_be_visible(timeout=15_000)
        following = page.locator("#power-next")
        await expect(following).to_contain_text("Marie Curie", timeout=15_000)
        await expect(page.locator("#contact-name")).to_have_text("Ada Lovelace")
        await record_outcome(page, DispositionOutcome.REFUSED.value)
        # Saved: the screen moves on to Marie, already on the line.
        await expect(page.locator("#contact-name")).to_have_text("Marie Curie", timeout=15_000)
        await expect(following).to_be_hidden()
        await expect(page.locator("#power-status")).to_have_attribute(
            "data-state", "talking", timeout=10_000
        )
        await page.click("#power-leave")
    async with world.sessions() as session:
        saved = await session.scalar(select(Disposition.outcome))
    assert saved is DispositionOutcome.REFUSED
