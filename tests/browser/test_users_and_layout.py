"""Issue 17 in a real browser: the live panel asks before hanging up and shows
caller IDs formatted; the language switcher, the users table and the
dashboard chart hold their shape at 375 and 1280 px, in English and French."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from playwright.async_api import expect
from sqlalchemy import select

from dialer.domain.vocabulary import CallState
from dialer.store.models import CallAttempt, User
from tests.browser.conftest import Contexts, shot
from tests.browser.walk import sign_in, switch_language
from tests.e2e.webworld import CALLER_ID, PASSWORD, Served, WebWorld, serve

pytestmark = pytest.mark.slow


@pytest.fixture
async def live_app(pg_url: str, world: WebWorld) -> AsyncIterator[Served]:
    async with serve(pg_url, with_simulator=True, time_scale=0.5) as running:
        yield running


async def start_call(served: Served, username: str, contact_id: int, campaign_id: int) -> str:
    """A call placed through the API, as the volunteer's screen does."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post(
            served.url + "/api/session", json={"username": username, "password": PASSWORD}
        ) as response:
            assert response.status == 200
            csrf = (await response.json())["csrf_token"]
        async with http.post(
            served.url + "/api/calls",
            json={"contact_id": contact_id, "campaign_id": campaign_id},
            headers={"X-CSRF-Token": csrf},
        ) as response:
            body = await response.json()
            assert response.status == 201, body
            return str(body["call_id"])


async def call_state(world: WebWorld, call_id: str) -> CallState:
    async with world.sessions() as session:
        state = await session.scalar(
            select(CallAttempt.state).where(CallAttempt.call_id == call_id)
        )
    assert state is not None
    return state


async def test_hang_up_asks_first_and_caller_ids_are_formatted(
    live_app: Served, world: WebWorld, contexts: Contexts
) -> None:
    served = live_app
    async with world.sessions.begin() as session:
        olivia = await session.get(User, world.users["olivia"])
        assert olivia is not None
        olivia.language = "fr"
    organizer = await contexts.page(phone=False, locale="fr-CA")
    await sign_in(organizer, served, "olivia")
    await organizer.goto(served.url + "/ops/live")
    await expect(organizer.locator("#live-status")).to_have_class(re.compile("ok"))

    # Marie stays on the line until someone hangs up.
    call_id = await start_call(served, "alice", world.contacts["marie"], world.campaign_id)
    row = organizer.locator("#calls tr[data-call]")
    await expect(row.locator('[data-f="contact"]')).to_have_text("Marie Curie")
    assert CALLER_ID == "+15145550000"
    await expect(row.locator('[data-f="caller"]')).to_have_text("+1 514-555-0000")
    await expect(row).to_have_attribute("data-state", "talking", timeout=10_000)

    # Dismissed: the call goes on.
    dialog = organizer.locator("#hangup-confirm")
    await row.locator("[data-hangup]").click()
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("Raccrocher cet appel ?")
    await expect(dialog).to_contain_text("Alice Martin")
    await expect(dialog).to_contain_text("Marie Curie")
    await shot(organizer, "fr-30-hangup-confirm")
    await dialog.locator('button[value="cancel"]').click()
    await expect(dialog).to_be_hidden()
    await asyncio.sleep(0.5)
    await expect(row).to_have_count(1)
    assert await call_state(world, call_id) is CallState.TALKING

    # Escape keeps it too; only the confirm button hangs up.
    await row.locator("[data-hangup]").click()
    await expect(dialog).to_be_visible()
    await organizer.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(row).to_have_count(1)
    await row.locator("[data-hangup]").click()
    await dialog.locator('button[value="hangup"]').click()
    await expect(organizer.locator("#calls tr[data-call]")).to_have_count(0, timeout=10_000)
    assert await call_state(world, call_id) is CallState.ENDED


async def test_switcher_users_table_and_chart_keep_their_shape(
    pg_url: str, world: WebWorld, contexts: Contexts
) -> None:
    async with serve(pg_url) as served:
        page = await contexts.page(phone=False)
        await sign_in(page, served, "olivia")
        for language in ("en", "fr"):
            for width in (375, 1280):
                await page.set_viewport_size({"width": width, "height": 860})
                for path in ("/contacts", "/ops/users"):
                    await page.goto(served.url + path)
                    await switch_language(page, language)
                    box = await page.locator("#lang-select").bounding_box()
                    assert box is not None
                    # It collapsed to 49 px: the options lost their names.
                    assert box["width"] >= 80, (language, width, path, box)
                    names = await page.locator("#lang-select option").all_inner_texts()
                    assert [n.strip() for n in names] == ["English", "Français"], names

                # Every header sits over its column.
                await page.goto(served.url + "/ops/users")
                headers = page.locator("#users-table thead th")
                cells = page.locator("#users-table tbody tr").first.locator("td")
                assert await headers.count() == await cells.count() == 6
                for index in range(6):
                    head = await headers.nth(index).bounding_box()
                    cell = await cells.nth(index).bounding_box()
                    assert head is not None and cell is not None
                    assert abs(head["x"] - cell["x"]) < 1, (language, width, index)
                    assert abs(head["width"] - cell["width"]) < 1, (language, width, index)
                # The wide table scrolls in its frame; the page itself does not.
                page_width = await page.evaluate("document.documentElement.scrollWidth")
                assert page_width <= width, (language, width, page_width)
                await shot(page, f"{language}-{width}-users")

                # The chart: its first hour label inside the drawing, and a scale.
                await page.goto(f"{served.url}/ops/campaigns/{world.campaign_id}")
                chart = await page.locator("#hourly-chart").bounding_box()
                frame = await page.locator(".chart-wrap").bounding_box()
                first = await page.locator("#hourly-chart .axis-x").first.bounding_box()
                assert chart is not None and frame is not None and first is not None
                assert first["x"] >= chart["x"] and first["x"] >= frame["x"], (first, chart)
                assert first["x"] + first["width"] <= chart["x"] + chart["width"]
                scale = await page.locator("#hourly-chart .axis-y").all_text_contents()
                assert len(scale) >= 2 and scale[0].strip() == "0", scale
                await shot(page, f"{language}-{width}-dashboard")
