"""`dialer worker` started before its database: it waits, says so, then works.

The worker runs as the command line runs it (``run_serve`` without the web
app, its /healthz and /metrics on a port of their own), pointed at a port
where nothing listens yet; PostgreSQL then appears there, as it does when
a machine boots or Compose starts every service at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ami_bridge.simulator import AmiSimulator
from dialer.domain.vocabulary import CallState
from dialer.runtime.bootstrap import Runtime, run_serve
from dialer.runtime.settings import Settings
from dialer.store.models import CallAttempt, WorkerHeartbeat
from tests.integration.pbx_harness import SECRET
from tests.integration.world import CALLER_ID, build_world
from tests.support.network import free_port
from tests.support.tcp_proxy import TcpProxy

Sessions = async_sessionmaker[AsyncSession]


class LateDatabase(TcpProxy):
    """PostgreSQL on a port where, until ``appear()``, nothing listens at all."""

    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__(target_host, target_port)
        self.port = free_port()

    async def appear(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)


async def health(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url + "/healthz") as response:
        return response.status, await response.json()


@contextlib.asynccontextmanager
async def worker_process(settings: Settings) -> AsyncIterator[tuple[asyncio.Task[None], str]]:
    """``dialer worker``'s run, in this process; yields its task and probe URL."""
    ready: asyncio.Future[tuple[Runtime, int]] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_serve(
            settings,
            with_web=False,
            stop=stop,
            on_ready=lambda runtime, port: ready.set_result((runtime, port)),
        )
    )
    try:
        async with asyncio.timeout(10):
            _runtime, port = await asyncio.shield(ready)
        yield task, f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await task  # a clean stop: no exception


async def test_a_worker_started_before_its_database_waits_then_dials(
    pg_url: str,
    sessions: Sessions,
    simulator: AmiSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    world = await build_world(sessions)
    url = make_url(pg_url)
    database = LateDatabase(url.host or "127.0.0.1", url.port or 5432)
    settings = Settings(
        _env_file=None,
        database_url=SecretStr(url.set(port=database.port).render_as_string(hide_password=False)),
        ami_host="127.0.0.1",
        ami_port=simulator.port,
        ami_username="dialer",
        ami_secret=SecretStr(SECRET),
        default_caller_id=CALLER_ID,
        allowed_destinations="CA,+33",
        worker_http_port=0,
        # The world's calls are dated on its fixed Tuesday: old, yet still wanted.
        request_expiry_seconds=10**9,
    )
    try:
        async with worker_process(settings) as (task, probe), aiohttp.ClientSession() as http:
            await asyncio.sleep(1.5)  # a few attempts, every one refused
            assert not task.done(), task
            status, body = await health(http, probe)
            assert status == 503 and body["status"] == "unhealthy", body
            assert body["checks"]["database"]["ok"] is False
            assert body["checks"]["ami"] == {
                "ok": False,
                "detail": "not started: waiting for the database",
            }
            assert simulator.action_counts.get("Login", 0) == 0  # nothing before the database
            waiting = [r for r in caplog.records if "cannot start" in r.getMessage()]
            assert waiting and waiting[0].levelno == logging.WARNING
            assert "the database is unreachable" in waiting[0].getMessage()
            assert "ConnectionRefusedError" in waiting[0].getMessage()
            assert not any(r.exc_info for r in waiting)  # a plain line, not a traceback

            # A click made meanwhile on a web process (straight into the database).
            call = await world.service().start_call(
                volunteer_id=world.users["alice"],
                contact_id=world.contacts["montreal"],
                campaign_id=world.campaign_id,
            )
            await database.appear()
            async with asyncio.timeout(20):
                while (await health(http, probe))[0] != 200:
                    await asyncio.sleep(0.1)
            assert "database reachable after" in caplog.text
            async with asyncio.timeout(20):
                while True:
                    async with sessions() as session:
                        row = await session.scalar(
                            select(CallAttempt).where(CallAttempt.call_id == call.call_id)
                        )
                    assert row is not None
                    if row.state is CallState.TALKING:
                        break
                    await asyncio.sleep(0.05)
            assert simulator.action_counts["Originate"] == 1
            async with asyncio.timeout(5):  # its heartbeat says so too
                while True:
                    async with sessions() as session:
                        beat = await session.get(WorkerHeartbeat, "default")
                    if beat is not None and beat.ami_connected:
                        break
                    await asyncio.sleep(0.05)
        # Stopped cleanly: the heartbeat goes with it.
        async with sessions() as session:
            assert await session.get(WorkerHeartbeat, "default") is None
    finally:
        await database.stop()


async def test_a_wrong_password_still_stops_the_worker(pg_url: str, sessions: Sessions) -> None:
    """Only an absent database is waited for: a setting that can never work is an error."""
    url = make_url(pg_url).set(username="nobody_here", password="wrong")
    settings = Settings(
        _env_file=None,
        database_url=SecretStr(url.render_as_string(hide_password=False)),
        ami_port=free_port(),
        worker_http=False,
    )
    stop = asyncio.Event()
    with pytest.raises(BaseExceptionGroup) as raised:
        async with asyncio.timeout(20):
            await run_serve(settings, with_web=False, stop=stop)
    # The database refused the login itself: not a timeout, not another failure.
    assert raised.group_contains(DBAPIError, match="nobody_here")
