"""One headless Chromium for the whole session (Debian's /usr/bin/chromium), driven
by Playwright; screenshots go to artifacts/screenshots/."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, async_playwright

from tests.e2e.conftest import world  # noqa: F401 - the same world for browser tests

CHROMIUM = Path(os.environ.get("DIALER_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE: ViewportSize = {"width": 375, "height": 812}
DESKTOP: ViewportSize = {"width": 1280, "height": 860}


def _chromium_installed() -> bool:
    return CHROMIUM.exists()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not _chromium_installed():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium")
    os.makedirs(SCREENSHOTS, exist_ok=True)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


class Contexts:
    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.opened: list[BrowserContext] = []

    async def page(
        self, *, phone: bool = True, locale: str = "en-CA", zone: str = "America/Toronto"
    ) -> Page:
        context = await self.browser.new_context(
            viewport=PHONE if phone else DESKTOP,
            locale=locale,
            timezone_id=zone,
            device_scale_factor=1,
        )
        context.set_default_timeout(10_000)
        self.opened.append(context)
        return await context.new_page()


@pytest.fixture
async def contexts(browser: Browser) -> AsyncIterator[Contexts]:
    made = Contexts(browser)
    yield made
    for context in made.opened:
        await context.close()


async def shot(page: Page, name: str) -> None:
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
