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
