"""The pages around a power session: where it starts, where click-to-call
gives way to it, and what a refused start says (no PBX needed: no session
here gets as far as a phone)."""

from __future__ import annotations

import re

from sqlalchemy import select, update

from dialer.domain.vocabulary import DialingMode, PowerSessionState
from dialer.store.models import Campaign, PowerSession
from tests.e2e.conftest import ClientFactory
from tests.e2e.webworld import WebWorld


def opening_tag(html: str, element_id: str) -> str:
    found = re.search(rf'<[a-z0-9]+ id="{element_id}"[^>]*>', html)
    assert found, element_id
    return found.group(0)


async def power_mode(world: WebWorld) -> None:
    async with world.sessions.begin() as session:
        await session.execute(
            update(Campaign)
            .where(Campaign.id == world.campaign_id)
            .values(dialing_mode=DialingMode.POWER)
        )


async def test_a_click_campaign_keeps_click_to_call(client: ClientFactory, world: WebWorld) -> None:
    alice = await client("alice")
    status, html = await alice.page(f"/campaigns/{world.campaign_id}")
    assert status == 200
    assert f'href="/campaigns/{world.campaign_id}/next"' in html
    assert f'action="/campaigns/{world.campaign_id}/power"' not in html
    # No session screen for it: back to its page.
    response = await alice.request("GET", f"/campaigns/{world.campaign_id}/power")
    assert response.status == 303
    assert response.headers["Location"] == f"/campaigns/{world.campaign_id}"


async def test_a_power_campaign_starts_a_session_instead(
    client: ClientFactory, world: WebWorld
) -> None:
    await power_mode(world)
    alice = await client("alice")
    power = f"/campaigns/{world.campaign_id}/power"

    status, html = await alice.page(f"/campaigns/{world.campaign_id}")
    assert status == 200
    assert f'action="{power}"' in html and 'id="power-explain"' in html
    assert f'href="/campaigns/{world.campaign_id}/next"' not in html
    # Her list is still there to read.
    assert "Ada Lovelace" in html and "Marie Curie" in html
    # A teammate's list is for viewing only: no one dials it for Alice.
    bob = world.users["bob"]
    status, html = await alice.page(f"/campaigns/{world.campaign_id}?owner={bob}")
    assert 'id="power-view-only"' in html and 'id="start-calling"' not in html

    # "Next contact" (after an outcome, from the home page) leads to the session screen.
    response = await alice.request("GET", f"/campaigns/{world.campaign_id}/next")
    assert response.status == 303 and response.headers["Location"] == power

    # A contact of the campaign cannot be clicked to call.
    status, html = await alice.page(
        f"/contacts/{world.contacts['ada']}?campaign={world.campaign_id}"
    )
    assert 'id="power-only"' in html
    assert 'id="call-button" class="primary big" disabled' in html

    status, html = await alice.page(power)
    assert status == 200
    assert " hidden" not in opening_tag(html, "power-start")
    assert " hidden" in opening_tag(html, "power-session")

    # Starting from the form: one session, then the screen that follows it.
    response = await alice.form(power, {"from": "campaign"})
    assert response.status == 303 and response.headers["Location"] == power
    status, body = await alice.api("GET", "/api/power")
    assert body["session"]["state"] == PowerSessionState.CONNECTING.value
    status, html = await alice.page(power)
    assert " hidden" in opening_tag(html, "power-start")
    assert " hidden" not in opening_tag(html, "power-session")
    status, html = await alice.page(f"/campaigns/{world.campaign_id}")
    assert 'id="power-live"' in html and f'href="{power}"' in html

    # A second start goes back to the session in progress.
    response = await alice.form(power, {})
    assert response.status == 303 and response.headers["Location"] == power
    async with world.sessions() as session:
        assert len((await session.scalars(select(PowerSession))).all()) == 1

    # Leaving before any phone was called ends it at once; the screen says so.
    status, body = await alice.api("POST", "/api/power/leave")
    assert status == 200 and body["session"]["state"] == PowerSessionState.ENDED.value
    status, html = await alice.page(power)
    assert body["session"]["end_reason_label"] in html
    assert 'id="power-start-button">Start again' in html


async def test_a_refused_start_says_why(client: ClientFactory, world: WebWorld) -> None:
    await power_mode(world)
    # Olivia has no phone extension: nothing could ring her.
    olivia = await client("olivia")
    power = f"/campaigns/{world.campaign_id}/power"
    response = await olivia.form(power, {})
    assert response.status == 409
    html = await response.text()
    assert "You have no phone extension" in html
    assert " hidden" not in opening_tag(html, "power-error")


async def test_starting_needs_the_form_token(client: ClientFactory, world: WebWorld) -> None:
    await power_mode(world)
    alice = await client("alice")
    response = await alice.form(f"/campaigns/{world.campaign_id}/power", {}, token=False)
    assert response.status == 403
    async with world.sessions() as session:
        assert (await session.scalars(select(PowerSession))).first() is None


async def test_the_session_screen_in_french(client: ClientFactory, world: WebWorld) -> None:
    await power_mode(world)
    bob = await client("bob", language="fr")
    status, html = await bob.page(f"/campaigns/{world.campaign_id}/power")
    assert status == 200
    assert '<html lang="fr">' in html
    assert 'id="power-strings"' in html
