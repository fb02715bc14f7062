"""docs/deploy.md, "The first call", followed to the letter on a real PBX.

The people come from `dialer user add`, the campaign from the organizer's
pages (filled in as a browser submits them), the contacts from `dialer
import-contacts`, and the call from the volunteer's click; SIPp's trace says
whether the desk phone rang and the carrier saw the campaign's caller ID.
Contacts imported without a campaign once gave the volunteer a 404 here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.vocabulary import CampaignStatus
from dialer.store.models import Campaign
from tests.e2e.webworld import PASSWORD
from tests.pbx.conftest import RealPbx
from tests.pbx.product import Browser, close_to, dialer_running, stored_call

pytestmark = pytest.mark.slow

EXTENSION = "1029"  # a desk phone of the standard PBX that no other test rings
CONTACT_NUMBER = "514 555 0310"  # ends in 0: the carrier answers, hangs up 3 s later
DIALED = "15145550310"
CALLER_ID = "+1 514 555 0100"
CALLER_ID_DIGITS = "15145550100"
TORONTO = ZoneInfo("America/Toronto")  # the contact's zone, by its area code


async def dialer_cli(pg_url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The `dialer` command as the container runs it: only the database is configured."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DIALER_")}
    env["DIALER_DATABASE_URL"] = pg_url
    # English output, whatever shell runs the suite: the password line is parsed.
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        env.pop(name, None)
    env["LANG"] = "C.UTF-8"
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "dialer", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


# ------------------------------------------------------------ pages as a browser


@dataclass
class Field:
    tag: str
    name: str
    kind: str = ""
    value: str = ""
    checked: bool = False
    options: list[tuple[str, str, bool]] = field(default_factory=list)  # value, label, selected


@dataclass
class Form:
    attrs: dict[str, str]
    fields: list[Field] = field(default_factory=list)

    def option(self, name: str, label: str) -> str:
        """The value of the option a person picks by what it says."""
        for item in self.fields:
            if item.name == name:
                for value, shown, _selected in item.options:
                    if shown.strip() == label:
                        return value
        raise AssertionError(f"no option {label!r} for {name!r} in {self.attrs}")

    def choices(self, name: str) -> list[str]:
        return [value for item in self.fields if item.name == name for value, *_ in item.options]

    def submission(self, changes: dict[str, str | bool]) -> list[tuple[str, str]]:
        """What a browser sends once ``changes`` are typed in (True/False: tick/untick)."""
        names = {item.name for item in self.fields}
        unknown = set(changes) - names
        assert not unknown, f"the form has no {sorted(unknown)}"
        sent = []
        for item in self.fields:
            change = changes.get(item.name)
            if item.kind == "checkbox":
                if change if isinstance(change, bool) else item.checked:
                    sent.append((item.name, item.value or "on"))
            elif item.tag == "select":
                chosen = [value for value, _label, selected in item.options if selected]
                default = chosen[0] if chosen else item.options[0][0] if item.options else ""
                sent.append((item.name, str(change) if change is not None else default))
            elif item.kind not in ("submit", "button", "reset"):
                sent.append((item.name, str(change) if change is not None else item.value))
        return sent


class PageReader(HTMLParser):
    """The forms and links of a page."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.links: list[tuple[str, str]] = []  # href, text
        self._form: Form | None = None
        self._text: list[str] | None = None
        self._into: Field | None = None
        self._href = ""
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {key: value or "" for key, value in attrs}
        if tag == "form":
            self._form = Form(found)
            self.forms.append(self._form)
        elif tag == "a":
            self._href, self._text = found.get("href", ""), []
        elif self._form is not None and tag in ("input", "select", "textarea") and "name" in found:
            item = Field(
                tag,
                found["name"],
                kind=found.get("type", "text" if tag == "input" else ""),
                value=found.get("value", ""),
                checked="checked" in found,
            )
            self._form.fields.append(item)
            self._into = item
            if tag == "textarea":
                self._text = []
        elif tag == "option" and self._into is not None and self._into.tag == "select":
            self._into.options.append((found.get("value", ""), "", "selected" in found))
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        text = "".join(self._text or [])
        if tag == "a" and self._text is not None:
            self.links.append((self._href, " ".join(text.split())))
            self._text = None
        elif tag == "option" and self._into is not None and self._into.options:
            value, _label, selected = self._into.options[-1]
            self._into.options[-1] = (value or text.strip(), text, selected)
            self._text = None
        elif tag == "textarea" and self._into is not None:
            self._into.value = text
            self._text = None
        elif tag == "form":
            self._form = None

    def form(self, **wanted: str) -> Form:
        for form in self.forms:
            if all(form.attrs.get(key) == value for key, value in wanted.items()):
                return form
        raise AssertionError(f"no form {wanted} on the page")

    def link(self, text: str) -> str:
        for href, shown in self.links:
            if shown == text:
                return href
        raise AssertionError(f"no link {text!r} on the page")


class Organizer:
    """A person at a browser on the organizer pages: it reads each page, then submits it."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    @classmethod
    @contextlib.asynccontextmanager
    async def at(cls, base: str) -> AsyncIterator[Organizer]:
        async with aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), headers={"Accept-Language": "en"}
        ) as http:
            yield cls(http, base)

    async def open(self, path: str) -> PageReader:
        async with self.http.get(self.base + path, allow_redirects=False) as response:
            html = await response.text()
            assert response.status == 200, f"GET {path}: {response.status}\n{html[:2000]}"
        return PageReader(html)

    async def submit(self, form: Form, changes: dict[str, str | bool]) -> str:
        """Submits the form; the address it sends the browser on to (a 303 after a POST)."""
        async with self.http.post(
            self.base + form.attrs["action"],
            data=form.submission(changes),
            headers={"Origin": self.base},
            allow_redirects=False,
        ) as response:
            html = await response.text()
            assert response.status == 303, (
                f"POST {form.attrs['action']}: {response.status}\n{html[:3000]}"
            )
            return response.headers["Location"]


async def _past_the_last_minute_in_toronto() -> None:
    """A time field says 23:59 at most, and a window's end is not in it."""
    local = datetime.now(UTC).astimezone(TORONTO)
    if local.hour == 23 and local.minute == 59:
        midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        await asyncio.sleep((midnight - local).total_seconds() + 1)


# ------------------------------------------------------------------------ the test


async def test_the_first_call_as_docs_deploy_tells_it(
    pbx: RealPbx,
    pg_url: str,
    db: async_sessionmaker[AsyncSession],
    pbx_folder: Path,
    tmp_path: Path,
) -> None:
    # The PBX fixture waits for a few phones only: this one must be reachable
    # before the call, as a phone is long before an operator's first call.
    await pbx.asterisk.wait_for_contacts({EXTENSION: "Avail", "carrier": "Avail"})

    async with dialer_running(pg_url, pbx.asterisk, pbx_folder) as dialer:
        # 1. People.  olivia's command as printed, its password shown once;
        # alice's from standard input, the one Browser.signed_in uses.
        olivia = await dialer_cli(
            pg_url, "user", "add", "olivia", "--role", "organizer", "--team", "Montreal"
        )
        assert olivia.returncode == 0, olivia.stderr
        shown = re.search(r"^password: (\S+)$", olivia.stdout, re.M)
        assert shown, olivia.stdout
        alice = await dialer_cli(
            pg_url,
            *("user", "add", "alice", "--role", "volunteer", "--extension", EXTENSION),
            *("--team", "Montreal", "--password-stdin"),
            stdin=PASSWORD + "\n",
        )
        assert alice.returncode == 0, alice.stderr

        # 2. A campaign and its caller ID, on the organizer's pages.
        async with Organizer.at(dialer.url) as browser:
            login = (await browser.open("/login")).form(action="/login")
            landing = await browser.submit(
                login, {"username": "olivia", "password": shown.group(1)}
            )
            manage = (await browser.open(landing)).link("Manage")
            new = (await browser.open(manage)).form(action="/ops/campaigns")
            editor_address = await browser.submit(
                new, {"title": "First call", "team_id": new.option("team_id", "Montreal")}
            )
            address = re.fullmatch(r"/ops/campaigns/(\d+)/edit", editor_address)
            assert address, editor_address
            campaign_id = int(address.group(1))
            editor = (await browser.open(editor_address)).form(action=editor_address)
            saved = await browser.submit(
                editor,
                {
                    "status": editor.option("status", "Active"),
                    "caller_ids": CALLER_ID,
                    # The whole day, every day: the test runs at any hour.
                    "weekday_start": "00:00",
                    "weekday_end": "23:59",
                    "weekend_enabled": True,
                    "weekend_start": "00:00",
                    "weekend_end": "23:59",
                },
            )
            assert saved == f"{editor_address}?saved=1"
            after = await browser.http.get(dialer.url + saved)
            html = await after.text()
            assert "Saved." in html and 'id="caller-id-warning"' not in html
        async with db() as session:
            campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None
        assert campaign.status is CampaignStatus.ACTIVE
        assert campaign.allowed_caller_ids == ["+" + CALLER_ID_DIGITS]

        # 3. Contacts on alice's list, from the command line.
        contacts = tmp_path / "contacts.csv"
        contacts.write_text(f"first_name,last_name,phone\nAda,Lovelace,{CONTACT_NUMBER}\n")
        imported = await dialer_cli(
            pg_url,
            *("import-contacts", str(contacts), "--campaign", str(campaign_id)),
            *("--assign-to", "alice"),
        )
        assert imported.returncode == 0, imported.stderr
        assert imported.stdout.strip() == (
            "1 imported, 0 updated, 0 unchanged, 0 rejected; 1 added to the calling list"
        )

        # 4. The click: Campaigns, the campaign, the next contact on her
        # list, and Call with what the contact page's call form offers.
        async with Browser.signed_in(dialer.url, "alice") as volunteer:
            async with volunteer.http.get(dialer.url + "/campaigns") as response:
                assert response.status == 200
                assert f'href="/campaigns/{campaign_id}"' in await response.text()
            async with volunteer.http.get(f"{dialer.url}/campaigns/{campaign_id}") as response:
                assert response.status == 200
            status, found = await volunteer.api("GET", f"/api/campaigns/{campaign_id}/next")
            assert status == 200, found
            assert found["contact"] is not None, found
            contact_id = found["contact"]["id"]
            assert found["contact"]["name"] == "Ada Lovelace"
            contact_page = f"{dialer.url}/contacts/{contact_id}?campaign={campaign_id}"
            async with volunteer.http.get(contact_page) as response:
                html = await response.text()
                assert response.status == 200, html[:2000]
            call_form = PageReader(html).form(id="call-form")
            assert call_form.choices("caller_id") == ["+" + CALLER_ID_DIGITS]
            chosen = dict(call_form.submission({}))
            await _past_the_last_minute_in_toronto()
            status, created = await volunteer.api(
                "POST",
                "/api/calls",
                {
                    "contact_id": contact_id,
                    "phone_id": int(chosen["phone_id"]),
                    "caller_id": chosen["caller_id"],
                    "campaign_id": campaign_id,
                },
            )
            assert status == 201, created
            call_id = str(created["call_id"])
            ended = await volunteer.wait_for(call_id, timeout=60)
        assert ended["outcome"] == "completed", ended

    # What the wire says: the desk phone rang and answered, then the carrier
    # was dialed with the campaign's caller ID, answered, and hung up.
    phone = await pbx.ua_of(EXTENSION).dialog(EXTENSION)
    assert phone.first(status=180) is not None
    assert phone.answered_at is not None
    carrier = await pbx.carrier.dialog(DIALED)
    assert len(pbx.carrier.dialogs(DIALED)) == 1
    assert carrier.invite.at >= phone.answered_at
    for header in ("from", "p-asserted-identity"):
        user = re.search(r"sips?:\+?([^@;>]+)@", carrier.invite.headers.get(header, ""))
        assert user and user.group(1) == CALLER_ID_DIGITS, carrier.invite.headers
    assert carrier.answered_at is not None

    row = await stored_call(db, call_id)
    assert row.outcome is not None and row.outcome.value == "completed"
    assert row.number_e164 == "+" + DIALED
    assert close_to(row.contact_answered_at, carrier.answered_at)
    assert close_to(row.volunteer_answered_at, phone.answered_at)
