"""Migrations upgrade and downgrade cleanly on PostgreSQL and SQLite,
and the schema they build is exactly what the models describe."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import async_sessionmaker

import dialer.store.models  # noqa: F401  (registers the web tables)
from dialer.domain.vocabulary import CallOutcome, CallState, DispositionOutcome, Role
from dialer.store import calls
from dialer.store import engine as db
from dialer.store.models import Base, CallAttempt, Contact, Disposition, User
from tests.conftest import PG_SERVER, _dsn

# Every table the models declare, plus Alembic's own bookkeeping.
EXPECTED_TABLES = set(Base.metadata.tables) | {"alembic_version"}


@pytest.fixture(params=["postgresql", "sqlite"])
async def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'dialer.sqlite3'}"
        return
    name = f"dialer_migr_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(_dsn("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+asyncpg://{PG_SERVER}/{name}"
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _tables(url: str) -> set[str]:
    engine = db.create_engine(url)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def _schema_diff(url: str) -> list[object]:
    def compare(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    engine = db.create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(compare)
    finally:
        await engine.dispose()


async def test_upgrade_downgrade_upgrade(empty_db: str) -> None:
    url = empty_db
    await db.upgrade_async(url)
    assert await _tables(url) == EXPECTED_TABLES
    await db.downgrade_async(url, "base")
    assert await _tables(url) == {"alembic_version"}
    await db.upgrade_async(url)
    assert await _tables(url) == EXPECTED_TABLES


async def test_migrations_match_the_models(empty_db: str) -> None:
    url = empty_db
    await db.upgrade_async(url)
    assert await _schema_diff(url) == []


async def test_asterisks_role_may_read_the_browser_phone_views_and_nothing_else() -> None:
    """Migration 0013 grants the role of deploy/postgres-init SELECT on the three ps_* views."""
    name = f"dialer_migr_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(_dsn("postgres"))
    try:
        # The role is the server's, shared by every database: made once, kept.
        await admin.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'asterisk')"
            " THEN CREATE ROLE asterisk NOLOGIN; END IF; END $$"
        )
        await admin.execute(f'CREATE DATABASE "{name}"')
        await db.upgrade_async(f"postgresql+asyncpg://{PG_SERVER}/{name}")
        database = await asyncpg.connect(_dsn(name))
        try:
            allowed = {
                row["relname"]
                for row in await database.fetch(
                    "SELECT relname FROM pg_class JOIN pg_namespace n ON n.oid = relnamespace"
                    " WHERE nspname = 'public' AND relkind IN ('r', 'v')"
                    " AND has_table_privilege('asterisk', pg_class.oid, 'SELECT')"
                )
            }
        finally:
            await database.close()
        assert allowed == {"ps_endpoints", "ps_auths", "ps_aors"}
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_upgrading_and_downgrading_keep_every_row(empty_db: str) -> None:
    """On SQLite a batch migration rebuilds a table and drops the old one; with
    foreign keys on, that DROP deleted every row that pointed at it (a user's
    team memberships went with migration 0013 once).  The migrations run with
    them off, and check nothing was left dangling."""
    await db.upgrade_async(empty_db, "0012")
    engine = db.create_engine(empty_db)
    rows = {
        "teams": "INSERT INTO teams (id, name, created_at, calling_hours)"
        " VALUES (1, 'Montreal', '2026-01-01', '{}')",
        "users": "INSERT INTO users (id, username, display_name, role, password_hash,"
        " is_active, created_at) VALUES (1, 'alice', 'Alice', 'volunteer', 'x', true,"
        " '2026-01-01')",
        "team_members": "INSERT INTO team_members (team_id, user_id, joined_at)"
        " VALUES (1, 1, '2026-01-01')",
    }

    async def counts() -> dict[str, int]:
        async with engine.connect() as connection:
            return {
                table: int(
                    (await connection.exec_driver_sql(f"SELECT count(*) FROM {table}")).scalar_one()
                )
                for table in rows
            }

    try:
        async with engine.begin() as connection:
            for insert in rows.values():
                await connection.exec_driver_sql(insert)
        await engine.dispose()
        await db.upgrade_async(empty_db)
        assert await counts() == dict.fromkeys(rows, 1)
        await engine.dispose()
        await db.downgrade_async(empty_db, "0012")
        assert await counts() == dict.fromkeys(rows, 1)
    finally:
        await engine.dispose()


async def test_0014_dates_answered_calls_outcomes_and_leaves_the_owed_one_pending(
    empty_db: str,
) -> None:
    """Calls answered before 0014 get their disposition's time; the one without
    a disposition is still the outcome its volunteer owes."""
    await db.upgrade_async(empty_db)
    engine = db.create_engine(empty_db)
    answered = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)
    recorded = datetime(2026, 11, 2, 15, 5, tzinfo=UTC)
    try:
        async with async_sessionmaker(engine)() as session, session.begin():
            volunteer = User(
                username="alice", display_name="Alice", role=Role.VOLUNTEER, password_hash="x"
            )
            contact = Contact(first_name="Ada", last_name="Lovelace")
            session.add_all([volunteer, contact])
            await session.flush()
            for number, when, outcome in (
                ("1", answered, CallOutcome.COMPLETED),
                ("2", answered.replace(minute=30), CallOutcome.COMPLETED),
                ("3", answered.replace(minute=40), CallOutcome.CONTACT_NO_ANSWER),
            ):
                session.add(
                    CallAttempt(
                        call_id=f"call-{number}",
                        contact_id=contact.id,
                        number_e164="+15145550100",
                        volunteer_id=volunteer.id,
                        state=CallState.ENDED,
                        outcome=outcome,
                        requested_at=when,
                        contact_answered_at=when if outcome is CallOutcome.COMPLETED else None,
                        ended_at=when,
                    )
                )
            await session.flush()
            for submission, call_id, disposition in (
                ("s-1", "call-2", DispositionOutcome.ANSWERED),
                ("s-2", "call-3", DispositionOutcome.ABSENT),
            ):
                call = await session.scalar(
                    select(CallAttempt).where(CallAttempt.call_id == call_id)
                )
                assert call is not None
                session.add(
                    Disposition(
                        submission_id=submission,
                        call_attempt_id=call.id,
                        contact_id=contact.id,
                        volunteer_id=volunteer.id,
                        outcome=disposition,
                        created_at=recorded,
                    )
                )
            volunteer_id = volunteer.id
        await engine.dispose()
        # As a database written before 0014 would be.
        await db.downgrade_async(empty_db, "0013")
        await db.upgrade_async(empty_db)
        async with async_sessionmaker(engine)() as session:
            dated = dict(
                (
                    await session.execute(
                        select(CallAttempt.call_id, CallAttempt.outcome_recorded_at)
                    )
                )
                .tuples()
                .all()
            )
            owed = await calls.pending_outcome(session, volunteer_id)
        assert dated["call-1"] is None
        assert dated["call-2"] is not None
        assert dated["call-2"].replace(tzinfo=UTC) == recorded
        # Never answered: it could not owe an outcome, so 0014 leaves it
        # undated rather than rewrite its row.
        assert dated["call-3"] is None
        assert owed is not None and owed.call_id == "call-1"
    finally:
        await engine.dispose()


async def test_0015_adds_the_supervision_requests_and_takes_them_away(empty_db: str) -> None:
    """0015 is one new table with its waiting-requests index; going back to
    0014 drops both and leaves every other table as it was."""
    await db.upgrade_async(empty_db, "0014")
    before = await _tables(empty_db)
    assert "supervision_requests" not in before
    await db.upgrade_async(empty_db, "0015")
    assert await _tables(empty_db) == before | {"supervision_requests"}
    engine = db.create_engine(empty_db)
    try:
        async with engine.connect() as connection:
            indexes = await connection.run_sync(
                lambda sync: {i["name"] for i in inspect(sync).get_indexes("supervision_requests")}
            )
        assert "ix_supervision_requests_waiting" in indexes
        async with engine.begin() as connection:
            await connection.exec_driver_sql(
                "INSERT INTO supervision_requests (call_id, pbx, mode, requested_at)"
                " VALUES ('c1', 'default', 'listen', '2026-12-07 03:00:00')"
            )
    finally:
        await engine.dispose()
    await db.downgrade_async(empty_db, "0014")
    assert await _tables(empty_db) == before
