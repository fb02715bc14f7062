"""The import page in a real browser: a row sharing Ada's number, uploaded by the
page's script, leaves her name alone and says so; ticking "replace" renames her
and says that too.  Screenshots of both reports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import expect

from dialer.store.models import Contact
from tests.browser.conftest import Contexts, shot
from tests.browser.walk import import_csv, sign_in
from tests.e2e.webworld import Served, WebWorld, serve

pytestmark = pytest.mark.slow


@pytest.fixture
async def app(pg_url: str, world: WebWorld) -> AsyncIterator[Served]:
    async with serve(pg_url) as running:
        yield running


async def test_a_duplicate_row_is_reported_and_replaces_only_when_asked(
    app: Served, world: WebWorld, contexts: Contexts, tmp_path: Path
) -> None:
    csv_file = tmp_path / "duplicate.csv"
    csv_file.write_text("first_name,last_name,phone\nAda,Duplicate,514 555 0187\n")
    page = await contexts.page(phone=False)
    await sign_in(page, app, "olivia")

    await import_csv(page, app, world.campaign_id, csv_file)
    await expect(page.locator("#import-conflicts")).to_contain_text("which was kept")
    await expect(page.locator("#import-changes tbody tr")).to_have_count(1)
    await expect(page.locator("#import-changes")).to_contain_text(
        "kept 'Ada Lovelace', the file says 'Ada Duplicate'"
    )
    await expect(page.locator("#import-changes-download")).to_be_visible()
    await shot(page, "import-conflict-kept")
    async with world.sessions() as session:
        ada = await session.get(Contact, world.contacts["ada"])
        assert ada is not None and ada.last_name == "Lovelace"

    await import_csv(page, app, world.campaign_id, csv_file, overwrite=True)
    await expect(page.locator("#import-changes")).to_contain_text(
        "changed 'Ada Lovelace' to 'Ada Duplicate'"
    )
    await shot(page, "import-overwritten")
    async with world.sessions() as session:
        ada = await session.get(Contact, world.contacts["ada"])
        assert ada is not None and ada.last_name == "Duplicate"
