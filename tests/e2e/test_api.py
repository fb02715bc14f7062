"""The JSON API and the live stream, without a browser."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from sqlalchemy import func, select

from dialer.services.common import RetryableError
from dialer.store.models import Contact, Disposition
from tests.e2e.conftest import Browser, ClientFactory
from tests.e2e.webworld import Served, WebWorld


def outcome(world: WebWorld, submission_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "submission_id": submission_id,
        "contact_id": world.contacts["ada"],
        "campaign_id": world.campaign_id,
        "outcome": "answered",
        "consent": True,
        "survey_answers": {"vote": "maybe"},
        **fields,
    }


async def test_start_a_call_and_read_its_state(client: ClientFactory, world: WebWorld) -> None:
    alice = await client("alice")
    status, call = await alice.api(
        "POST",
        "/api/calls",
        {
            "contact_id": world.contacts["ada"],
            "campaign_id": world.campaign_id,
            "caller_id": "+15145550001",
        },
    )
    assert status == 201
    assert call["state"] == "requested" and call["caller_id"] == "+15145550001"
    assert call["state_label"] == "Calling your phone…"
    status, state = await alice.api("GET", f"/api/calls/{call['call_id']}")
    assert status == 200 and state["contact_name"] == "Ada Lovelace"
    # Refusals keep their stable code; the message follows the user's language.
    status, body = await alice.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["marie"], "campaign_id": world.campaign_id},
    )
    assert status == 409 and body["error"]["code"] == "volunteer_busy"
    bob = await client("bob")
    status, body = await bob.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["ada"], "campaign_id": world.campaign_id},
    )
    assert status == 409 and body["error"]["code"] == "contact_being_called"
    assert body["error"]["message"] == "Quelqu'un appelle déjà ce contact."
    status, body = await bob.api(
        "POST",
        "/api/calls",
        {
            "contact_id": world.contacts["grace"],
            "campaign_id": world.campaign_id,
            "caller_id": "+15145559999",
        },
    )
    assert status == 409 and body["error"]["code"] == "caller_id_not_allowed"


async def test_do_not_call_is_refused_with_its_code(client: ClientFactory, world: WebWorld) -> None:
    async with world.sessions.begin() as session:
        contact = await session.get(Contact, world.contacts["marie"])
        assert contact is not None
        contact.do_not_call = True
        contact.dnc_at = func.now()
    alice = await client("alice")
    status, body = await alice.api(
        "POST",
        "/api/calls",
        {"contact_id": world.contacts["marie"], "campaign_id": world.campaign_id},
    )
    assert status == 409
    assert body["error"] == {
        "code": "do_not_call",
        "message": "This contact is on the do-not-call list.",
    }


async def test_outcomes_are_stored_once_per_submission(
    client: ClientFactory, world: WebWorld
) -> None:
    alice = await client("alice")
    first = await alice.api("POST", "/api/outcomes", outcome(world, "sub-idem-0001"))
    again = await alice.api("POST", "/api/outcomes", outcome(world, "sub-idem-0001"))
    assert first[0] == 201 and again[0] == 200
    assert again[1]["duplicate"] is True
    assert again[1]["disposition_id"] == first[1]["disposition_id"]
    async with world.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Disposition)) == 1


async def test_field_errors(client: ClientFactory, world: WebWorld) -> None:
    alice = await client("alice")
    status, body = await alice.api(
        "POST",
        "/api/outcomes",
        outcome(world, "sub-bad-00001", survey_answers={"vote": "perhaps"}, email="not-an-email"),
    )
    assert status == 422
    assert body["error"]["code"] == "invalid"
    assert set(body["error"]["fields"]) == {"survey.vote", "email"}
    status, body = await alice.api(
        "POST", "/api/outcomes", outcome(world, "sub-bad-00002", survey_answers={})
    )
    assert body["error"]["fields"] == {"survey.vote": "This question is required."}


async def test_a_database_outage_answers_retry(
    client: ClientFactory, world: WebWorld, served: Served
) -> None:
    alice = await client("alice")
    outcomes = served.runtime.outcomes
    original = outcomes.record_outcome

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise RetryableError("down")

    outcomes.record_outcome = down  # type: ignore[method-assign]
    try:
        status, body = await alice.api("POST", "/api/outcomes", outcome(world, "sub-retry-001"))
    finally:
        outcomes.record_outcome = original  # type: ignore[method-assign]
    assert status == 503 and body["error"]["code"] == "retry"
    status, _ = await alice.api("POST", "/api/outcomes", outcome(world, "sub-retry-001"))
    assert status == 201


async def test_next_contact_and_others(client: ClientFactory, world: WebWorld) -> None:
    alice = await client("alice")
    status, mine = await alice.api("GET", f"/api/campaigns/{world.campaign_id}/next")
    assert status == 200 and mine["contact"]["name"] == "Ada Lovelace"
    status, helping = await alice.api(
        "GET", f"/api/campaigns/{world.campaign_id}/next?owner={world.users['bob']}"
    )
    assert status == 200 and helping["contact"]["name"] == "Grace Hopper"
    olivia = await client("olivia")
    status, empty = await olivia.api("GET", f"/api/campaigns/{world.campaign_id}/next")
    assert status == 200 and empty["contact"] is None and empty["empty_reason"] == "empty"
    assert empty["message"] == "No contacts are assigned to this list."


async def test_openapi_describes_every_api_route(client: ClientFactory, served: Served) -> None:
    anonymous = await client()
    status, document = await anonymous.api("GET", "/api/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.")
    described = {path for path in document["paths"]}
    served_paths = {
        resource.canonical.replace(r"{contact_id:\d{1,9}}", "{contact_id}").replace(
            r"{campaign_id:\d{1,9}}", "{campaign_id}"
        )
        for resource in served.app.router.resources()
        if resource.canonical.startswith("/api/")
    }
    assert served_paths == described
    assert (
        "retry"
        in document["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"][
            "enum"
        ]
    )
    assert "do_not_call" in json.dumps(document)


async def _events(browser: Browser, count: int, after: Any = None) -> list[tuple[str, Any]]:
    """Read ``count`` SSE events (name, data); ``after`` runs once the first arrived."""
    found: list[tuple[str, Any]] = []
    response = await browser.request("GET", "/api/live/events")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    name = ""
    async with asyncio.timeout(10):
        while len(found) < count:
            line = (await response.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                found.append((name, json.loads(line[6:])))
                if len(found) == 1 and after is not None:
                    await after()
    response.close()
    return found


async def test_the_stream_sends_a_snapshot_then_changes(
    client: ClientFactory, world: WebWorld, served: Served
) -> None:
    olivia = await client("olivia")
    alice = await client("alice")

    async def call() -> None:
        status, _ = await alice.api(
            "POST",
            "/api/calls",
            {"contact_id": world.contacts["ada"], "campaign_id": world.campaign_id},
        )
        assert status == 201

    events = await _events(olivia, 3, after=call)
    assert events[0][0] == "snapshot" and events[0][1]["items"] == []
    changes = {data["kind"]: data for name, data in events[1:] if name == "change"}
    assert changes["call"]["payload"]["contact_name"] == "Ada Lovelace"
    assert changes["call"]["payload"]["volunteer_name"] == "Alice Martin"
    assert changes["call"]["payload"]["campaign_title"] == "Get out the vote"
    assert changes["volunteer"]["payload"]["status"] == "ringing"


async def test_a_slow_stream_gets_a_fresh_snapshot(
    client: ClientFactory, world: WebWorld, served: Served
) -> None:
    # These calls belong to no campaign and no volunteer: only an administrator sees them.
    adam = await client("adam")
    hub_clients: list[Any] = []

    async def flood() -> None:
        from web.deps import hub_key

        hub = served.app[hub_key]
        hub_clients.extend(hub.clients)
        for client_ in hub.clients:
            client_.backlog = 5
        for index in range(50):
            served.runtime.broadcaster.publish(
                "call", f"flood-{index}", {"call_id": f"flood-{index}", "state": "talking"}
            )
        # All at once: the hub flushes them together, more than the stream's
        # backlog, so it sends a snapshot instead.  (A browser that stops
        # reading: tests/integration/test_live_streams.py.)
        await asyncio.sleep(0.2)

    events = await _events(adam, 2, after=flood)
    names = [name for name, _ in events]
    assert names[0] == "snapshot"
    assert "snapshot" in names[1:], names
    resent = next(data for name, data in events[1:] if name == "snapshot")
    assert len([item for item in resent["items"] if item["kind"] == "call"]) == 50


async def test_sse_requires_a_session(served: Served) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(served.url + "/api/live/events") as response,
    ):
        assert response.status == 401
