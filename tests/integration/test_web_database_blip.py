"""The web tier during a database outage: a clear "retry" (HTTP 503), never a
500, and everything back once the database is."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.runtime.bootstrap import build_runtime, web_app
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
