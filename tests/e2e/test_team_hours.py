"""Team calling hours (issue 17, defect 5): manual calls outside any campaign
follow the caller's teams' hours, organizers edit their own teams' hours on
/ops/teams, and the contact's Call tab says when calling is open.

The world: Montreal (alice, olivia) and Quebec (carol, oscar); adam, an
administrator, is given a phone and Montreal membership to make manual
calls to Nora, a contact on no campaign's list (only then is a call made
outside any campaign).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import unescape

from sqlalchemy import select

from dialer.domain.survey import CallingHours, TimeWindow
from dialer.store.models import AuditEntry, Contact, ContactPhone, Team, TeamMember, User
from tests.e2e.conftest import Browser, ClientFactory
from tests.e2e.webworld import WebWorld

NORA = "+15145550133"


def evening_zone(now: datetime | None = None) -> str:
    """An Etc/GMT zone where it is 8 p.m. (20:xx) now."""
    hour = (now or datetime.now(UTC)).hour
    offset = (20 - hour + 12) % 24 - 12  # hours ahead of UTC, -12..11
    if offset == 0:
        return "Etc/GMT"
    # Etc/GMT zones have inverted signs: Etc/GMT-5 is UTC+5.
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def hours_form(start: str, end: str) -> dict[str, str]:
    """The same window every day of the week."""
    return {
        "weekday_start": start,
        "weekday_end": end,
        "weekend_enabled": "1",
        "weekend_start": start,
        "weekend_end": end,
    }


async def _team_id(world: WebWorld, name: str) -> int:
    async with world.sessions() as session:
        found = await session.scalar(select(Team.id).where(Team.name == name))
    assert found is not None
    return found


async def _manual_caller_and_nora(world: WebWorld) -> int:
    """Adam gets a phone and joins Montreal; Nora, on no list, is at 8 p.m."""
    async with world.sessions.begin() as session:
        adam = await session.get(User, world.users["adam"])
        assert adam is not None
        adam.sip_extension = "1010"
        session.add(TeamMember(team_id=world.team_id, user_id=adam.id))
        nora = Contact(first_name="Nora", last_name="Evening", timezone=evening_zone())
        nora.phones = [ContactPhone(e164=NORA)]
        session.add(nora)
        await session.flush()
        return nora.id


async def _set_hours(browser: Browser, team_id: int, start: str, end: str) -> int:
    response = await browser.form(f"/ops/teams/{team_id}", hours_form(start, end))
    response.release()
    return response.status


async def _call(browser: Browser, contact_id: int) -> tuple[int, dict[str, object]]:
    status, body = await browser.api("POST", "/api/calls", {"contact_id": contact_id})
    if status == 201:
        # Free the caller for the next attempt: the request is cancelled at once.
        hung, _ = await browser.api("POST", f"/api/calls/{body['call_id']}/hangup")
        assert hung == 202
    return status, body


async def test_a_manual_call_at_8_pm_follows_the_team_hours(
    client: ClientFactory, world: WebWorld
) -> None:
    nora = await _manual_caller_and_nora(world)
    olivia, adam = await client("olivia"), await client("adam")

    # The team says 09:00-21:00: 8 p.m. is allowed, and the Call tab says until when.
    assert await _set_hours(olivia, world.team_id, "09:00", "21:00") == 303
    status, body = await _call(adam, nora)
    assert status == 201, body
    _, html = await adam.page(f"/contacts/{nora}")
    assert 'id="calling-hours"' in html and 'data-open="true"' in html
    assert "Calling is open until 9:00\u202fPM (their time)." in html
    assert re.search(r"It is 8:\d\d\u202fPM for this contact\.", html)

    # The team says 09:00-20:00: refused, with when calling opens.
    assert await _set_hours(olivia, world.team_id, "09:00", "20:00") == 303
    status, body = await _call(adam, nora)
    assert status == 409
    error = body["error"]  # type: ignore[index]
    assert error["code"] == "outside_calling_hours"
    assert "calls may start at" in error["message"]
    _, html = await adam.page(f"/contacts/{nora}")
    assert 'data-open="false"' in html
    assert re.search(
        r"Calling opens on \w+ at 9:00\u202fAM \(their time\), in 1[23]\shours\.", html
    ), html[html.find("calling-hours") : html.find("calling-hours") + 600]

    # The same note in French.
    adam_fr = await client("adam", language="fr")
    _, html = await adam_fr.page(f"/contacts/{nora}")
    assert re.search(
        r"Les appels ouvrent \w+ à 09:00 \(leur heure\), dans 1[23]\sheures\.", html
    ), html[html.find("calling-hours") : html.find("calling-hours") + 600]

    # In a second team whose hours allow it, the most permissive applies.
    quebec = await _team_id(world, "Quebec")
    async with world.sessions.begin() as session:
        session.add(TeamMember(team_id=quebec, user_id=world.users["adam"]))
    oscar = await client("oscar")
    assert await _set_hours(oscar, quebec, "08:00", "21:30") == 303
    status, body = await _call(adam, nora)
    assert status == 201, body


async def test_the_team_page_lets_organizers_edit_their_own_teams_only(
    client: ClientFactory, world: WebWorld
) -> None:
    quebec = await _team_id(world, "Quebec")
    olivia = await client("olivia")
    status, html = await olivia.page("/ops/teams")
    assert status == 200
    assert "Montreal" in html and "Quebec" not in html
    assert 'href="/ops/teams"' in html

    # Another team's hours: 403, unchanged.
    assert await _set_hours(olivia, quebec, "07:00", "22:00") == 403
    # An invalid window: 422 with the reason beside the field, nothing saved.
    response = await olivia.form(f"/ops/teams/{world.team_id}", hours_form("20:00", "09:00"))
    async with response:
        assert response.status == 422
        assert "A calling window must start before it ends." in await response.text()
    response = await olivia.form(
        f"/ops/teams/{world.team_id}", {**hours_form("09:00", "21:00"), "weekday_start": "9h"}
    )
    async with response:
        assert response.status == 422
        assert "Enter a time." in await response.text()
    # In French too.
    oscar = await client("oscar", language="fr")
    response = await oscar.form(f"/ops/teams/{quebec}", hours_form("18:00", "10:00"))
    async with response:
        assert response.status == 422
        assert "Une plage d'appel doit commencer avant de finir." in unescape(await response.text())

    assert await _set_hours(olivia, world.team_id, "10:00", "20:30") == 303
    _, html = await olivia.page(f"/ops/teams?saved={world.team_id}")
    assert 'value="10:00"' in html and 'value="20:30"' in html
    async with world.sessions() as session:
        teams = {team.name: team for team in await session.scalars(select(Team))}
        entries = list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action == "team.calling_hours")
            )
        )
    expected = TimeWindow.model_validate({"start": "10:00", "end": "20:30"})
    assert teams["Montreal"].calling_hours == CallingHours(weekday=expected, weekend=expected)
    assert teams["Quebec"].calling_hours == CallingHours()
    assert len(entries) == 1
    assert entries[0].entity_id == str(world.team_id)
    assert entries[0].actor_id == world.users["olivia"]
    change = entries[0].changes["calling_hours"]
    assert change["old"]["weekday"] == {"start": "09:00:00", "end": "21:00:00"}
    assert change["new"]["weekday"] == {"start": "10:00:00", "end": "20:30:00"}

    # Volunteers do not reach it; administrators reach every team.
    alice = await client("alice")
    status, _ = await alice.page("/ops/teams")
    assert status == 403
    adam = await client("adam")
    _, html = await adam.page("/ops/teams")
    assert "Montreal" in html and "Quebec" in html
    assert await _set_hours(adam, quebec, "09:00", "20:00") == 303
