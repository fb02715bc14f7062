"""`dialer worker` and two `dialer web` processes, as a production fleet runs them.

Separate operating-system processes sharing only PostgreSQL (call and
hang-up requests) and a real Mosquitto (live state): a call requested on
web A is seen live by an organizer on web B, who hangs it up from there.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from ami_bridge.simulator import AmiSimulator
from tests.e2e.webworld import AMI_SECRET, CALLER_ID, PASSWORD, WebWorld
from tests.support.network import free_port

MQTT_URL = "mqtt://127.0.0.1:1883"

pytestmark = pytest.mark.slow


@dataclass
class Fleet:
    simulator: AmiSimulator
    worker_url: str
    web_a: str
    web_b: str
    prefix: str


async def _spawn(command: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dialer",
        command,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def _wait_healthy(url: str, process: asyncio.subprocess.Process) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, asyncio.timeout(30):
        while True:
            if process.returncode is not None:
                assert process.stderr is not None
                pytest.fail("process exited early:\n" + (await process.stderr.read()).decode())
            try:
                async with http.get(url + "/healthz") as response:
                    body: dict[str, Any] = await response.json()
                    if response.status == 200:
                        return body
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


@pytest.fixture
async def fleet(pg_url: str, world: WebWorld) -> AsyncIterator[Fleet]:
    simulator = AmiSimulator(secret=AMI_SECRET, time_scale=0.25)
    await simulator.start()
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    base = {key: value for key, value in os.environ.items() if not key.startswith("DIALER_")}
    base.update(
        DIALER_DATABASE_URL=pg_url,
        DIALER_AMI_PORT=str(simulator.port),
        DIALER_AMI_SECRET=AMI_SECRET,
        DIALER_AMI_PING_INTERVAL="1",
        DIALER_AMI_PING_TIMEOUT="0.5",
        DIALER_MQTT_URL=MQTT_URL,
        DIALER_MQTT_TOPIC_PREFIX=prefix,
        DIALER_ALLOWED_DESTINATIONS="CA,+33",
        DIALER_DEFAULT_CALLER_ID=CALLER_ID,
        DIALER_ORIGINATE_TIMEOUT_MS="5000",
        DIALER_LOG_LEVEL="INFO",
    )
    worker_port, port_a, port_b = free_port(), free_port(), free_port()
    processes = [
        await _spawn("worker", base | {"DIALER_WORKER_HTTP_PORT": str(worker_port)}),
        await _spawn(
            "web",
            base
            | {
                "DIALER_WEB_PORT": str(port_a),
                "DIALER_WEB_PUBLIC_URL": f"http://127.0.0.1:{port_a}",
            },
        ),
        await _spawn(
            "web",
            base
            | {
                "DIALER_WEB_PORT": str(port_b),
                "DIALER_WEB_PUBLIC_URL": f"http://127.0.0.1:{port_b}",
            },
        ),
    ]
    urls = [f"http://127.0.0.1:{port}" for port in (worker_port, port_a, port_b)]
    try:
        for url, process in zip(urls, processes, strict=True):
            await _wait_healthy(url, process)
        yield Fleet(simulator, *urls, prefix=prefix)
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            await asyncio.wait_for(process.communicate(), 30)
        await simulator.stop()
    # A clean stop, not a crash (SIGTERM handled).
    assert all(process.returncode == 0 for process in processes), [
        process.returncode for process in processes
    ]


async def sign_in(http: aiohttp.ClientSession, base: str, username: str) -> dict[str, str]:
    async with http.post(
        base + "/api/session",
        json={"username": username, "password": PASSWORD},
        headers={"Origin": base},
    ) as response:
        assert response.status == 200, await response.text()
        token = (await response.json())["csrf_token"]
    return {"X-CSRF-Token": token, "Origin": base}


async def next_event(
    content: aiohttp.StreamReader, wanted: Callable[[str, Any], Any], timeout: float = 20
) -> Any:
    """Read SSE lines until ``wanted(event_name, data)`` returns something; return it."""
    event = ""
    async with asyncio.timeout(timeout):
        while True:
            raw = await content.readline()
            if not raw:
                raise AssertionError("the event stream ended")
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                found = wanted(event, json.loads(line[len("data: ") :]))
                if found:
                    return found


def call_items(event: str, data: Any) -> list[dict[str, Any]]:
    if event == "snapshot":
        return [item for item in data["items"] if item["kind"] == "call"]
    if isinstance(data, dict) and data.get("kind") == "call":
        return [data]
    return []


def has_call(call_id: str, state: str) -> Callable[[str, Any], dict[str, Any] | None]:
    def wanted(event: str, data: Any) -> dict[str, Any] | None:
        for item in call_items(event, data):
            if item["key"] == call_id and item["payload"]["state"] == state:
                return item
        return None

    return wanted


async def test_a_call_requested_on_web_a_is_live_on_web_b_and_hung_up_from_there(
    fleet: Fleet, world: WebWorld
) -> None:
    jar_a, jar_b = aiohttp.CookieJar(unsafe=True), aiohttp.CookieJar(unsafe=True)
    async with (
        aiohttp.ClientSession(cookie_jar=jar_a) as volunteer,
        aiohttp.ClientSession(cookie_jar=jar_b) as organizer,
    ):
        alice = await sign_in(volunteer, fleet.web_a, "alice")
        olivia = await sign_in(organizer, fleet.web_b, "olivia")
        async with organizer.get(fleet.web_b + "/api/live/events") as events:
            assert events.status == 200
            await next_event(events.content, lambda event, _data: event == "snapshot")

            # Marie's number ends in 4: she answers and stays on the line.
            async with volunteer.post(
                fleet.web_a + "/api/calls",
                json={"contact_id": world.contacts["marie"], "campaign_id": world.campaign_id},
                headers=alice,
            ) as response:
                assert response.status == 201, await response.text()
                call_id = (await response.json())["call_id"]

            talking = await next_event(events.content, has_call(call_id, "talking"))
            # Web B learned it over MQTT and added the names from the database.
            assert talking["payload"]["volunteer_name"] == "Alice Martin"
            assert fleet.simulator.action_counts["Originate"] == 1

            async with organizer.post(
                fleet.web_b + f"/api/calls/{call_id}/hangup", headers=olivia
            ) as response:
                assert response.status == 202, await response.text()
            ended = await next_event(events.content, has_call(call_id, "ended"))
            assert ended["present"] is False
            assert ended["payload"]["outcome"] == "hung_up_by_operator"

        # Web A (the volunteer's) agrees, from the database.
        async with volunteer.get(fleet.web_a + f"/api/calls/{call_id}") as response:
            call = await response.json()
        assert call["state"] == "ended"
        assert call["outcome"] == "hung_up_by_operator"
        assert fleet.simulator.action_counts["Originate"] == 1


async def test_every_process_reports_its_own_dependencies(fleet: Fleet) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(fleet.worker_url + "/healthz") as response:
            worker = await response.json()
        # A web process reads the workers' heartbeats every 5 s: the worker's
        # first one may not have been read yet on a busy machine.
        async with asyncio.timeout(15):
            while True:
                async with http.get(fleet.web_a + "/healthz") as response:
                    web = await response.json()
                if web["checks"].get("workers", {}).get("ok"):
                    break
                await asyncio.sleep(0.25)
    assert set(worker["checks"]) == {"database", "ami", "mqtt"}
    assert all(check["ok"] for check in worker["checks"].values()), worker
    # A web process has no PBX link; it follows live state over MQTT and
    # reports the worker its calls rely on, here up and logged in to the PBX.
    assert set(web["checks"]) == {"database", "mqtt", "workers"}
    assert all(check["ok"] for check in web["checks"].values()), web
    assert web["checks"]["workers"]["pbxs"]["default"]["state"] == "up"
