"""`dialer demo` (SQLite) refuses a second call with 409 and a clear reason,
never "Something went wrong": a double click, and a second volunteer."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.e2e import test_demo

# The demo as a subprocess on a free port, shared with tests/e2e/test_demo.py.
demo = test_demo.demo


async def signed_in(demo: str, username: str) -> tuple[aiohttp.ClientSession, dict[str, str]]:
    # unsafe: keep cookies set by an IP-address host (127.0.0.1).
    http = aiohttp.ClientSession(
        base_url=demo, headers={"Origin": demo}, cookie_jar=aiohttp.CookieJar(unsafe=True)
    )
    signed = await http.post(
        "/api/session", json={"username": username, "password": "volunteer-demo"}
    )
    assert signed.status == 200, await signed.text()
    return http, {"X-CSRF-Token": (await signed.json())["csrf_token"]}


async def call(
    http: aiohttp.ClientSession, headers: dict[str, str], contact_id: int
) -> tuple[int, Any]:
    response = await http.post(
        "/api/calls", headers=headers, json={"contact_id": contact_id, "campaign_id": 1}
    )
    return response.status, await response.json()


async def test_a_double_click_and_a_second_volunteer_are_refused_with_409(demo: str) -> None:
    alice, alice_headers = await signed_in(demo, "alice")
    bob, bob_headers = await signed_in(demo, "bob")
    async with alice, bob:
        nxt = await alice.get("/api/campaigns/1/next")
        assert nxt.status == 200, await nxt.text()
        contact_id = (await nxt.json())["contact"]["id"]

        # "Don't ask again" and a double click: two requests at once.
        answers = await asyncio.gather(
            call(alice, alice_headers, contact_id), call(alice, alice_headers, contact_id)
        )
        statuses = sorted(status for status, _ in answers)
        assert statuses == [201, 409], answers
        [(_, refused)] = [answer for answer in answers if answer[0] == 409]
        assert refused["error"] == {
            "code": "volunteer_busy",
            "message": "You already have a call in progress.",
        }

        # Bob, on the contact Alice's call is still ringing.
        status, body = await call(bob, bob_headers, contact_id)
        assert status == 409, body
        assert body["error"] == {
            "code": "contact_being_called",
            "message": "Someone is calling this contact right now.",
        }
