"""Organizer pages: campaign editor, CSV import, list assignment, export, DNC, users."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import aiohttp
from sqlalchemy import func, select, text

from dialer.store.models import CallingListEntry, Campaign, Contact, ContactPhone, User
from tests.e2e.conftest import ClientFactory
from tests.e2e.importing import upload_csv
from tests.e2e.webworld import WebWorld
from tests.integration.test_cli import dialer


def editor_form(world: WebWorld, **overrides: str) -> dict[str, str]:
    values = {
        "title": "Get out the vote",
        "brief": "Be kind.",
        "team_id": str(world.team_id),
        "status": "active",
        "scheduled_on": "2026-12-06",
        "starts_at": "2026-12-06T10:00",
        "ends_at": "2026-12-06T16:00",
        "caller_ids": "+1 514 555 0000\n514-555-0001",
        "weekday_start": "09:30",
        "weekday_end": "20:30",
        "weekend_enabled": "1",
        "weekend_start": "11:00",
        "weekend_end": "17:00",
        "max_attempts": "4",
        "retry_delay_minutes": "90",
        "survey": json.dumps(
            {
                "questions": [
                    {"id": "vote", "label": "Voterez-vous ?", "type": "yes_no", "required": True},
                    {"id": "score", "label": "Note", "type": "scale", "min": 1, "max": 5},
                ]
            }
        ),
    }
    values.update(overrides)
    return values


async def test_the_campaign_editor_saves_a_valid_campaign(
    client: ClientFactory, world: WebWorld
) -> None:
    olivia = await client("olivia")
    response = await olivia.form(f"/ops/campaigns/{world.campaign_id}/edit", editor_form(world))
    assert response.status == 303, await response.text()
    async with world.sessions() as session:
        campaign = await session.get(Campaign, world.campaign_id)
    assert campaign is not None
    assert campaign.allowed_caller_ids == ["+15145550000", "+15145550001"]
    assert campaign.max_attempts == 4 and campaign.retry_delay_minutes == 90
    assert campaign.calling_hours.weekday.start.hour == 9
    assert campaign.calling_hours.weekend is not None
    assert [question.id for question in campaign.survey.questions] == ["vote", "score"]
    assert campaign.starts_at is not None and campaign.ends_at is not None
    # Survey questions are shown to volunteers exactly as the organizer wrote them.
    alice = await client("alice", language="en")
    _, html = await alice.page(f"/contacts/{world.contacts['ada']}?campaign={world.campaign_id}")
    assert "Voterez-vous ?" in html


async def test_the_editor_shows_every_problem_at_once(
    client: ClientFactory, world: WebWorld
) -> None:
    olivia = await client("olivia")
    response = await olivia.form(
        f"/ops/campaigns/{world.campaign_id}/edit",
        editor_form(
            world,
            title="",
            caller_ids="12",
            ends_at="2026-12-06T09:00",
            weekday_start="22:00",
            max_attempts="0",
            survey='{"questions": [{"id": "Bad Id", "label": "x", "type": "text"}]}',
        ),
    )
    assert response.status == 422
    html = await response.text()
    for field in ("title", "caller_ids", "ends_at", "calling_hours", "max_attempts", "survey"):
        assert f'id="{field}-error"' in html, field
    async with world.sessions() as session:
        campaign = await session.get(Campaign, world.campaign_id)
    assert campaign is not None and campaign.max_attempts == 3  # unchanged


async def test_create_a_campaign(client: ClientFactory, world: WebWorld) -> None:
    olivia = await client("olivia")
    response = await olivia.form(
        "/ops/campaigns", {"title": "Fundraiser", "team_id": str(world.team_id)}
    )
    assert response.status == 303
    assert response.headers["Location"].endswith("/edit")


async def test_import_a_csv_and_see_the_per_row_report(
    client: ClientFactory, world: WebWorld
) -> None:
    olivia = await client("adam", language="fr")  # no language of his own: the browser's
    data = (
        "prénom,nom,téléphone,langue,étiquettes\n"
        "Jeanne,Mance,514 555 0123,fr,voter\n"
        "Paul,Chomedey,not a number,fr,\n"
        "Pierre,Boucher,+1 514 555 0124,en,member\n"
    ).encode()
    form = aiohttp.FormData()
    form.add_field("csrf_token", olivia.csrf)
    form.add_field("encoding", "utf-8")
    form.add_field("assign_to", "alice")
    form.add_field("assign_to", "bob")
    form.add_field("file", data, filename="contacts.csv", content_type="text/csv")
    status, html = await upload_csv(olivia, world.campaign_id, form)
    assert status == 200, html
    assert 'id="import-report"' in html
    assert "2 importés" in html and "1 rejeté" in html
    assert '<td class="num">3</td>' in html  # the bad row's line number
    async with world.sessions() as session:
        entries = await session.scalar(
            select(func.count())
            .select_from(CallingListEntry)
            .join(ContactPhone, ContactPhone.contact_id == CallingListEntry.contact_id)
            .where(ContactPhone.e164.in_(["+15145550123", "+15145550124"]))
        )
    assert entries == 2


async def test_a_file_without_a_phone_column_is_refused_whole(
    client: ClientFactory, world: WebWorld
) -> None:
    olivia = await client("olivia")
    form = aiohttp.FormData()
    form.add_field("csrf_token", olivia.csrf)
    form.add_field("file", b"name,email\nA,a@example.org\n", filename="x.csv")
    response = await olivia.request("POST", f"/ops/campaigns/{world.campaign_id}/import", data=form)
    assert response.status == 422
    assert "no phone column" in await response.text()


async def test_share_out_and_hand_over_lists(client: ClientFactory, world: WebWorld) -> None:
    olivia = await client("olivia")
    alice, bob = world.users["alice"], world.users["bob"]
    response = await olivia.form(
        f"/ops/campaigns/{world.campaign_id}/assign",
        {"action": "move", "from": str(alice), "to": ""},
    )
    assert response.status == 303
    response = await olivia.form(
        f"/ops/campaigns/{world.campaign_id}/assign",
        [("action", "share"), ("volunteer", str(bob))],
    )
    assert response.status == 303 and response.headers["Location"].endswith("moved=2")
    async with world.sessions() as session:
        owners = list(
            await session.scalars(
                select(CallingListEntry.volunteer_id).where(
                    CallingListEntry.campaign_id == world.campaign_id
                )
            )
        )
    assert owners == [bob] * 4
    _, html = await olivia.page(f"/ops/campaigns/{world.campaign_id}/assign")
    assert "Bob Tremblay" in html


async def test_export_results_as_csv(client: ClientFactory, world: WebWorld) -> None:
    alice = await client("alice")
    status, _ = await alice.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["ada"], "campaign_id": world.campaign_id},
    )
    assert status == 201
    olivia = await client("olivia")
    response = await olivia.request("GET", f"/ops/campaigns/{world.campaign_id}/export.csv")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await response.text())))
    assert len(rows) == 1 and rows[0]["first_name"] == "Ada"
    assert "survey:vote" in rows[0]


async def test_the_export_streams_the_bytes_the_cli_writes(
    client: ClientFactory, world: WebWorld, pg_url: str, tmp_path: Path
) -> None:
    async with world.sessions.begin() as session:
        await session.execute(
            text(
                "INSERT INTO call_attempts (call_id, campaign_id, contact_id, number_e164,"
                " volunteer_id, pbx, state, outcome, needs_review, requested_at, ended_at,"
                " dial_status, updated_at)"
                " SELECT 'bulk' || n, :campaign, :contact, '+15145550187', :volunteer, 'default',"
                " 'ended', 'completed', false, now() - n * interval '1 second', now(),"
                " CASE WHEN n % 7 = 0 THEN '=cmd, \"x\"' END, now()"
                " FROM generate_series(1, 3000) AS n"
            ),
            {
                "campaign": world.campaign_id,
                "contact": world.contacts["ada"],
                "volunteer": world.users["alice"],
            },
        )
    olivia = await client("olivia")
    response = await olivia.request("GET", f"/ops/campaigns/{world.campaign_id}/export.csv")
    async with response:
        assert response.status == 200
        assert response.headers["Transfer-Encoding"] == "chunked"
        assert "Content-Length" not in response.headers
        assert response.headers["Content-Disposition"] == (
            f'attachment; filename="campaign-{world.campaign_id}-results.csv"'
        )
        chunks = [data async for data, _ in response.content.iter_chunks()]
    assert len(chunks) > 1
    out = tmp_path / "results.csv"
    result = await dialer(pg_url, "export-results", "--campaign", str(world.campaign_id), str(out))
    assert result.returncode == 0, result.stderr
    assert b"".join(chunks) == out.read_bytes()
    assert out.read_bytes().count(b"\r\n") == 3001
    assert b'"\'=cmd, ""x"""' in out.read_bytes()


async def test_the_dashboard_counts_calls(client: ClientFactory, world: WebWorld) -> None:
    alice = await client("alice")
    await alice.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["ada"], "campaign_id": world.campaign_id},
    )
    await alice.api(
        "POST",
        "/api/outcomes",
        {
            "submission_id": "dash-000001",
            "contact_id": world.contacts["marie"],
            "campaign_id": world.campaign_id,
            "outcome": "refused",
        },
    )
    olivia = await client("olivia")
    status, html = await olivia.page(f"/ops/campaigns/{world.campaign_id}")
    assert status == 200
    assert '<span class="value" id="stat-dials">1</span>' in html
    assert "<svg" in html and "Refused to talk" in html


async def test_do_not_call_management(client: ClientFactory, world: WebWorld) -> None:
    olivia = await client("olivia")
    response = await olivia.form("/ops/dnc", {"number": "514-555-0187", "reason": "asked by phone"})
    assert response.status == 303
    response = await olivia.form("/ops/dnc", {"number": "+1 514 555 0177", "reason": ""})
    assert response.status == 303
    response = await olivia.form("/ops/dnc", {"number": "12", "reason": ""})
    assert response.status == 422
    async with world.sessions() as session:
        ada = await session.get(Contact, world.contacts["ada"])
        unknown = await session.scalar(
            select(ContactPhone).where(ContactPhone.e164 == "+15145550177")
        )
    assert ada is not None and ada.do_not_call and ada.dnc_reason == "asked by phone"
    assert unknown is not None
    _, html = await olivia.page("/ops/dnc?q=Ada")
    assert "Ada Lovelace" in html
    alice = await client("alice")
    status, body = await alice.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["ada"], "campaign_id": world.campaign_id},
    )
    assert status == 409 and body["error"]["code"] == "do_not_call"
    response = await olivia.form(f"/ops/dnc/{world.contacts['ada']}/remove", {})
    assert response.status == 303
    status, _ = await alice.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["ada"], "campaign_id": world.campaign_id},
    )
    assert status == 201


async def test_add_users_and_extensions(client: ClientFactory, world: WebWorld) -> None:
    olivia = await client("olivia")
    response = await olivia.form(
        "/ops/users",
        {
            "username": "dora",
            "display_name": "Dora",
            "role": "volunteer",
            "extension": "1004",
            "teams": "Montreal",
            "language": "fr",
            "password": "",
        },
    )
    html = await response.text()
    assert response.status == 200 and 'id="new-password"' in html
    response = await olivia.form(
        "/ops/users", {"username": "eve", "role": "volunteer", "extension": "1004", "password": ""}
    )
    assert response.status == 422 and 'id="extension-error"' in await response.text()
    response = await olivia.form(
        "/ops/users", {"username": "root2", "role": "admin", "password": "long enough password"}
    )
    assert response.status == 422 and 'id="role-error"' in await response.text()
    adam = await client("adam")
    response = await adam.form(
        "/ops/users", {"username": "root2", "role": "admin", "password": "long enough password"}
    )
    assert response.status == 200
    async with world.sessions() as session:
        dora = await session.scalar(select(User).where(User.username == "dora"))
    assert dora is not None and dora.sip_extension == "1004" and dora.language == "fr"
    # A new team is an administrator's to create; an organizer hands out their own.
    response = await olivia.form(
        f"/ops/users/{dora.id}", {"extension": "1005", "teams": "Montreal, Laval", "pbx": "east"}
    )
    assert response.status == 422
    response = await olivia.form(
        f"/ops/users/{dora.id}", {"extension": "1005", "teams": "Montreal", "pbx": "east"}
    )
    assert response.status == 303
    async with world.sessions() as session:
        dora = await session.scalar(select(User).where(User.username == "dora"))
    # No "active" field: the flag stays (deactivating is its own action now).
    assert dora is not None and dora.sip_extension == "1005" and dora.is_active is True
    assert dora.pbx == "east"
    response = await olivia.form(f"/ops/users/{dora.id}", {"extension": "1005", "pbx": "a b"})
    assert response.status == 422
