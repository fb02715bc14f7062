"""Shared fixtures: a real PostgreSQL database per test run, migrated with Alembic.

The server comes from DIALER_TEST_PG (default: the local trust-auth server);
each run creates its own database and drops it at the end, so parallel runs
and leftovers from a killed run never collide.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain import i18n
from dialer.store import engine as db
from dialer.store.models import Base
from tests.support import writers

PG_SERVER = os.environ.get("DIALER_TEST_PG", "postgres@127.0.0.1:5432")
FIXTURES = Path(__file__).parent / "fixtures"


writers.install()


@pytest.fixture(autouse=True)
def _one_writer_per_table() -> Iterator[None]:
    """Every table is written only by its owner in dialer.store (dialer.store.writers)."""
    writers.stray_writes.clear()
    yield
    found = sorted({str(write) for write in writers.stray_writes})
    writers.stray_writes.clear()
    assert not found, "writes outside the table's owner:\n" + "\n".join(found)


@pytest.fixture(autouse=True)
def _no_language_left_over() -> Iterator[None]:
    """A test that activates a language (French) must not make later ones speak it."""
    i18n.reset()
    yield
    i18n.reset()


def _dsn(database: str) -> str:
    return f"postgresql://{PG_SERVER}/{database}"


@pytest.fixture(scope="session")
async def pg_url() -> AsyncIterator[str]:
    name = f"dialer_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(_dsn("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = f"postgresql+asyncpg://{PG_SERVER}/{name}"
    await db.upgrade_async(url)
    yield url
    admin = await asyncpg.connect(_dsn("postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def session_maker(pg_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = db.create_engine(pg_url)
    yield db.session_factory(engine)
    await engine.dispose()


@pytest.fixture
async def sessions(
    session_maker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A clean database for each test.

    Tables are truncated after the test rather than rolled back, because the
    code under test commits (and later tests run several processes that must
    see each other's commits).
    """
    yield session_maker
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    async with session_maker.begin() as session:
        await session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def fixtures_dir() -> Iterator[Path]:
    yield FIXTURES
