"""CSV imports run in the background: the service keeps answering, the page follows them."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select, update

from dialer.store.models import CallingListEntry, Contact, ContactPhone, ImportJob
from tests.e2e.conftest import Browser, ClientFactory
from tests.e2e.importing import csv_form, post_import, upload_csv, wait_for_job
from tests.e2e.webworld import PASSWORD, Served, WebWorld, serve
from web.deps import deps_key

# Area codes of Canada (the test region), each with 800 exchanges: numbers enough.
AREA_CODES = (514, 438, 450, 613, 416, 647, 604, 778, 403, 780, 819, 418)
MILLION = 1_000_000


def write_big_csv(path: Path, rows: int) -> None:
    """``rows`` contacts with distinct valid numbers, a few rejected ones among them."""
    with path.open("w", encoding="utf-8") as out:
        out.write("name,phone\n")
        for index in range(rows):
            area = AREA_CODES[index % len(AREA_CODES)]
            exchange = 200 + (index // len(AREA_CODES)) % 800
            line = index // (len(AREA_CODES) * 800)
            if index % 1000 == 999:
                out.write(f"Bad {index},555-12\n")
            else:
                out.write(f"P{index},{area}{exchange}{line:04d}\n")


def browser_http() -> aiohttp.ClientSession:
    # Unsafe: keeps cookies set by an IP address (127.0.0.1), as a browser does.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def sign_in(http: aiohttp.ClientSession, base: str, username: str) -> Browser:
    browser = Browser(http, base)
    status, body = await browser.api(
        "POST", "/api/session", {"username": username, "password": PASSWORD}, csrf=False
    )
    assert status == 200, body
    browser.csrf = body["csrf_token"]
    return browser


@pytest.fixture
async def big_uploads(pg_url: str, world: WebWorld) -> AsyncIterator[Served]:
    async with serve(pg_url, max_upload_mb=64) as running:
        yield running


# With the other heavy imports, on one xdist worker (see tests/integration/test_bulk_import.py).
@pytest.mark.xdist_group("heavy_imports")
async def test_healthz_answers_throughout_a_million_row_import_and_the_loop_is_never_held(
    big_uploads: Served, world: WebWorld, tmp_path: Path
) -> None:
    """The upload and then the import of 1,000,000 rows never hold the event
    loop for 200 ms at a time, and /healthz answers throughout (never two
    misses in a row).

    /healthz (which queries PostgreSQL) is asked every 50 ms from the moment
    the upload starts, for 15 seconds: the whole upload, the header check
    and the first tens of thousands of rows (this 2-core machine imports
    1 M rows in minutes).  What holds the loop is measured in CPU time of its thread
    between two ticks, not in the probes' wall time: with the import's
    processes, PostgreSQL and the tests beside this one on two cores, the
    loop is sometimes simply not scheduled for half a second, which says
    nothing about what it runs.  The import is then stopped as a shutdown
    stops it, and must be recorded as interrupted with the rows it got
    through.
    """
    csv_path = tmp_path / "million.csv"
    await asyncio.to_thread(write_big_csv, csv_path, MILLION)
    assert csv_path.stat().st_size > 15 * 1024 * 1024
    async with browser_http() as olivia_http, aiohttp.ClientSession() as probe:
        olivia = await sign_in(olivia_http, big_uploads.url, "olivia")

        async def upload() -> tuple[int, Any]:
            form = aiohttp.FormData()
            form.add_field("encoding", "utf-8")
            form.add_field("assign_to", "alice")
            form.add_field("file", csv_path.open("rb"), filename="million.csv")
            response = await olivia.request(
                "POST",
                f"/ops/campaigns/{world.campaign_id}/import",
                data=form,
                headers={"X-CSRF-Token": olivia.csrf, "Accept": "application/json"},
            )
            async with response:
                return response.status, await response.json()

        held: list[float] = []
        probing = True

        async def ticker() -> None:
            last = time.thread_time()
            while probing:
                await asyncio.sleep(0.005)
                now = time.thread_time()
                held.append(now - last)
                last = now

        # The objects the tests before this one left in this xdist worker are
        # not the web process's: a full collection of them (250 ms of the
        # loop's CPU on a slow machine) is not what this measures.
        gc.collect()
        gc.freeze()
        ticking = asyncio.create_task(ticker())
        sending = asyncio.create_task(upload())
        latencies: list[float] = []
        # A probe whose database check timed out (2 s), and whether the one before did too.
        missed: list[str] = []
        missed_last = False
        deadline = time.monotonic() + 15
        try:
            while time.monotonic() < deadline:
                started = time.monotonic()
                async with probe.get(big_uploads.url + "/healthz") as response:
                    answer = await response.text()
                    if response.status != 200:
                        # Once in a while, with the two cores saturated (the
                        # real-PBX browser tests beside this one on CI), the
                        # database answers a probe after its 2 s: a load
                        # balancer takes a process out after several misses
                        # in a row, never after one.
                        assert '"TimeoutError"' in answer and not missed_last, [*missed, answer]
                        missed.append(answer)
                        # The database's 2 s are not the loop's: the probing
                        # goes on for as long, so the count below still
                        # measures 15 s of answers.
                        deadline += time.monotonic() - started
                    missed_last = response.status != 200
                latencies.append(time.monotonic() - started)
                await asyncio.sleep(0.05)
            probing = False
            await ticking
            assert max(held) < 0.2, sorted(held)[-5:]
            # Answered throughout: over 120 probes in 15 s, 50 ms apart, is
            # under 75 ms a probe on average.  And the upload returned meanwhile.
            assert len(latencies) > 120, sorted(latencies)[-5:]
            # One probe in ten at most; never two in a row (asserted as they came).
            assert len(missed) * 10 <= len(latencies), missed
            assert sending.done(), "the upload did not return while the rows were imported"
            status, body = sending.result()
        finally:
            gc.unfreeze()
            probing = False
            ticking.cancel()
            sending.cancel()
        assert status == 202, body
        status, progress = await olivia.api("GET", body["progress"])
        assert status == 200, progress
    assert progress["state"] == "running"
    # It is getting on with it meanwhile: its first window (10,000 rows) is in.  How
    # fast is bench/scale.py's to say; it runs at nice +10 beside the other tests.
    assert progress["rows_done"] >= 10_000
    # Read from the bytes of the rows so far: this file's rows grow longer as
    # it goes on (P1, ..., P999999), so an estimate made on the first window
    # alone runs about 12% high.
    assert progress["rows_estimate"] == pytest.approx(MILLION, rel=0.2)

    runtime_imports = big_uploads.app[deps_key].imports
    await runtime_imports.close()
    view = await runtime_imports.job(body["job"], campaign_id=world.campaign_id)
    assert view is not None and view.state == "interrupted"
    assert view.rows_done >= progress["rows_done"]
    async with world.sessions() as session:
        imported = await session.scalar(select(func.count()).select_from(ContactPhone))
    assert imported is not None and imported >= progress["rows_done"] * 0.9


async def test_a_plain_form_post_imports_in_the_background_and_reports_each_row(
    client: ClientFactory, world: WebWorld
) -> None:
    olivia = await client("olivia")
    form = aiohttp.FormData()
    form.add_field("csrf_token", olivia.csrf)
    form.add_field("assign_to", "alice")
    form.add_field(
        "file",
        b"name,phone\nJeanne Mance,514 555 0123\nPaul Chomedey,not a number\n",
        filename="contacts.csv",
    )
    response = await olivia.request("POST", f"/ops/campaigns/{world.campaign_id}/import", data=form)
    assert response.status == 303, await response.text()
    page_url = response.headers["Location"]
    job_id = page_url.rsplit("=", 1)[1]
    job = await wait_for_job(olivia, f"/ops/campaigns/{world.campaign_id}/import/jobs/{job_id}")
    assert (job["state"], job["rows_done"], job["percent"]) == ("done", 2, 100)
    status, html = await olivia.page(page_url)
    assert status == 200
    assert 'id="import-report"' in html and "1 imported" in html and "1 rejected" in html
    assert '<td class="num">3</td>' in html
    async with world.sessions() as session:
        listed = await session.scalar(
            select(func.count())
            .select_from(CallingListEntry)
            .join(ContactPhone, ContactPhone.contact_id == CallingListEntry.contact_id)
            .where(ContactPhone.e164 == "+15145550123")
        )
    assert listed == 1


async def test_a_refused_file_is_refused_at_once_and_nothing_is_started(
    client: ClientFactory, world: WebWorld
) -> None:
    olivia = await client("olivia")
    form = csv_form(b"name,email\nA,a@example.org\n")
    status, body = await post_import(olivia, world.campaign_id, form)
    assert status == 422
    assert "no phone column" in body["error"]["message"]
    async with world.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(ImportJob)) == 0


async def test_an_upload_over_the_limit_is_refused_while_it_streams(
    pg_url: str, world: WebWorld
) -> None:
    async with serve(pg_url, max_upload_mb=1) as served, browser_http() as http:
        olivia = await sign_in(http, served.url, "olivia")
        form = csv_form(b"name,phone\n" + b"A,5145550123\n" * 100_000, filename="big.csv")
        status, body = await post_import(olivia, world.campaign_id, form)
    assert status == 413, body
    assert "larger than 1 MB" in body["error"]["message"]


async def test_a_job_is_seen_only_from_its_own_campaign_and_goes_stale_when_abandoned(
    client: ClientFactory, world: WebWorld
) -> None:
    async with world.sessions.begin() as session:
        job = ImportJob(
            campaign_id=world.campaign_id,
            file_name="old.csv",
            state="running",
            bytes_total=1000,
            bytes_done=400,
            rows_done=40,
            updated_at=datetime.now(UTC) - timedelta(minutes=10),
        )
        session.add(job)
    adam = await client("adam")  # an admin, who sees both campaigns
    status, _body = await adam.api(
        "GET", f"/ops/campaigns/{world.other_campaign_id}/import/jobs/{job.id}"
    )
    assert status == 404
    olivia = await client("olivia")
    status, progress = await olivia.api(
        "GET", f"/ops/campaigns/{world.campaign_id}/import/jobs/{job.id}"
    )
    assert status == 200
    assert (progress["state"], progress["finished"], progress["rows_estimate"]) == (
        "interrupted",
        True,
        100,
    )
    status, html = await olivia.page(f"/ops/campaigns/{world.campaign_id}/import?job={job.id}")
    assert status == 200 and "The import was interrupted after 40 rows" in html
    async with world.sessions.begin() as session:
        await session.execute(
            update(ImportJob).where(ImportJob.id == job.id).values(updated_at=datetime.now(UTC))
        )
    status, html = await olivia.page(f"/ops/campaigns/{world.campaign_id}/import?job={job.id}")
    assert 'id="import-bar"' in html and "40 rows of about 100" in html


async def test_a_nul_in_a_form_field_is_refused_and_no_job_starts(
    client: ClientFactory, world: WebWorld
) -> None:
    olivia = await client("olivia")
    form = csv_form(b"name,phone\nA,5145550123\n", assign_to="ali\x00ce")
    status, body = await post_import(olivia, world.campaign_id, form)
    assert status == 422, body
    assert "cannot be stored" in body["error"]["message"]
    async with world.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(ImportJob)) == 0


async def test_an_organizer_importing_another_teams_number_gets_the_row_refused(
    client: ClientFactory, world: WebWorld
) -> None:
    """Oscar (Quebec, in French) imports Ada's number (Montreal): Ada stays as she was."""
    async with world.sessions() as session:
        ada_before = await session.get(Contact, world.contacts["ada"])
        assert ada_before is not None
    oscar = await client("oscar")
    form = csv_form(
        b"name,phone,notes\nAda Renamed,514 555 0187,Seen by Quebec\n", csrf_token=oscar.csrf
    )
    status, html = await upload_csv(oscar, world.other_campaign_id, form)
    assert status == 200
    assert "ce numéro est déjà enregistré pour une autre équipe" in html
    assert "Lovelace" not in html and f"#{world.contacts['ada']}" not in html
    async with world.sessions() as session:
        ada = await session.get(Contact, world.contacts["ada"])
        assert ada is not None
        assert (ada.first_name, ada.notes, ada.updated_at) == (
            ada_before.first_name,
            ada_before.notes,
            ada_before.updated_at,
        )
        listed = await session.scalars(
            select(CallingListEntry.campaign_id).where(
                CallingListEntry.contact_id == world.contacts["ada"]
            )
        )
        assert set(listed) == {world.campaign_id}


async def test_an_administrator_import_still_merges_across_teams(
    client: ClientFactory, world: WebWorld
) -> None:
    adam = await client("adam")
    form = csv_form(
        b"name,phone,email\nAda Lovelace,514 555 0187,ada@example.org\n", csrf_token=adam.csrf
    )
    status, html = await upload_csv(adam, world.other_campaign_id, form)
    assert status == 200 and "1 updated" in html, html
    async with world.sessions() as session:
        ada = await session.get(Contact, world.contacts["ada"])
        assert ada is not None and ada.email == "ada@example.org"
        listed = await session.scalars(
            select(CallingListEntry.campaign_id).where(
                CallingListEntry.contact_id == world.contacts["ada"]
            )
        )
        assert set(listed) == {world.campaign_id, world.other_campaign_id}


async def test_assigning_to_someone_of_another_team_reads_as_an_unknown_user(
    client: ClientFactory, world: WebWorld
) -> None:
    olivia = await client("olivia")
    messages = []
    for name in ("carol", "nobody"):  # carol is on the Quebec team
        form = csv_form(b"name,phone\nA,4385550123\n", assign_to=name)
        status, body = await post_import(olivia, world.campaign_id, form)
        assert status == 422, body
        messages.append(body["error"]["message"].replace(name, "NAME"))
    assert messages[0] == messages[1]
    assert "unknown user" in messages[0]
    async with world.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(ImportJob)) == 0
