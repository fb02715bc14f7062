"""No caller ID anywhere, over HTTP: the click is refused (409 no_caller_id) in
the user's language, the call screen says so up front, and the organizer
pages warn about an active campaign with nothing to present.

Served without DIALER_DEFAULT_CALLER_ID, unlike the other web tests: the
world's "Quebec canvass" campaign then has no caller ID at all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from sqlalchemy import func, select

from dialer.runtime.bootstrap import build_runtime, web_app
from dialer.store.models import CallAttempt, Campaign
from tests.e2e import webworld
from tests.e2e.conftest import ClientFactory
from tests.e2e.webworld import CALLER_ID, Served, WebWorld

WARNING_EN = "This campaign is active but has no caller ID, and no default caller ID is set"
WARNING_FR = "Cette campagne est active mais n'a aucun numéro affiché"


@pytest.fixture
async def served(pg_url: str, world: WebWorld) -> AsyncIterator[Served]:
    """The app as deployed without DIALER_DEFAULT_CALLER_ID (overrides conftest's)."""
    # Imported through the module: a bare test_settings would be collected as a test.
    settings = webworld.test_settings(pg_url).model_copy(update={"default_caller_id": ""})
    runtime = build_runtime(settings)
    app = web_app(runtime, webworld.web_config())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield Served(runtime, app, runner, f"http://127.0.0.1:{runner.addresses[0][1]}")
    finally:
        await runner.cleanup()
        await runtime.close()


async def call_rows(world: WebWorld) -> int:
    async with world.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(CallAttempt)) or 0)


async def test_a_click_with_no_caller_id_is_refused_before_ringing(
    client: ClientFactory, world: WebWorld
) -> None:
    carol = await client("carol")
    status, body = await carol.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["alan"], "campaign_id": world.other_campaign_id},
    )
    assert status == 409, body
    assert body["error"]["code"] == "no_caller_id"
    assert body["error"]["message"] == (
        "There is no caller ID to call from; ask an organizer to set one up."
    )
    # Outside a campaign: carol's only active campaign has none either.
    carol_fr = await client("carol", language="fr")
    status, body = await carol_fr.api("POST", "/api/calls", {"contact_id": world.contacts["alan"]})
    assert status == 409 and body["error"]["code"] == "no_caller_id"
    assert body["error"]["message"] == (
        "Aucun numéro affiché n'est disponible pour appeler ; "
        "demandez à un organisateur d'en configurer un."
    )
    assert await call_rows(world) == 0


async def test_a_campaign_caller_id_is_enough_without_a_default(
    client: ClientFactory, world: WebWorld
) -> None:
    alice = await client("alice")
    status, call = await alice.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["ada"], "campaign_id": world.campaign_id},
    )
    assert status == 201, call
    assert call["caller_id"] == CALLER_ID


async def test_the_call_screen_says_so_before_the_click(
    client: ClientFactory, world: WebWorld
) -> None:
    carol = await client("carol")
    status, html = await carol.page(
        f"/contacts/{world.contacts['alan']}?campaign={world.other_campaign_id}"
    )
    assert status == 200
    assert 'id="no-caller-id"' in html
    assert "There is no caller ID to call from; ask an organizer to set one up." in html
    assert 'id="caller-id"' not in html  # no make-believe "default" to choose
    assert '<button type="submit" id="call-button" class="primary big" disabled>' in html
    alice = await client("alice")
    _, html = await alice.page(f"/contacts/{world.contacts['ada']}?campaign={world.campaign_id}")
    assert 'id="no-caller-id"' not in html and 'id="caller-id"' in html


async def test_organizers_are_warned_about_an_active_campaign_without_caller_id(
    client: ClientFactory, world: WebWorld
) -> None:
    # An administrator sees both teams' campaigns.
    admin = await client("adam", language="en")
    _, html = await admin.page("/ops/campaigns")
    assert html.count('class="badge warn"') == 1  # Quebec canvass, not Get out the vote
    for path in ("", "/edit", "/import", "/assign"):
        _, html = await admin.page(f"/ops/campaigns/{world.other_campaign_id}{path}")
        assert 'id="caller-id-warning"' in html, path
        assert WARNING_EN in html
        _, html = await admin.page(f"/ops/campaigns/{world.campaign_id}{path}")
        assert 'id="caller-id-warning"' not in html, path
    adam = await client("adam", language="fr")
    _, html = await adam.page(f"/ops/campaigns/{world.other_campaign_id}")
    assert WARNING_FR in html
    assert "Modifier les numéros affichés" in html


async def test_activating_without_caller_id_is_saved_with_a_warning(
    client: ClientFactory, world: WebWorld
) -> None:
    olivia = await client("olivia")
    form = {
        "title": "Get out the vote",
        "team_id": str(world.team_id),
        "status": "active",
        "caller_ids": "",
        "weekday_start": "00:00",
        "weekday_end": "23:59",
        "max_attempts": "3",
        "retry_delay_minutes": "0",
    }
    response = await olivia.form(f"/ops/campaigns/{world.campaign_id}/edit", form)
    assert response.status == 303, await response.text()
    _, html = await olivia.page(response.headers["Location"])
    assert 'id="caller-id-warning"' in html
    async with world.sessions() as session:
        campaign = await session.get(Campaign, world.campaign_id)
    assert campaign is not None and campaign.allowed_caller_ids == []
    # Giving it a caller ID again lifts the warning.
    response = await olivia.form(
        f"/ops/campaigns/{world.campaign_id}/edit", {**form, "caller_ids": "+1 514 555 0000"}
    )
    assert response.status == 303
    _, html = await olivia.page(response.headers["Location"])
    assert 'id="caller-id-warning"' not in html
