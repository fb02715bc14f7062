"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ami_bridge.simulator import AmiSimulator
from dialer.store import engine as db
from tests.integration.pbx_harness import SECRET
from tests.support.tcp_proxy import TcpProxy

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture(params=["postgresql", "sqlite"])
async def either_database(
    request: pytest.FixtureRequest, tmp_path: Path, sessions: Sessions
) -> AsyncIterator[Sessions]:
    """The test database, then a migrated SQLite file (the demo's): the test runs on both."""
    if request.param == "postgresql":
        yield sessions
        return
    url = f"sqlite+aiosqlite:///{tmp_path / 'dialer.sqlite3'}"
    await db.upgrade_async(url)
    async with db.open_database(url) as lite:
        yield lite


@pytest.fixture
async def proxied(pg_url: str, sessions: Sessions) -> AsyncIterator[tuple[TcpProxy, Sessions]]:
    """Sessions on the test database through a proxy the test can cut."""
    url = make_url(pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    engine = db.create_engine(url.set(port=proxy.port).render_as_string(hide_password=False))
    yield proxy, db.session_factory(engine)
    await engine.dispose()
    await proxy.stop()


@pytest.fixture
async def simulator() -> AsyncIterator[AmiSimulator]:
    """The PBX simulator as production sees it (least-privilege user), 50x fast."""
    sim = AmiSimulator(username="dialer", secret=SECRET, least_privilege=True, time_scale=0.02)
    await sim.start()
    yield sim
    await sim.stop()
