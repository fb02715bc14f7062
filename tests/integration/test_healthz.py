"""`/healthz` follows the AMI link and the database, as Compose's health check needs,
and a web process on its own reports the workers its calls rely on."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web import Application, Request
from pydantic import SecretStr
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ami_bridge.simulator import AmiSimulator
from dialer.runtime.bootstrap import Runtime, build_runtime, web_app
from dialer.runtime.settings import Settings
from dialer.store import heartbeats
from dialer.store.models import User, WorkerHeartbeat, utcnow
from tests.integration.pbx_harness import running_worker
from tests.integration.world import build_world
from tests.support.tcp_proxy import TcpProxy
from web.config import WebConfig

Sessions = async_sessionmaker[AsyncSession]


async def status_of(client: TestClient[Request, Application]) -> tuple[int, dict[str, Any]]:
    response = await client.get("/healthz")
    return response.status, await response.json()


async def test_healthz_turns_unhealthy_when_the_ami_link_drops_and_back(
    sessions: Sessions, simulator: AmiSimulator, proxied: tuple[TcpProxy, Sessions]
) -> None:
    proxy, proxied_sessions = proxied
    world = await build_world(sessions)
    async with running_worker(world, simulator) as harness:
        engine = proxied_sessions.kw["bind"]
        runtime = Runtime(
            Settings(_env_file=None),
            engine,
            proxied_sessions,
            harness.service.broadcaster,
            harness.service,
            world.outcomes(harness.service.publisher),
            world.lists(),
            worker=harness.worker,
        )
        app = web_app(runtime, WebConfig(_env_file=None, public_url="http://127.0.0.1"))
        async with TestClient(TestServer(app)) as client:
            status, body = await status_of(client)
            assert status == 200, body
            assert body["checks"] == {
                "database": {"ok": True, "detail": "reachable"},
                "ami": {"ok": True, "detail": "connected"},
            }

            await simulator.crash(down_for=1.0)  # the PBX goes away for a second
            status, body = await status_of(client)
            assert status == 503 and body["status"] == "unhealthy"
            assert body["checks"]["ami"] == {"ok": False, "detail": "disconnected"}

            async with asyncio.timeout(10):
                while (await status_of(client))[0] != 200:
                    await asyncio.sleep(0.05)

            proxy.cut()  # and now the database
            status, body = await status_of(client)
            assert status == 503
            assert body["checks"]["database"]["ok"] is False
            proxy.restore()
            async with asyncio.timeout(10):
                while (await status_of(client))[0] != 200:
                    await asyncio.sleep(0.05)


# -- a web process on its own, and the workers it relies on ---------------------------


async def test_a_web_process_reports_a_missing_worker_without_leaving_the_load_balancer(
    pg_url: str,
    sessions: Sessions,
    simulator: AmiSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    world = await build_world(sessions)
    async with sessions.begin() as session:
        await session.execute(update(User).where(User.id == world.users["bob"]).values(pbx="east"))
    # `dialer web`: no worker in this process; the PBXs it sends calls to are
    # its own (DIALER_PBX_NAME) and those its users are on.
    runtime = build_runtime(Settings(_env_file=None, database_url=SecretStr(pg_url)))
    app = web_app(runtime, WebConfig(_env_file=None, public_url="http://127.0.0.1"))
    try:
        async with TestClient(TestServer(app)) as client:
            status, body = await status_of(client)
            # Still in rotation: pages and outcomes work without a worker.
            assert status == 200 and body["status"] == "degraded", body
            assert body["checks"]["database"]["ok"] is True
            workers = body["checks"]["workers"]
            assert workers["ok"] is False and workers["required"] is False
            assert workers["pbxs"] == {"default": {"state": "down"}, "east": {"state": "down"}}
            assert workers["detail"] == "default: no worker running; east: no worker running"
            assert "PBX default: no worker running; calls on it wait" in caplog.text
            assert 'dialer_worker_up{pbx="default"} 0.0' in await metrics_text(client)

            async with running_worker(world, simulator):
                # The worker says it is up within moments of logging in to its PBX.
                async with asyncio.timeout(3):
                    while True:
                        status, body = await status_of(client)
                        default = body["checks"]["workers"]["pbxs"]["default"]
                        if default["state"] == "up":
                            break
                        await asyncio.sleep(0.05)
                assert status == 200 and body["status"] == "degraded", body
                assert default["state"] == "up" and "pid" not in default
                assert default["seen_seconds_ago"] < 5
                assert body["checks"]["workers"]["detail"] == "east: no worker running"
                assert "the worker for PBX default is back" in caplog.text
                assert 'dialer_worker_up{pbx="default"} 1.0' in await metrics_text(client)

            # Stopped cleanly: its heartbeat is gone at once.
            body = (await status_of(client))[1]
            assert body["checks"]["workers"]["pbxs"]["default"] == {"state": "down"}

            # A worker killed (or cut off from the database) just falls silent.
            async with sessions.begin() as session:
                await heartbeats.beat(
                    session,
                    pbx="east",
                    host="pbx-host",
                    pid=42,
                    started_at=utcnow(),
                    ami_connected=True,
                )
            assert (await status_of(client))[1]["checks"]["workers"]["pbxs"]["east"][
                "state"
            ] == "up"
            async with sessions.begin() as session:
                await session.execute(
                    update(WorkerHeartbeat).values(seen_at=text("now() - interval '1 minute'"))
                )
            status, body = await status_of(client)
            assert status == 200
            east = body["checks"]["workers"]["pbxs"]["east"]
            assert east["state"] == "down" and "host" not in east
            assert east["seen_seconds_ago"] >= 60
            # "60s", or a second more on a slow machine.
            assert re.search(r"east: no heartbeat for 6\ds", body["checks"]["workers"]["detail"])
    finally:
        await runtime.close()


async def test_the_database_down_still_takes_a_web_process_out(
    proxied: tuple[TcpProxy, Sessions],
) -> None:
    proxy, proxied_sessions = proxied
    url = proxied_sessions.kw["bind"].url.render_as_string(hide_password=False)
    runtime = build_runtime(Settings(_env_file=None, database_url=SecretStr(url)))
    app = web_app(runtime, WebConfig(_env_file=None, public_url="http://127.0.0.1"))
    try:
        async with TestClient(TestServer(app)) as client:
            proxy.cut()
            status, body = await status_of(client)
            assert status == 503 and body["status"] == "unhealthy"
            assert "workers" not in body["checks"]  # unknown, not reported down
    finally:
        await runtime.close()


async def metrics_text(client: TestClient[Request, Application]) -> str:
    response = await client.get("/metrics")
    return await response.text()
