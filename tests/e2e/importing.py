"""Upload a CSV file as the import page's plain form does, and wait for the report."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.e2e.conftest import Browser


async def upload_csv(browser: Browser, campaign_id: int, form: aiohttp.FormData) -> tuple[int, str]:
    """POST the form; once the background import it starts has ended, its page.

    A file refused as a whole comes back at once: its status and page.
    """
    response = await browser.request("POST", f"/ops/campaigns/{campaign_id}/import", data=form)
    async with response:
        if response.status != 303:
            return response.status, await response.text()
        page = response.headers["Location"]
    job_id = page.rsplit("=", 1)[1]
    await wait_for_job(browser, f"/ops/campaigns/{campaign_id}/import/jobs/{job_id}")
    return await browser.page(page)


async def wait_for_job(browser: Browser, progress_url: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            status, job = await browser.api("GET", progress_url)
            assert status == 200, job
            if job["finished"]:
                return dict(job)
            await asyncio.sleep(0.05)


def csv_form(data: bytes, *, filename: str = "x.csv", **fields: str) -> aiohttp.FormData:
    """The import page's form: its other ``fields`` first, then the file."""
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("file", data, filename=filename)
    return form


async def post_import(
    browser: Browser, campaign_id: int, form: aiohttp.FormData
) -> tuple[int, Any]:
    """POST the form as the page's script does, asking for JSON: status and body."""
    return await browser.api(
        "POST",
        f"/ops/campaigns/{campaign_id}/import",
        None,
        data=form,
        headers={"Accept": "application/json"},
    )
