"""A volunteer's power session on the live stream, against the AMI simulator:
the organizers of their team (and administrators) see it with its state, how
long it has been in it and its calls; the other team's organizer, their
teammates and the other team's volunteers do not; once it ends it is gone.

The world: Montreal (alice, bob, olivia the organizer) runs "Get out the
vote"; Quebec (carol, oscar the organizer) runs "Quebec canvass"; adam
administers both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import time
from typing import Any

import pytest
from sqlalchemy import update

from dialer.domain.survey import CallingHours, TimeWindow
from dialer.domain.vocabulary import DialingMode
from dialer.store.models import Campaign
from tests.e2e.conftest import Browser, ClientFactory
from tests.e2e.webworld import Served, WebWorld, serve

pytestmark = pytest.mark.slow

# The world's contacts live where it is about 1 p.m.: nobody is callable at
# 3 a.m., so a session waits for a contact and stays waiting.
NIGHT_ONLY = CallingHours(
    weekday=TimeWindow(start=time(3), end=time(4)),
    weekend=TimeWindow(start=time(3), end=time(4)),
)


async def power_campaign(world: WebWorld, *, hours: CallingHours) -> None:
    async with world.sessions.begin() as session:
        await session.execute(
            update(Campaign)
            .where(Campaign.id == world.campaign_id)
            .values(dialing_mode=DialingMode.POWER, calling_hours=hours.to_json())
        )


@pytest.fixture
async def served(pg_url: str, world: WebWorld) -> AsyncIterator[Served]:
    await power_campaign(world, hours=NIGHT_ONLY)
    async with serve(pg_url, with_simulator=True, time_scale=0.5) as running:
        yield running


async def alice_starts_a_session(client: ClientFactory, world: WebWorld) -> Browser:
    alice = await client("alice")
    status, body = await alice.api("POST", "/api/power", {"campaign_id": world.campaign_id})
    assert status == 201, body
    return alice


async def sessions_seen(browser: Browser) -> dict[str, dict[str, Any]]:
    status, snapshot = await browser.api("GET", "/api/live/snapshot")
    assert status == 200, snapshot
    return {item["key"]: item["payload"] for item in snapshot["items"] if item["kind"] == "session"}


async def until_state(browser: Browser, key: str, state: str) -> dict[str, Any]:
    async with asyncio.timeout(15):
        while True:
            seen = (await sessions_seen(browser)).get(key)
            if seen is not None and seen["state"] == state:
                return seen
            await asyncio.sleep(0.1)


async def test_a_session_is_seen_by_its_teams_organizers_only(
    client: ClientFactory, world: WebWorld
) -> None:
    alice = await alice_starts_a_session(client, world)
    key = str(world.users["alice"])
    olivia, adam = await client("olivia"), await client("adam")
    oscar, bob, carol = await client("oscar"), await client("bob"), await client("carol")

    waiting = await until_state(olivia, key, "waiting")
    assert waiting["volunteer_name"] == "Alice Martin"
    assert waiting["campaign_title"] == "Get out the vote"
    assert waiting["calls"] == 0
    assert waiting["since"] and waiting["waiting_note"]
    # Why nobody is dialed, as codes each page words in its reader's language.
    assert waiting["waiting_reason"] == "list:outside_hours"
    assert waiting["waiting_until"]
    assert key in await sessions_seen(adam)
    # Alice sees her own session; nobody else outside her team's staff does.
    assert key in await sessions_seen(alice)
    for outsider in (oscar, bob, carol):
        assert key not in await sessions_seen(outsider)

    status, body = await alice.api("POST", "/api/power/pause", {"reason": "Lunch"})
    assert status == 200, body
    paused = await until_state(olivia, key, "paused")
    assert paused["pause_reason"] == "Lunch" and paused["paused"] is True
    assert key not in await sessions_seen(oscar)

    status, body = await alice.api("POST", "/api/power/leave")
    assert status == 200, body
    async with asyncio.timeout(15):
        while key in await sessions_seen(olivia):
            await asyncio.sleep(0.1)
    assert key not in await sessions_seen(adam)


async def test_the_dashboard_compares_the_modes_over_the_chosen_period(
    client: ClientFactory, world: WebWorld
) -> None:
    olivia = await client("olivia")
    for period in ("", "?compare=24", "?compare=168", "?compare=720"):
        status, html = await olivia.page(f"/ops/campaigns/{world.campaign_id}{period}")
        assert status == 200
        assert 'id="mode-comparison"' in html
        assert "Power mode vs click-to-call" in html
        # An unknown period falls back to the chart's 12 hours.
        chosen = period.removeprefix("?compare=") if period != "?compare=720" else ""
        assert f'href="?compare={chosen or 12}#mode-comparison" aria-current="page"' in html
    status, _html = await (await client("oscar")).page(f"/ops/campaigns/{world.campaign_id}")
    assert status == 404


async def test_why_nobody_is_dialed_is_said_in_each_readers_language(
    client: ClientFactory, world: WebWorld
) -> None:
    alice = await alice_starts_a_session(client, world)
    olivia = await client("olivia")
    await until_state(olivia, str(world.users["alice"]), "waiting")

    status, english = await alice.api("GET", "/api/power")
    assert status == 200, english
    assert english["session"]["waiting_label"].startswith(
        "The remaining contacts are outside calling hours until "
    )
    await alice.form("/lang", {"language": "fr", "next": "/campaigns"})
    status, french = await alice.api("GET", "/api/power")
    assert status == 200, french
    label = french["session"]["waiting_label"]
    assert label and label != english["session"]["waiting_label"]
    assert "heures d'appel" in label or "horaires" in label, label
    # The English note stays, for integrations reading the codes or not.
    assert french["session"]["waiting_note"] == english["session"]["waiting_note"]

    # The live panel words it in the organizer's language from the codes.
    await olivia.form("/lang", {"language": "fr", "next": "/ops/live"})
    status, html = await olivia.page("/ops/live")
    assert status == 200
    assert "list:outside_hours" in html
    assert "hors des heures d'appel jusqu'au %(when)s" in html.replace("\\u0027", "'")
    status, body = await alice.api("POST", "/api/power/leave")
    assert status == 200, body
