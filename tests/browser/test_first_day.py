"""A first day, end to end, in a real browser (issue 17's "done when").

An organizer imports a small CSV file into the campaign and shares the new
contacts out to a volunteer (ticked on the import form in the English walk,
on the Lists page in the French one, so both ways are walked); the
volunteer sees the assignment on the bell, opens it, calls one of the new
contacts (the AMI simulator answers, talks and hangs up), records the
outcome with a survey answer and a follow-up task for the organizer; the
organizer gets the task on the bell, marks it done, and finds the call on
the campaign's dashboard and in the contact's History.  Once in English and
once in French; every screen is saved as
artifacts/screenshots/first-day-NN-*.png (``-fr`` for the French walk).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select

from dialer.domain.vocabulary import DispositionOutcome, TaskStatus
from dialer.store.models import Disposition, FollowUpTask
from tests.browser.conftest import Contexts, shot
from tests.browser.walk import import_csv, sign_in, state_label, switch_language, text
from tests.e2e.webworld import Served, WebWorld, serve
from web.i18n import labels
from web.i18n import translate as i18n

pytestmark = pytest.mark.slow

# Three new people.  Hedy's number ends in 7: the simulator's contact answers
# after a ring, talks a moment and hangs up by herself.
NEW_CONTACTS = (
    "first_name,last_name,phone,email\n"
    "Hedy,Lamarr,514 555 0137,hedy@example.org\n"
    "Hélène,Boucher,514 555 0124,\n"
    "Rosalind,Franklin,514 555 0148,\n"
)
TASK = "Drop off a lawn sign on Saturday"


@pytest.fixture
async def live_app(pg_url: str, world: WebWorld) -> AsyncIterator[Served]:
    async with serve(pg_url, with_simulator=True, time_scale=0.5) as running:
        yield running


def plural(language: str, singular: str, many: str, count: int, **values: object) -> str:
    i18n.activate(language, i18n.zone_or("America/Toronto", "UTC"))
    return i18n.ngettext(singular, many, count, **values)


def outcome_label(language: str, outcome: DispositionOutcome) -> str:
    i18n.activate(language, i18n.zone_or("America/Toronto", "UTC"))
    return labels.disposition_outcome(outcome)


def medium_date(language: str, day: date) -> str:
    i18n.activate(language, i18n.zone_or("America/Toronto", "UTC"))
    return i18n.fmt_date(day)


@pytest.mark.parametrize("language", ["en", "fr"])
async def test_first_day_import_assign_call_outcome_task_done(
    live_app: Served, world: WebWorld, contexts: Contexts, tmp_path: Path, language: str
) -> None:
    served = live_app
    campaign = world.campaign_id
    suffix = "" if language == "en" else f"-{language}"

    async def screen(page: Page, number: int, name: str) -> None:
        await shot(page, f"first-day-{number:02d}-{name}{suffix}")

    def says(message: str, **values: object) -> str:
        return text(language, message, **values)

    # 1. The organizer imports three new people into the campaign and gives
    # them to Alice: on the import form in English, on the Lists page in French.
    share_at_import = language == "en"
    olivia = await contexts.page(phone=False, locale=f"{language}-CA")
    await sign_in(olivia, served, "olivia")
    await switch_language(olivia, language)
    csv_file = tmp_path / "new-contacts.csv"
    csv_file.write_text(NEW_CONTACTS, encoding="utf-8")
    await import_csv(
        olivia, served, campaign, csv_file, share_among=("alice",) if share_at_import else ()
    )
    report = olivia.locator("#import-report")
    await expect(report).to_contain_text(
        plural(language, "%(num)s imported", "%(num)s imported", 3)
    )
    await expect(report).to_contain_text(
        plural(
            language,
            "%(num)s added to the calling list",
            "%(num)s added to the calling list",
            3,
        )
    )
    await expect(olivia.locator("#import-errors")).to_have_count(0)
    await screen(olivia, 1, "import")

    await olivia.click(f'nav.tabs a[href="/ops/campaigns/{campaign}/assign"]')
    lists = olivia.locator("main")
    if not share_at_import:
        await expect(lists).to_contain_text(
            plural(
                language,
                "%(num)s is not assigned to anyone.",
                "%(num)s are not assigned to anyone.",
                3,
            )
        )
        share = olivia.locator('form:has(input[name="action"][value="share"])')
        await share.locator(f'input[name="volunteer"][value="{world.users["alice"]}"]').check()
        async with olivia.expect_navigation():
            await share.locator('button[type="submit"]').click()
        await expect(olivia.locator("p.ok")).to_have_text(
            says("%(count)s contacts assigned.", count=3)
        )
    # Nobody left out; Alice has her two contacts from before and the three new ones.
    await expect(lists).to_contain_text(
        plural(
            language, "%(num)s is not assigned to anyone.", "%(num)s are not assigned to anyone.", 0
        )
    )
    alice_row = olivia.locator("#lists-table tbody tr", has_text="Alice Martin")
    await expect(alice_row.locator("td.num").first).to_have_text("5")
    await screen(olivia, 2, "assigned")

    # 2. Alice signs in: the bell counts the assignment; opening it leads to her list.
    alice = await contexts.page(phone=True, locale=f"{language}-CA")
    await sign_in(alice, served, "alice")
    await switch_language(alice, language)
    await expect(alice.locator("#bell .bell-count")).to_have_text(re.compile(r"^1\b"))
    await screen(alice, 3, "bell")
    await alice.click("#bell")
    assigned = plural(
        language,
        "%(num)d contact assigned to you in %(title)s",
        "%(num)d contacts assigned to you in %(title)s",
        3,
        title="Get out the vote",
    )
    await expect(alice.locator(".notifications li.unread")).to_have_count(1)
    await screen(alice, 4, "notification")
    await alice.get_by_role("button", name=assigned).click()
    await alice.wait_for_url(re.compile(rf".*/campaigns/{campaign}$"))
    await expect(alice.locator("#bell .bell-count")).to_have_count(0)
    for name in ("Hedy Lamarr", "Hélène Boucher", "Rosalind Franklin"):
        await expect(alice.get_by_role("link", name=name)).to_be_visible()
    await screen(alice, 5, "my-list")

    # 3. She calls Hedy, who answers, talks and hangs up.
    await alice.get_by_role("link", name="Hedy Lamarr").click()
    await alice.wait_for_url(re.compile(rf".*/contacts/\d+\?campaign={campaign}$"))
    found = re.search(r"/contacts/(\d+)\?", alice.url)
    assert found is not None
    hedy = int(found.group(1))
    await expect(alice.locator("#contact-name")).to_have_text("Hedy Lamarr")
    await alice.click("#call-button")
    await expect(alice.locator("#call-state")).to_have_text(state_label(language, "talking"))
    await screen(alice, 6, "talking")
    await expect(alice.locator("#call-state")).to_have_text(state_label(language, "ended"))
    await expect(alice.locator("#outcome-form")).to_be_visible()

    # The outcome: answered, agreed, "yes" to the vote, a task for Olivia.
    await alice.check('input[name="outcome"][value="answered"]')
    await alice.click("#step-next")
    await alice.check('input[name="consent"][value="true"]')
    await alice.click("#step-next")
    await alice.check('input[name="survey.vote"][value="yes"]')
    await screen(alice, 7, "survey")
    await alice.click("#step-next")
    await expect(alice.locator('fieldset[data-step="details"]')).to_be_visible()
    await alice.click("#step-next")
    await expect(alice.locator('fieldset[data-step="wrapup"]')).to_be_visible()
    due = date.today() + timedelta(days=3)
    await alice.select_option("#task-assignee", str(world.users["olivia"]))
    await alice.fill("#task-description", TASK)
    await alice.fill("#task-due", due.isoformat())
    await screen(alice, 8, "wrap-up")
    await alice.click("#step-save")
    await expect(alice.locator("#done-saved")).to_have_text(says("Saved. Thank you!"))
    await expect(alice.locator("#call-button")).to_be_enabled()
    await screen(alice, 9, "saved")

    # 4. Olivia's bell has the task; it leads to her tasks, where she marks it done.
    await olivia.goto(f"{served.url}/ops/campaigns/{campaign}")
    await expect(olivia.locator("#bell .bell-count")).to_have_text(re.compile(r"^1\b"))
    await olivia.click("#bell")
    about = says("New task about %(name)s: %(description)s", name="Hedy Lamarr", description=TASK)
    await expect(olivia.locator(".notifications li.unread")).to_contain_text(about)
    await screen(olivia, 10, "task-notification")
    await olivia.get_by_role("button", name=about).click()
    await olivia.wait_for_url(re.compile(r".*/tasks(#task-\d+)?$"))
    task_row = olivia.locator("#open-tasks li", has_text=TASK)
    await expect(task_row).to_contain_text("Hedy Lamarr")
    await expect(task_row).to_contain_text(says("due %(date)s", date=medium_date(language, due)))
    await screen(olivia, 11, "task-open")
    async with olivia.expect_navigation():
        await task_row.get_by_role("button", name=says("Done")).click()
    await expect(olivia.locator("#open-tasks")).to_have_count(0)
    await expect(olivia.locator("#done-tasks")).to_contain_text(TASK)
    await screen(olivia, 12, "task-done")

    # 5. The dashboard counts the call and its outcome; Hedy's History tells it all.
    await olivia.goto(f"{served.url}/ops/campaigns/{campaign}")
    await expect(olivia.locator("#stat-dials")).to_have_text("1")
    await expect(olivia.locator("#stat-reached")).to_have_text("1")
    answered = outcome_label(language, DispositionOutcome.ANSWERED)
    answered_row = olivia.locator("#outcomes-table tr", has=olivia.locator("th", has_text=answered))
    await expect(answered_row.locator("td")).to_have_text("1")
    # Alice's row: one dial, one reached, one outcome.
    alice_stats = olivia.locator("#volunteer-stats tbody tr", has_text="Alice Martin")
    await expect(alice_stats.locator("td.num").nth(0)).to_have_text("1")
    await expect(alice_stats.locator("td.num").nth(1)).to_have_text("1")
    await expect(alice_stats.locator("td.num").nth(2)).to_have_text("1")
    await screen(olivia, 13, "dashboard")
    await olivia.goto(f"{served.url}/contacts/{hedy}?tab=history")
    history = olivia.locator("#tab-history")
    await expect(history).to_be_visible()
    await expect(history).to_contain_text(says("Outcome by %(name)s", name="Alice Martin"))
    await expect(history.locator(".history-outcome strong").first).to_have_text(answered)
    await expect(history).to_contain_text(says("Agreed to answer"))
    await expect(history.locator(".survey-answers")).to_contain_text("Will you vote on Sunday?")
    await expect(history.locator(".survey-answers")).to_contain_text("Yes, for sure")
    i18n.activate(language, i18n.zone_or("America/Toronto", "UTC"))
    await expect(history.locator(".history-task")).to_contain_text(
        f"{says('Task for %(name)s', name='Olivia Organizer')} "
        f"({labels.task_status(TaskStatus.DONE)})"
    )
    await screen(olivia, 14, "history")

    # What the screens said is what was stored.
    async with world.sessions() as session:
        disposition = await session.scalar(
            select(Disposition).where(Disposition.contact_id == hedy)
        )
        task = await session.scalar(select(FollowUpTask).where(FollowUpTask.contact_id == hedy))
    assert disposition is not None and disposition.volunteer_id == world.users["alice"]
    assert disposition.outcome is DispositionOutcome.ANSWERED
    assert disposition.survey_answers == {"vote": "yes"}
    assert task is not None and task.assignee_id == world.users["olivia"]
    assert task.status is TaskStatus.DONE and task.due_on == due
