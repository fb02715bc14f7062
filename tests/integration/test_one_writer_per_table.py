"""Each table has one writer in dialer.store, and the suite's check of it works.

``tests/support/writers.py`` holds every write the tests make to
``dialer.store.writers.TABLE_WRITERS``; these tests check the map itself
and that a stray write is really caught.
"""

from __future__ import annotations

import importlib
import textwrap
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.store.models import Base
from dialer.store.writers import TABLE_WRITERS
from tests.support import writers

Sessions = async_sessionmaker[AsyncSession]


def test_every_table_has_exactly_one_writer_that_names_it() -> None:
    assert set(TABLE_WRITERS) == set(Base.metadata.tables)
    for table, owner in TABLE_WRITERS.items():
        assert owner.startswith("dialer.store."), table
        module = importlib.import_module(owner)
        assert module.__doc__ is not None and f"``{table}``" in module.__doc__, (owner, table)


async def _write_from(module_name: str, sessions: Sessions) -> None:
    # Code whose frames claim to belong to ``module_name``, as a module of
    # the product writing a row would.
    source = textwrap.dedent(
        """
        from sqlalchemy import text

        async def write(sessions, name):
            async with sessions.begin() as session:
                await session.execute(
                    text("INSERT INTO teams (name, created_at) VALUES (:name, CURRENT_TIMESTAMP)"),
                    {"name": name},
                )
        """
    )
    namespace: dict[str, Any] = {"__name__": module_name}
    exec(compile(source, f"<{module_name}>", "exec"), namespace)
    await namespace["write"](sessions, module_name)


async def test_a_write_outside_the_owner_is_caught(sessions: Sessions) -> None:
    await _write_from("dialer.services.somewhere", sessions)
    [stray] = writers.stray_writes
    writers.stray_writes.clear()  # caught here, not by the fixture
    assert (stray.table, stray.owner, stray.writer) == (
        "teams",
        "dialer.store.people",
        "dialer.services.somewhere",
    )


async def test_the_owner_and_test_code_may_write(sessions: Sessions) -> None:
    await _write_from("dialer.store.people", sessions)
    await _write_from("tests.integration.seeding", sessions)
    assert writers.stray_writes == []
