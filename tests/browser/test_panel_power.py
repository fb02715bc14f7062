"""The live panel's power sessions in a real browser, against the AMI simulator.

Alice starts a power session while none of her contacts may be called (it
is 3 a.m. for them by the campaign's hours): Olivia, her team's organizer,
sees her waiting, the time she has waited ticking; Oscar, the other team's
organizer, sees no session at all.  Alice pauses (the reason shows), then
resumes once her contacts are callable: she is dialed a contact, the calls
made go up; she leaves, and the row goes.  The campaign's dashboard then
counts her call as a power-mode one.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import update

from dialer.store.models import Campaign
from tests.browser.conftest import Contexts, shot
from tests.browser.walk import sign_in
from tests.e2e.test_panel_power import NIGHT_ONLY, power_campaign
from tests.e2e.webworld import ALL_DAY, Served, WebWorld, serve

pytestmark = pytest.mark.slow


@pytest.fixture
async def live_app(pg_url: str, world: WebWorld) -> AsyncIterator[Served]:
    await power_campaign(world, hours=NIGHT_ONLY)
    async with serve(pg_url, with_simulator=True, time_scale=0.5) as running:
        yield running


def row_selector(world: WebWorld) -> str:
    return f'#sessions tr[data-session="{world.users["alice"]}"]'


async def seconds_shown(page: Page, selector: str) -> int:
    minutes, seconds = (await page.locator(selector).inner_text()).split(":")
    return int(minutes) * 60 + int(seconds)


async def test_an_organizer_watches_a_power_session_wait_and_call(
    live_app: Served, world: WebWorld, contexts: Contexts
) -> None:
    served = live_app
    olivia = await contexts.page(phone=False)
    await sign_in(olivia, served, "olivia")
    await olivia.goto(served.url + "/ops/live")
    await expect(olivia.locator("#live-status")).to_have_class(re.compile("ok"))
    oscar = await contexts.page(phone=False)
    await sign_in(oscar, served, "oscar")
    await oscar.goto(served.url + "/ops/live")
    await expect(oscar.locator("#live-status")).to_have_class(re.compile("ok"))

    alice = await contexts.page(phone=True)
    await sign_in(alice, served, "alice")
    await alice.evaluate(
        "(body) => PB.api('POST', '/api/power', body)", {"campaign_id": world.campaign_id}
    )

    row = olivia.locator(row_selector(world))
    await expect(row).to_have_attribute("data-state", "waiting", timeout=15_000)
    await expect(row.locator('[data-f="volunteer"]')).to_have_text("Alice Martin")
    await expect(row.locator('[data-f="campaign"]')).to_have_text("Get out the vote")
    await expect(row.locator('[data-f="state"]')).to_have_text("Waiting")
    await expect(row.locator('[data-f="calls"]')).to_have_text("0")
    await expect(olivia.locator("#session-count")).to_have_text("1")
    await expect(olivia.locator("#sessions tr.empty")).to_be_hidden()
    # The wait ticks with no event from the server.  (Its first second may
    # read 0: the panel's clock is the server's as of the snapshot, less
    # the time the snapshot took to arrive, and never counts below zero.)
    waited_cell = olivia.locator(f'{row_selector(world)} [data-f="waited"]')
    await expect(waited_cell).not_to_have_text("0:00")
    waited = await seconds_shown(olivia, f'{row_selector(world)} [data-f="waited"]')
    await olivia.wait_for_timeout(2_200)
    assert await seconds_shown(olivia, f'{row_selector(world)} [data-f="waited"]') >= waited + 2
    assert await seconds_shown(olivia, f'{row_selector(world)} [data-f="for"]') >= 2
    await shot(olivia, "en-31-live-panel-power-session-waiting")

    # Another team's organizer sees nothing of it, in the snapshot or since.
    await expect(oscar.locator("#sessions tr[data-session]")).to_have_count(0)
    await expect(oscar.locator("#sessions tr.empty")).to_be_visible()
    await expect(oscar.locator("#session-count")).to_have_text("0")

    await alice.evaluate("() => PB.api('POST', '/api/power/pause', {reason: 'Coffee break'})")
    await expect(row).to_have_attribute("data-state", "paused")
    await expect(row.locator('[data-f="state"]')).to_have_text("Paused: Coffee break")
    # Paused is not waiting for a contact: the wait stands still.
    held = await seconds_shown(olivia, f'{row_selector(world)} [data-f="waited"]')
    await olivia.wait_for_timeout(1_500)
    assert await seconds_shown(olivia, f'{row_selector(world)} [data-f="waited"]') == held

    async with world.sessions.begin() as session:
        await session.execute(
            update(Campaign)
            .where(Campaign.id == world.campaign_id)
            .values(calling_hours=ALL_DAY.to_json())
        )
    await alice.evaluate("() => PB.api('POST', '/api/power/resume')")
    await expect(row.locator('[data-f="calls"]')).to_have_text("1", timeout=15_000)
    await expect(row).to_have_attribute(
        "data-state", re.compile("dialing|talking|wrap_up"), timeout=15_000
    )

    await alice.evaluate("() => PB.api('POST', '/api/power/leave')")
    await expect(row).to_have_count(0, timeout=15_000)
    await expect(olivia.locator("#sessions tr.empty")).to_be_visible()
    await expect(olivia.locator("#session-count")).to_have_text("0")
    await expect(oscar.locator("#sessions tr[data-session]")).to_have_count(0)

    # The campaign's dashboard counts the session's call as a power-mode one.
    await olivia.goto(f"{served.url}/ops/campaigns/{world.campaign_id}")
    await expect(olivia.locator("#mode-calls td").first).to_have_text("1")
    await expect(olivia.locator("#mode-volunteers td").first).to_have_text("1")
    await expect(olivia.locator("#mode-calls td").nth(1)).to_have_text("0")
    await shot(olivia, "en-32-dashboard-power-vs-click")
