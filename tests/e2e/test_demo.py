"""`dialer demo` as a newcomer runs it: a subprocess on a free port, then a
volunteer signs in and completes a call through the JSON API."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.network import free_port

READY_LINE = "Contacts' last digit picks the call outcome (see the README). Ctrl-C stops."


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("DIALER_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dialer",
        "demo",
        "--port",
        str(port),
        "--time-scale",
        "0.1",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(60):
            while READY_LINE not in seen:
                line = await process.stderr.readline()
                if not line:
                    pytest.fail("dialer demo exited early:\n" + "\n".join(seen))
                seen.append(line.decode().strip())
        drain = asyncio.create_task(process.stderr.read())
        yield f"http://127.0.0.1:{port}"
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)
    assert process.returncode == 0 or process.returncode == -15
    drain.cancel()
    assert (tmp_path / "dialer-demo.sqlite3").exists()
    assert "alice / volunteer-demo" in "\n".join(seen)


async def test_demo_completes_a_call_through_the_api(demo: str) -> None:
    # unsafe: keep cookies set by an IP-address host (127.0.0.1).
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(
        base_url=demo, headers={"Origin": demo}, cookie_jar=jar
    ) as http:
        signed = await http.post(
            "/api/session", json={"username": "alice", "password": "volunteer-demo"}
        )
        assert signed.status == 200, await signed.text()
        headers = {"X-CSRF-Token": (await signed.json())["csrf_token"]}
        me = await (await http.get("/api/me")).json()
        assert me["user"]["username"] == "alice"
        campaigns = await http.get("/api/openapi.json")
        assert campaigns.status == 200

        # The demo campaign is the first one; Alice's first contact answers.
        nxt = await http.get("/api/campaigns/1/next")
        assert nxt.status == 200, await nxt.text()
        contact = (await nxt.json())["contact"]
        started = await http.post(
            "/api/calls", headers=headers, json={"contact_id": contact["id"], "campaign_id": 1}
        )
        assert started.status == 201, await started.text()
        call_id = (await started.json())["call_id"]

        states: list[str] = []
        async with asyncio.timeout(30):
            while True:
                call = await (await http.get(f"/api/calls/{call_id}")).json()
                if not states or states[-1] != call["state"]:
                    states.append(call["state"])
                if call["state"] == "ended":
                    break
                await asyncio.sleep(0.05)
        assert call["outcome"] == "completed", call
        assert "talking" in states

        outcome = await http.post(
            "/api/outcomes",
            headers=headers,
            json={
                "submission_id": uuid.uuid4().hex,
                "call_id": call_id,
                "contact_id": contact["id"],
                "outcome": "answered",
                "consent": True,
                "survey_answers": {"vote": "yes"},
                "comments": "Will vote",
            },
        )
        assert outcome.status in (200, 201), await outcome.text()
