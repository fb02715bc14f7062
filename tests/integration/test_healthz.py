"""`/healthz` follows the AMI link and the database, as Compose's health check needs."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ami_bridge.simulator import AmiSimulator
from dialer.runtime.bootstrap import Runtime, web_app
from dialer.runtime.settings import Settings
from tests.integration.pbx_harness import running_worker
from tests.integration.world import build_world
from tests.support.tcp_proxy import TcpProxy
from web.config import WebConfig

Sessions = async_sessionmaker[AsyncSession]


async def status_of(client: TestClient) -> tuple[int, dict[str, object]]:
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
            proxied_sessions,  # type: ignore[call-arg]
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
