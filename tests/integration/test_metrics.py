"""`GET /metrics`: a real call through the AMI simulator over TCP, then the scrape.

Calls by state while one is up and by outcome once it ended, the Originate
latency and event lag histograms, AMI reconnects, the SSE client gauge, and
nothing personal anywhere in the output.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ami_bridge.simulator import AmiSimulator
from dialer.domain.passwords import hash_password
from dialer.domain.vocabulary import CallState
from dialer.live.metrics import LIVE_STATES, OUTCOMES
from dialer.live.mqtt import MqttPublisher
from dialer.runtime.bootstrap import Runtime, web_app
from dialer.runtime.metrics import install
from dialer.runtime.settings import Settings
from dialer.store.models import User
from tests.integration.pbx_harness import Harness, running_worker
from tests.integration.world import build_world
from web.config import WebConfig
from web.routes.metrics import metrics_key

Sessions = async_sessionmaker[AsyncSession]
PASSWORD = "metrics-test-password"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def web_config() -> WebConfig:
    return WebConfig(_env_file=None, public_url="http://127.0.0.1", sse_keepalive_seconds=0.05)


def runtime_of(harness: Harness) -> Runtime:
    sessions = harness.world.sessions
    return Runtime(
        Settings(_env_file=None),
        sessions.kw["bind"],
        sessions,
        harness.service.broadcaster,
        harness.service,
        harness.world.outcomes(harness.service.publisher),
        harness.world.lists(),
        worker=harness.worker,
    )


async def scrape(client: TestClient) -> tuple[str, Samples]:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def eventually(
    client: TestClient, check: str, wanted: float, *, at_least: bool = False, **labels: str
) -> Samples:
    async with asyncio.timeout(10):
        while True:
            _, samples = await scrape(client)
            found = samples.get((check, tuple(sorted(labels.items()))))
            if found == wanted or (at_least and found is not None and found >= wanted):
                return samples
            await asyncio.sleep(0.02)


@pytest.fixture
async def harness(sessions: Sessions, simulator: AmiSimulator) -> AsyncIterator[Harness]:
    world = await build_world(sessions)
    async with sessions.begin() as session:
        await session.execute(
            update(User)
            .where(User.id == world.users["alice"])
            .values(password_hash=hash_password(PASSWORD))
        )
    async with running_worker(world, simulator) as running:
        yield running


async def test_a_call_from_request_to_outcome_shows_in_the_metrics(harness: Harness) -> None:
    app = web_app(runtime_of(harness), web_config())
    async with TestClient(TestServer(app)) as client:
        _, before = await scrape(client)
        assert value(before, "dialer_ami_connected") == 1
        assert value(before, "dialer_ami_reconnects_total") == 0
        assert all(value(before, "dialer_calls", state=state) == 0 for state in LIVE_STATES)
        assert value(before, "dialer_calls_ended_total", outcome="hung_up_by_volunteer") == 0

        # +15145550184 answers and stays on the line until someone hangs up.
        call_id = await harness.call("montreal")
        await harness.wait_for(call_id, CallState.TALKING)
        talking = await eventually(client, "dialer_calls", 1, state="talking")
        assert sum(value(talking, "dialer_calls", state=state) for state in LIVE_STATES) == 1
        assert value(talking, "dialer_originates_total") == 1
        assert value(talking, "dialer_ami_originate_seconds_count") == 1
        assert 0 < value(talking, "dialer_ami_originate_seconds_sum") < 2

        await harness.service.hang_up(harness.world.users["alice"], call_id)
        ended = await harness.wait_for(call_id, CallState.ENDED)
        assert ended.outcome is not None
        await eventually(client, "dialer_calls_ended_total", 1, outcome=ended.outcome.value)
        text, after = await scrape(client)
        assert sum(value(after, "dialer_calls_ended_total", outcome=o) for o in OUTCOMES) == 1
        assert all(value(after, "dialer_calls", state=state) == 0 for state in LIVE_STATES)
        # Every state change of the call went through the database once.
        lag_count = value(after, "dialer_ami_event_lag_seconds_count")
        assert lag_count >= 4
        # Measured on the wall clock: the test's service clock is days away.
        assert 0 <= value(after, "dialer_ami_event_lag_seconds_sum") / lag_count < 5

        # Only states and outcomes as labels: no number, name or call id.
        row = await harness.row(call_id)
        for personal in (row.number_e164, row.number_e164.lstrip("+"), "5550184", call_id, "Ada"):
            assert personal not in text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                assert set(sample.labels) <= {"state", "outcome", "le"}, sample

        # The PBX goes away and comes back: one reconnect.
        await harness.simulator.crash(down_for=0.3)
        await eventually(client, "dialer_ami_reconnects_total", 1)
        await eventually(client, "dialer_ami_connected", 1)


async def test_sse_clients_are_counted_while_their_stream_is_open(harness: Harness) -> None:
    app = web_app(runtime_of(harness), web_config())
    async with TestClient(TestServer(app)) as client:
        _, samples = await scrape(client)
        assert value(samples, "dialer_sse_clients") == 0
        signed_in = await client.post(
            "/api/session", json={"username": "alice", "password": PASSWORD}
        )
        assert signed_in.status == 200, await signed_in.text()
        stream = await client.get("/api/live/events")
        assert stream.status == 200
        async with asyncio.timeout(10):
            assert (await stream.content.readline()).startswith(b"retry:")
        await eventually(client, "dialer_sse_clients", 1)
        stream.close()
        await eventually(client, "dialer_sse_clients", 0)
        _, samples = await scrape(client)
        assert value(samples, "dialer_http_requests_total") >= 4
        assert value(samples, "dialer_http_server_errors_total") == 0


async def test_a_web_process_without_worker_exports_what_it_has(sessions: Sessions) -> None:
    world = await build_world(sessions)
    service = world.service()
    runtime = Runtime(
        Settings(_env_file=None),
        sessions.kw["bind"],
        sessions,
        service.broadcaster,
        service,
        world.outcomes(service.publisher),
        world.lists(),
    )
    async with TestClient(TestServer(web_app(runtime, web_config()))) as client:
        await client.get("/no/such/page")
        text, samples = await scrape(client)
        assert value(samples, "dialer_sse_clients") == 0
        assert value(samples, "dialer_http_requests_total") >= 1
        assert value(samples, "dialer_http_request_seconds_count") >= 1
        for absent in ("dialer_calls", "dialer_ami_", "dialer_originates", "dialer_mqtt_"):
            assert absent not in text
        # Prometheus may ask for OpenMetrics; the library answers in kind.
        response = await client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await response.text()).rstrip().endswith("# EOF")


async def test_metrics_composed_by_the_process_are_served_as_given(harness: Harness) -> None:
    runtime = runtime_of(harness)
    metrics = install(runtime)
    follower = asyncio.create_task(metrics.run())
    # A publisher whose broker is down: its failures are read at scrape time.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    runtime.mqtt = MqttPublisher(runtime.broadcaster, f"mqtt://127.0.0.1:{closed_port}")
    publisher = asyncio.create_task(runtime.mqtt.run())
    try:
        runtime.metrics = metrics
        app = web_app(runtime, web_config())
        assert app[metrics_key] is metrics
        async with TestClient(TestServer(app)) as client:
            call_id = await harness.call("vancouver")  # busy
            await harness.wait_for(call_id, CallState.ENDED)
            # Counted once, although the app and this test both run a follower.
            await eventually(client, "dialer_calls_ended_total", 1, outcome="contact_busy")
            samples = await eventually(
                client, "dialer_mqtt_publish_failures_total", 1, at_least=True
            )
            assert value(samples, "dialer_mqtt_connected") == 0
            assert value(samples, "dialer_mqtt_published_total") == 0
    finally:
        follower.cancel()
        publisher.cancel()
        await asyncio.gather(follower, publisher, return_exceptions=True)
    # Nothing ever went to the library's global registry.
    assert b"dialer_" not in generate_latest(REGISTRY)
