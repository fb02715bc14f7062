"""The web tier during a database outage: a clear "retry" (HTTP 503), never a
500, and everything back once the database is; through a brief outage, an
outcome is stored by the server itself, once."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.runtime.bootstrap import build_runtime, web_app
from dialer.store.models import Disposition
from tests.e2e import webworld
from tests.support.tcp_proxy import TcpProxy

Sessions = async_sessionmaker[AsyncSession]


async def test_a_database_outage_answers_retry_not_internal_error(
    pg_url: str, sessions: Sessions
) -> None:
    await webworld.build_web_world(sessions)
    url = make_url(pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    settings = webworld.test_settings(pg_url).model_copy(
        update={
            "database_url": SecretStr(
                url.set(port=proxy.port).render_as_string(hide_password=False)
            )
        }
    )
    runtime = build_runtime(settings)
    try:
        app = web_app(runtime, webworld.web_config())
        async with TestClient(TestServer(app)) as client:
            # No Origin header: like a script, not a browser (CSRF token still checked).
            origin: dict[str, str] = {}
            signed = await client.post(
                "/api/session",
                json={"username": "alice", "password": webworld.PASSWORD},
                headers=origin,
            )
            assert signed.status == 200
            token = (await signed.json())["csrf_token"]
            assert (await client.get("/api/me")).status == 200

            proxy.cut()
            me = await client.get("/api/me")
            assert me.status == 503
            assert (await me.json())["error"]["code"] == "retry"
            assert me.headers["Retry-After"] == "2"
            call = await client.post(
                "/api/calls", json={"contact_id": 1}, headers={**origin, "X-CSRF-Token": token}
            )
            assert call.status == 503
            page = await client.get("/contacts")
            assert page.status == 503
            assert "Retry in a moment" in await page.text()

            proxy.restore()
            assert (await client.get("/api/me")).status == 200
    finally:
        await runtime.close()
        await proxy.stop()


@contextlib.asynccontextmanager
async def alice_signed_in(
    pg_url: str, proxy: TcpProxy
) -> AsyncIterator[tuple[TestClient[web.Request, web.Application], str]]:
    """Alice's session on an app whose database is behind ``proxy``, and her CSRF token."""
    through_proxy = make_url(pg_url).set(port=proxy.port).render_as_string(hide_password=False)
    settings = webworld.test_settings(pg_url).model_copy(
        update={"database_url": SecretStr(through_proxy)}
    )
    runtime = build_runtime(settings)
    try:
        app = web_app(runtime, webworld.web_config())
        async with TestClient(TestServer(app)) as client:
            signed = await client.post(
                "/api/session", json={"username": "alice", "password": webworld.PASSWORD}
            )
            assert signed.status == 200
            yield client, (await signed.json())["csrf_token"]
    finally:
        await runtime.close()


async def test_an_outcome_sent_during_a_brief_outage_is_stored_once_by_the_server(
    pg_url: str, sessions: Sessions, proxied: tuple[TcpProxy, Sessions]
) -> None:
    # The page's own resend is not in play: one request, one answer.
    world = await webworld.build_web_world(sessions)
    proxy, _sessions = proxied
    submission = {
        "submission_id": uuid.uuid4().hex,
        "contact_id": world.contacts["ada"],
        "campaign_id": world.campaign_id,
        "outcome": "other",
        "comments": "sent while the database restarted",
    }
    async with alice_signed_in(pg_url, proxy) as (client, token):
        proxy.cut()
        # Back within a second: shorter than the retries' few seconds.
        restore = asyncio.get_running_loop().call_later(0.8, proxy.restore)
        started = time.monotonic()
        response = await client.post(
            "/api/outcomes", json=submission, headers={"X-CSRF-Token": token}
        )
        restore.cancel()
        # The session lookup waited for the database, then the outcome went through.
        assert response.status == 201, await response.text()
        assert time.monotonic() - started >= 0.7
    async with sessions() as session:
        stored = await session.scalar(
            select(func.count())
            .select_from(Disposition)
            .where(Disposition.submission_id == submission["submission_id"])
        )
    assert stored == 1


async def test_a_long_outage_still_answers_retry_within_a_bound(
    pg_url: str, sessions: Sessions, proxied: tuple[TcpProxy, Sessions]
) -> None:
    await webworld.build_web_world(sessions)
    proxy, _sessions = proxied
    async with alice_signed_in(pg_url, proxy) as (client, _token):
        proxy.cut()
        started = time.monotonic()
        me = await client.get("/api/me")
        # The session lookup's retries are bounded: a clear 503, not a hang.
        assert me.status == 503
        assert (await me.json())["error"]["code"] == "retry"
        assert time.monotonic() - started < 10
