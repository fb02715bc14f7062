"""Importing onto contacts on file: conflicts kept and reported, overwrite audited,
rejected rows downloadable in plain words, numbers the policy refuses flagged."""

from __future__ import annotations

import csv
import html
import io

from sqlalchemy import select

from dialer.store.models import AuditEntry, Contact
from tests.e2e.conftest import Browser, ClientFactory
from tests.e2e.importing import csv_form, upload_csv
from tests.e2e.webworld import WebWorld

ADA_DUPLICATE = b"first_name,last_name,phone\nAda,Duplicate,514 555 0187\n"


async def _download(browser: Browser, path: str) -> tuple[int, list[list[str]]]:
    response = await browser.request("GET", path)
    async with response:
        body = await response.read()
        if response.status != 200:
            return response.status, []
        assert response.headers["Content-Type"].startswith("text/csv")
    return 200, list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


def _job_id(page: str) -> str:
    start = page.index("/import/jobs/") + len("/import/jobs/")
    return page[start : page.index("/", start)]


async def _ada(world: WebWorld) -> Contact:
    async with world.sessions() as session:
        ada = await session.get(Contact, world.contacts["ada"])
    assert ada is not None
    return ada


async def test_a_row_sharing_adas_number_does_not_rename_her_unless_asked(
    client: ClientFactory, world: WebWorld
) -> None:
    olivia = await client("olivia")
    status, page = await upload_csv(
        olivia, world.campaign_id, csv_form(ADA_DUPLICATE, csrf_token=olivia.csrf)
    )
    assert status == 200
    text = html.unescape(page)
    assert "0 updated" in text and "1 unchanged" in text
    assert "1 row differed from the contact on file, which was kept" in text
    assert "kept 'Ada Lovelace', the file says 'Ada Duplicate'" in text
    ada = await _ada(world)
    assert (ada.first_name, ada.last_name) == ("Ada", "Lovelace")

    # The complete list downloads, worded for people.
    status, rows = await _download(
        olivia, f"/ops/campaigns/{world.campaign_id}/import/jobs/{_job_id(page)}/changes.csv"
    )
    assert status == 200
    assert rows[0][:4] == ["line", "contact", "field", "what happened"]
    assert rows[1] == [
        "2",
        "Ada Lovelace",
        "name",
        "conflict, kept",
        "Ada Lovelace",
        "Ada Duplicate",
        "kept 'Ada Lovelace', the file says 'Ada Duplicate'",
    ]

    # Asked to, the file wins: reported old -> new, and in the audit log.
    status, page = await upload_csv(
        olivia,
        world.campaign_id,
        csv_form(ADA_DUPLICATE, csrf_token=olivia.csrf, overwrite="1"),
    )
    assert status == 200
    text = html.unescape(page)
    assert "1 updated" in text and "changed 'Ada Lovelace' to 'Ada Duplicate'" in text
    ada = await _ada(world)
    assert (ada.first_name, ada.last_name) == ("Ada", "Duplicate")
    async with world.sessions() as session:
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.action == "contact.import_overwrite")
        )
    assert entry is not None
    assert entry.entity_id == str(world.contacts["ada"])
    assert entry.actor_id == world.users["olivia"]
    assert entry.changes["fields"] == [
        {
            "line": 2,
            "field": "name",
            "kind": "replaced",
            "old": "Ada Lovelace",
            "new": "Ada Duplicate",
        }
    ]


# Line 2: Latin-1 bytes sent as UTF-8; 3: a stray quote; 4: a bad number;
# 5: a premium-rate number (imported, flagged); 6: a good row.
MIXED = (
    b"name,phone\n"
    b"Jos\xe9 Latin,514 555 0131\n"
    b'"Ada "the" Quote",514 555 0132\n'
    b"Short Number,555-12\n"
    b"Paid Line,+1 900 555 0123\n"
    b"Fine Person,514 555 0133\n"
)


async def _import_mixed(browser: Browser, campaign_id: int) -> tuple[str, list[list[str]]]:
    status, page = await upload_csv(browser, campaign_id, csv_form(MIXED, csrf_token=browser.csrf))
    assert status == 200
    job = _job_id(page)
    status, rows = await _download(
        browser, f"/ops/campaigns/{campaign_id}/import/jobs/{job}/rejected.csv"
    )
    assert status == 200
    return html.unescape(page), rows


async def test_rejected_rows_download_in_plain_english(
    client: ClientFactory, world: WebWorld
) -> None:
    olivia = await client("olivia")
    page, rows = await _import_mixed(olivia, world.campaign_id)
    assert "2 imported" in page and "3 rejected" in page
    assert "1 row has a number that will not be dialed" in page
    assert "the dialing policy refuses numbers starting with +1900" in page
    assert rows[0] == ["line", "why it was rejected", "name", "phone"]
    assert [row[0] for row in rows[1:]] == ["2", "3", "4"]
    assert rows[1][1].startswith("this line is not UTF-8 text (column 4)")
    assert rows[1][2:] == ["Jos\ufffd Latin", "514 555 0131"]  # the row, to correct
    assert rows[2][1].startswith("malformed CSV: a quoted field goes on after its closing quote")
    assert rows[3] == ["4", "wrong number of digits: '555-12'", "Short Number", "555-12"]
    # No command-line hints anywhere a web user reads.  The random CSRF token
    # is not read, and may hold "--" (about once in a hundred sign-ins).
    shown = page.replace(olivia.csrf, "")
    for text in (shown, *(row[1] for row in rows)):
        assert "--" not in text and "import-contacts" not in text


async def test_rejected_rows_download_in_french_and_only_for_the_campaigns_team(
    client: ClientFactory, world: WebWorld
) -> None:
    oscar = await client("oscar")  # Quebec, in French
    page, rows = await _import_mixed(oscar, world.other_campaign_id)
    assert "ne sera pas composé" in page
    assert "la politique d'appel refuse les numéros commençant par +1900" in page
    assert rows[0] == ["ligne", "motif du rejet", "name", "phone"]
    assert rows[1][1].startswith("cette ligne n'est pas du texte UTF-8 (colonne 4)")
    assert rows[2][1].startswith("CSV mal formé : un champ entre guillemets continue")
    assert rows[3][1] == "nombre de chiffres incorrect : '555-12'"
    assert all("--" not in row[1] for row in rows)

    job = _job_id(page)
    olivia = await client("olivia")  # Montreal: not her team's campaign, nor its job
    for campaign_id in (world.other_campaign_id, world.campaign_id):
        status, _rows = await _download(
            olivia, f"/ops/campaigns/{campaign_id}/import/jobs/{job}/rejected.csv"
        )
        assert status == 404
