"""`dialer worker` and two `dialer web` processes: an outcome saved on web A sets
the volunteer back to available on the live panel an organizer follows on
web B (issue 17, defect 3).  Only PostgreSQL and Mosquitto join them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.e2e.test_split_processes import Fleet, fleet, has_call, next_event, sign_in
from tests.e2e.webworld import WebWorld

__all__ = ["fleet"]  # the fixture, shared with the other split-process tests

pytestmark = pytest.mark.slow


def volunteer_status(volunteer_id: int, status: str) -> Callable[[str, Any], Any]:
    def wanted(event: str, data: Any) -> Any:
        if event == "snapshot":
            items = [item for item in data["items"] if item["kind"] == "volunteer"]
        elif isinstance(data, dict) and data.get("kind") == "volunteer":
            items = [data]
        else:
            items = []
        return next(
            (
                item
                for item in items
                if item["key"] == str(volunteer_id) and item["payload"]["status"] == status
            ),
            None,
        )

    return wanted


async def test_an_outcome_saved_on_web_a_makes_the_volunteer_available_on_web_b(
    fleet: Fleet, world: WebWorld
) -> None:
    jar_a, jar_b = aiohttp.CookieJar(unsafe=True), aiohttp.CookieJar(unsafe=True)
    alice_id = world.users["alice"]
    async with (
        aiohttp.ClientSession(cookie_jar=jar_a) as volunteer,
        aiohttp.ClientSession(cookie_jar=jar_b) as organizer,
    ):
        alice = await sign_in(volunteer, fleet.web_a, "alice")
        await sign_in(organizer, fleet.web_b, "olivia")
        async with organizer.get(fleet.web_b + "/api/live/events") as events:
            await next_event(events.content, lambda event, _data: event == "snapshot")
            # Marie answers and stays on the line until Alice hangs up.
            async with volunteer.post(
                fleet.web_a + "/api/calls",
                json={"contact_id": world.contacts["marie"], "campaign_id": world.campaign_id},
                headers=alice,
            ) as response:
                assert response.status == 201, await response.text()
                call_id = (await response.json())["call_id"]
            await next_event(events.content, has_call(call_id, "talking"))
            async with volunteer.post(
                fleet.web_a + f"/api/calls/{call_id}/hangup", headers=alice
            ) as response:
                assert response.status == 202, await response.text()
            await next_event(events.content, volunteer_status(alice_id, "wrap_up"))

            async with volunteer.post(
                fleet.web_a + "/api/outcomes",
                json={
                    "submission_id": "split-process-1",
                    "call_id": call_id,
                    "contact_id": world.contacts["marie"],
                    "campaign_id": world.campaign_id,
                    "outcome": "call_back_later",
                    "callback_at": "2099-01-01T12:00:00+00:00",
                },
                headers=alice,
            ) as response:
                assert response.status == 201, await response.text()
            shown = await next_event(events.content, volunteer_status(alice_id, "idle"), timeout=10)
            assert shown["payload"]["call_id"] == call_id
