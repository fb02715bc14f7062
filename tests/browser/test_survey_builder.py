"""The survey builder and skip logic in a real browser.

An organizer builds a survey with the keyboard (a new scale question moved
up, a skip rule on the first question), meets a field error on save, fixes
it and saves, in English and in French.  A volunteer then answers "no" to
the first question: the question it skips disappears, is not required, and
the outcome saves without it.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import expect
from sqlalchemy import select

from dialer.domain.survey import SurveyDefinition
from dialer.store.models import Campaign, Disposition
from tests.browser.conftest import Contexts, shot
from tests.browser.walk import sign_in, text
from tests.e2e.webworld import Served, WebWorld, serve

pytestmark = pytest.mark.slow


@pytest.fixture
async def app(pg_url: str, world: WebWorld) -> AsyncIterator[Served]:
    async with serve(pg_url) as running:
        yield running


@pytest.mark.parametrize("language", ["en", "fr"])
async def test_build_a_survey_with_a_skip_rule_and_save_it(
    app: Served, world: WebWorld, contexts: Contexts, language: str
) -> None:
    # Olivia's account is in English; Adam (an admin) follows his French browser.
    page = await contexts.page(phone=False, locale="fr-CA" if language == "fr" else "en-CA")
    await sign_in(page, app, "olivia" if language == "en" else "adam")
    await page.goto(f"{app.url}/ops/campaigns/{world.campaign_id}/edit")
    await expect(page.locator("html")).to_have_attribute("lang", language)
    questions = page.locator("#sb-questions > li")
    # The world's survey: vote, volunteer, issues.
    await expect(questions).to_have_count(3)

    # A new question, typed and set up from the keyboard.
    await page.focus("#sb-add-question")
    await page.keyboard.press("Enter")
    await expect(questions).to_have_count(4)
    new = questions.nth(3)
    await expect(new.locator('textarea[data-field="label"]')).to_be_focused()
    await page.keyboard.type("How sure are you?")
    await expect(new.locator('[data-field="id"]')).to_have_value("how_sure_are_you")
    await new.locator('[data-field="type"]').select_option("scale")
    await new.get_by_label(text(language, "Lowest value")).fill("1")
    await new.get_by_label(text(language, "Highest value")).fill("5")
    await new.get_by_label(text(language, "Required"), exact=True).check()
    # Two moves up, the focus staying on the button: it is now question 2.
    move_up = text(language, "Move question %(n)s up", n=4)
    await page.get_by_role("button", name=move_up).focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#sb-announce")).to_have_text(
        text(language, "Question moved to position %(n)s.", n=3)
    )
    await page.keyboard.press("Enter")
    await expect(questions.nth(1).locator('textarea[data-field="label"]')).to_have_value(
        "How sure are you?"
    )

    # On question 1: "No" skips to question 3 (the yes/no one), past the new one.
    first = questions.nth(0)
    await first.get_by_role("button", name=text(language, "Add a skip rule")).click()
    await first.get_by_label(text(language, "When the answer is")).select_option("no")
    target = first.get_by_label(text(language, "skip to"))
    volunteer_title = text(
        language, "Question %(n)s: %(label)s", n=3, label="Would you volunteer with us?"
    )
    await target.select_option(label=volunteer_title)
    # The JSON disclosure exports what the builder holds.
    await page.click("#sb-json-box summary")
    await expect(page.locator("#survey")).to_have_value(re.compile(r'"to": "volunteer"'))

    # A question without text: the server's error shows at that field.
    await questions.nth(2).locator('textarea[data-field="label"]').fill("")
    await page.click("#campaign-form button[type=submit]")
    await expect(page.locator("#sb-questions [aria-invalid=true]")).to_have_count(1)
    invalid = page.locator("#sb-questions > li").nth(2).locator('textarea[data-field="label"]')
    await expect(invalid).to_have_attribute("aria-invalid", "true")
    error_id = await invalid.get_attribute("aria-describedby")
    await expect(page.locator(f"#{error_id}")).to_have_text(text(language, "Required."))
    await shot(page, f"{language}-survey-builder-error")
    # The rest of what was built came back as it was.
    await expect(page.locator("#sb-questions > li")).to_have_count(4)
    await invalid.fill("Would you volunteer with us?")
    await page.click("#campaign-form button[type=submit]")
    await expect(page.locator("p.ok[role=status]")).to_be_visible()
    await shot(page, f"{language}-survey-builder-saved")

    async with world.sessions() as session:
        campaign = await session.get(Campaign, world.campaign_id)
    assert campaign is not None
    survey = campaign.survey
    assert [q.id for q in survey.questions] == ["vote", "how_sure_are_you", "volunteer", "issues"]
    assert survey.questions[1].required and survey.questions[1].max == 5
    assert survey.questions[0].skip_data() == [{"when": "no", "to": "volunteer"}]
    assert survey.skipped({"vote": "no"}) == {"how_sure_are_you"}

    # Export: the download is the saved JSON.  Import: pasted JSON replaces the builder's.
    await page.click("#sb-json-box summary")
    async with page.expect_download() as download_info:
        await page.click("#sb-download")
    download = await download_info.value
    assert download.suggested_filename == "survey.json"
    exported = await asyncio.to_thread(Path(await download.path()).read_text, "utf-8")
    assert json.loads(exported)["questions"][0]["skip"] == [{"when": "no", "to": "volunteer"}]
    await page.fill("#survey", "{not json")
    await page.click("#sb-import")
    await expect(page.locator("#sb-json-status")).to_contain_text(
        text(language, "This is not valid JSON: %(reason)s", reason="")
    )
    await expect(questions).to_have_count(4)
    pasted = {"questions": [{"id": "only", "label": "Only one?", "type": "yes_no"}]}
    await page.fill("#survey", json.dumps(pasted))
    await page.click("#sb-import")
    await expect(questions).to_have_count(1)
    await expect(questions.nth(0).locator('textarea[data-field="label"]')).to_have_value(
        "Only one?"
    )


async def test_an_answer_hides_the_question_it_skips_and_the_outcome_saves(
    app: Served, world: WebWorld, contexts: Contexts
) -> None:
    async with world.sessions.begin() as session:
        campaign = await session.get(Campaign, world.campaign_id)
        assert campaign is not None
        campaign.survey = SurveyDefinition.model_validate(
            {
                "language": "fr",
                "questions": [
                    {
                        "id": "vote",
                        "label": "Irez-vous voter ?",
                        "type": "yes_no",
                        "required": True,
                        "skip": [{"when": "no", "to": "remarks"}],
                    },
                    {
                        "id": "sure",
                        "label": "Sûr ?",
                        "type": "scale",
                        "min": 1,
                        "max": 5,
                        "required": True,
                    },
                    {"id": "remarks", "label": "Remarques", "type": "text"},
                ],
            }
        )
    page = await contexts.page(phone=True, locale="en-CA")
    await sign_in(page, app, "alice")
    await page.goto(f"{app.url}/contacts/{world.contacts['ada']}?campaign={world.campaign_id}")
    await page.click("#record-outcome")
    await page.check('input[name="outcome"][value="answered"]')
    await page.click("#step-next")
    await page.check('input[name="consent"][value="true"]')
    await page.click("#step-next")
    sure = page.locator('.question[data-question="sure"]')
    await expect(sure).to_be_visible()
    # The survey is in French: so are its yes and no, on an English screen.
    vote = page.locator('.question[data-question="vote"]')
    await expect(vote.locator("label.choice").first).to_have_text("Oui")
    await vote.get_by_text("Non").click()
    await expect(sure).to_be_hidden()
    # Back to "yes": asked again; then "no" once more after answering it.
    await vote.get_by_text("Oui").click()
    await expect(sure).to_be_visible()
    await page.check('input[name="survey.sure"][value="4"]')
    await vote.get_by_text("Non").click()
    await expect(sure).to_be_hidden()
    await page.fill('textarea[name="survey.remarks"]', "Pas cette fois")
    await shot(page, "en-survey-skip-logic")
    # The hidden required question does not stop the volunteer.
    await page.click("#step-next")
    await expect(page.locator('fieldset[data-step="details"]')).to_be_visible()
    await page.click("#step-next")
    await page.click("#step-save")
    await expect(page.locator("#done-panel")).to_be_visible()

    async with world.sessions() as session:
        stored = await session.scalar(
            select(Disposition).where(Disposition.contact_id == world.contacts["ada"])
        )
    assert stored is not None
    # The skipped question's earlier answer was cleared, not sent.
    assert stored.survey_answers == {"vote": False, "remarks": "Pas cette fois"}
