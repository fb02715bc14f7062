"""Engine, sessions and migrations: the one place that knows the database URL."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _enable_sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    # SQLite ignores FOREIGN KEY clauses unless asked on every connection;
    # WAL lets the web pages read while the worker writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


# asyncpg's names for "the server is there but will not talk to us now".
_UNAVAILABLE = {
    "TooManyConnectionsError",
    "CannotConnectNowError",
    "ConnectionDoesNotExistError",
    "ConnectionFailureError",
    "AdminShutdownError",
}


def causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and what lies under it, outermost first.

    The driver's own exception may be wrapped twice (SQLAlchemy's DBAPIError
    around its asyncpg adapter's Error), or raised bare at connect time.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        following = getattr(current, "orig", None)
        current = (
            following
            if isinstance(following, BaseException)
            else (current.__cause__ or current.__context__)
        )


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means "the database is away for now; retry", as opposed to a bug."""
    if isinstance(error, OperationalError | InterfaceError):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    # A host name that does not resolve yet is a database not up yet (a
    # container starting); a refused or reset connection, one restarting.
    return any(
        type(current).__name__ in _UNAVAILABLE
        or isinstance(current, ConnectionError | TimeoutError | socket.gaierror)
        for current in causes(error)
    )


def is_schema_missing(error: BaseException) -> bool:
    """Whether ``error`` says a table does not exist: migrations not applied (yet)."""
    return any(type(current).__name__ == "UndefinedTableError" for current in causes(error))


# asyncpg quotes (40 characters of) an argument it could not encode.
_ARGUMENT_ECHO = re.compile(
    r"(invalid input for query argument \$\d+(?: in element #\d+ of executemany\(\) sequence)?):"
    r" .*",
    re.DOTALL,
)


def _hide_argument_values(context: ExceptionContext) -> None:
    """Cut the value out of asyncpg's "invalid input for query argument" messages.

    ``hide_parameters`` keeps SQLAlchemy from printing them, but the driver
    quotes the offending value in its own message, which every wrapper
    repeats; the reason stays in the exception it chains from.
    """
    error = context.sqlalchemy_exception or context.original_exception
    for current in causes(error):
        if current.args and isinstance(current.args[0], str):
            hidden = _ARGUMENT_ECHO.sub(r"\1 (value hidden)", current.args[0])
            if hidden != current.args[0]:
                current.args = (hidden, *current.args[1:])


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    # A failed statement's message would otherwise carry its parameters:
    # passwords' hashes, phone numbers, notes, whatever a user typed, into
    # every log line and traceback.  The SQL itself is still shown.
    kwargs.setdefault("hide_parameters", True)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _enable_sqlite_foreign_keys)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    engine = create_async_engine(url, **kwargs)
    event.listen(engine.sync_engine, "handle_error", _hide_argument_values)
    return engine


def insert_on_conflict(session: AsyncSession, table: Table) -> Any:
    """An INSERT into ``table`` that takes ``on_conflict_do_nothing`` and
    ``on_conflict_do_update``, on PostgreSQL and SQLite alike: the unique
    key decides, in the database, so two processes racing on one row add
    it once."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def open_database(url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would eat a '%' in a password.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations; runs its own event loop, so call it outside one."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, url, revision)


async def downgrade_async(url: str, revision: str) -> None:
    await asyncio.to_thread(downgrade, url, revision)
