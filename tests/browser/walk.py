"""Steps the browser tests share: signing in, switching language, importing a
file through the import page, and the app's own wording for assertions (so
a test reads the same in English and in French)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from playwright.async_api import Page, expect

from tests.e2e.webworld import PASSWORD, Served
from web.i18n import labels
from web.i18n import translate as i18n


def text(language: str, message: str, **values: object) -> str:
    i18n.activate(language, i18n.zone_or("America/Toronto", "UTC"))
    return i18n._(message, **values)


def state_label(language: str, state: str) -> str:
    i18n.activate(language, i18n.zone_or("America/Toronto", "UTC"))
    return labels.call_state(state)


async def sign_in(page: Page, served: Served, username: str) -> None:
    await page.goto(served.url + "/login")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.press("#password", "Enter")
    await page.wait_for_url(re.compile(r".*/(campaigns|ops/live|ops/campaigns)$"))


async def switch_language(page: Page, language: str) -> None:
    if await page.get_attribute("html", "lang") == language:
        return
    async with page.expect_navigation():
        await page.select_option("#lang-select", language)
    await expect(page.locator("html")).to_have_attribute("lang", language)


async def import_csv(
    page: Page,
    served: Served,
    campaign_id: int,
    csv_file: Path,
    *,
    overwrite: bool = False,
    share_among: Sequence[str] = (),
) -> None:
    """Upload through the page's script and wait for the background import's report.

    ``share_among``: usernames ticked under "Share the new contacts out among".
    """
    await page.goto(f"{served.url}/ops/campaigns/{campaign_id}/import")
    if overwrite:
        await page.check("#overwrite")
    for username in share_among:
        await page.check(f'input[name="assign_to"][value="{username}"]')
    await page.set_input_files("#file", str(csv_file))
    await page.click("#import-form button[type=submit]")
    await expect(page.locator("#import-report")).to_be_visible(timeout=20_000)
