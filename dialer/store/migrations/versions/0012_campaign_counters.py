"""dashboard counters: campaign totals kept by triggers, and two call indexes

The dashboard read every call, outcome and list entry of a campaign on each
view (3.8 s at 500,000 calls).  The totals it shows are now kept in
``campaign_counters`` by triggers on the three counted tables, in the
transaction of each change (dialer.store.counters says which totals and why
triggers).  Counted from the rows already there at upgrade time, with the
triggers in place first: on PostgreSQL ``CREATE TRIGGER`` locks out writers
until this migration commits, so nothing is counted twice or missed.

Frozen here, as a migration is: the names and expressions of the totals
below are the ones dialer.store.counters reads, and
tests/integration/test_dashboard_counters.py checks that the two agree.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

# Every statement here is built from this file's own constants: no input reaches them.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# One trigger run in FOLD_ONE_IN folds the campaign's deltas (PostgreSQL).
FOLD_ONE_IN = 32
# pg_try_advisory_xact_lock(FOLD_LOCK, campaign id): 'cntr'.
FOLD_LOCK = 0x636E7472


# A NamedTuple: Alembic loads this file outside sys.modules, where dataclasses fail.
class Counted(NamedTuple):
    """What one table's row adds to its campaign's totals.

    Expressions use ``{r}`` for the row: an alias on PostgreSQL, NEW or OLD
    in a SQLite trigger.  A name that is NULL (no outcome yet) counts nothing.
    """

    table: str
    volunteer: str
    # Every column the expressions read; a change to one of them is counted.
    columns: tuple[str, ...]
    # (name, amount) pairs.
    totals: tuple[tuple[str, str], ...]


def _talk_us(dialect: str) -> str:
    if dialect == "postgresql":
        return (
            "CASE WHEN {r}.contact_answered_at IS NOT NULL AND {r}.ended_at IS NOT NULL THEN"
            " GREATEST(0, (EXTRACT(EPOCH FROM {r}.ended_at - {r}.contact_answered_at)"
            " * 1000000)::bigint) ELSE 0 END"
        )
    # SQLite holds 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC): whole seconds, then microseconds.
    return (
        "CASE WHEN {r}.contact_answered_at IS NOT NULL AND {r}.ended_at IS NOT NULL THEN"
        " MAX(0, (CAST(strftime('%s', {r}.ended_at) AS INTEGER)"
        " - CAST(strftime('%s', {r}.contact_answered_at) AS INTEGER)) * 1000000"
        " + CAST(substr({r}.ended_at, 21, 6) AS INTEGER)"
        " - CAST(substr({r}.contact_answered_at, 21, 6) AS INTEGER)) ELSE 0 END"
    )


def _counted(dialect: str) -> tuple[Counted, ...]:
    return (
        Counted(
            "call_attempts",
            "{r}.volunteer_id",
            ("campaign_id", "volunteer_id", "contact_answered_at", "ended_at", "outcome"),
            (
                ("'dials'", "1"),
                ("'reached'", "CASE WHEN {r}.contact_answered_at IS NOT NULL THEN 1 ELSE 0 END"),
                ("'talk_us'", _talk_us(dialect)),
                ("'call:' || {r}.outcome", "1"),
            ),
        ),
        Counted(
            "dispositions",
            "COALESCE({r}.volunteer_id, 0)",
            ("campaign_id", "volunteer_id", "outcome", "mobilized"),
            (
                ("'outcome:' || {r}.outcome", "1"),
                ("'mobilized'", "CASE WHEN {r}.mobilized THEN 1 ELSE 0 END"),
            ),
        ),
        Counted(
            "calling_list_entries",
            "0",
            ("campaign_id", "done", "callback_at"),
            (
                ("'list_total'", "1"),
                ("'list_done'", "CASE WHEN {r}.done THEN 1 ELSE 0 END"),
                (
                    "'callbacks_pending'",
                    "CASE WHEN {r}.callback_at IS NOT NULL AND NOT {r}.done THEN 1 ELSE 0 END",
                ),
            ),
        ),
    )


def _changed(counted: Counted, dialect: str) -> str:
    distinct = "IS DISTINCT FROM" if dialect == "postgresql" else "IS NOT"
    return " OR ".join(f"OLD.{column} {distinct} NEW.{column}" for column in counted.columns)


# -- PostgreSQL: deltas appended by statement triggers (row ones for UPDATE) ---------


def _pg_changes(counted: Counted, source: str, sign: int) -> str:
    """Rows (campaign_id, volunteer_id, name, amount) of ``source``'s rows, times ``sign``."""
    values = ", ".join(
        f"({name.format(r='r')}, ({amount.format(r='r')})::bigint)"
        for name, amount in counted.totals
    )
    return (
        f"SELECT r.campaign_id, {counted.volunteer.format(r='r')} AS volunteer_id,"
        f" c.name, c.amount * {sign} AS amount"
        f" FROM {source} AS r CROSS JOIN LATERAL (VALUES {values}) AS c(name, amount)"
        " WHERE r.campaign_id IS NOT NULL"
    )


def _pg_row(counted: Counted, record: str) -> str:
    columns = ", ".join(f"{record}.{column} AS {column}" for column in counted.columns)
    return f"(SELECT {columns})"


def _pg_function(name: str, changes: str) -> str:
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    touched integer[];
BEGIN
    WITH added AS (
        INSERT INTO campaign_counter_deltas (campaign_id, volunteer_id, name, amount)
        SELECT campaign_id, volunteer_id, name, sum(amount)
        FROM ({changes}) AS changes
        WHERE name IS NOT NULL
        GROUP BY campaign_id, volunteer_id, name
        HAVING sum(amount) <> 0
        RETURNING campaign_id
    )
    SELECT array_agg(DISTINCT campaign_id) INTO touched FROM added;
    IF touched IS NOT NULL AND random() < 1.0 / {FOLD_ONE_IN} THEN
        PERFORM campaign_counters_fold(campaign) FROM unnest(touched) AS campaign;
    END IF;
    RETURN NULL;
END
$$"""


_PG_FOLD = f"""
CREATE FUNCTION campaign_counters_fold(target integer) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- One folder per campaign at a time; the others leave the deltas for later.
    IF NOT pg_try_advisory_xact_lock({FOLD_LOCK}, target) THEN
        RETURN;
    END IF;
    WITH folded AS (
        DELETE FROM campaign_counter_deltas WHERE campaign_id = target
        RETURNING volunteer_id, name, amount
    )
    INSERT INTO campaign_counters AS base (campaign_id, volunteer_id, name, amount)
    SELECT target, volunteer_id, name, sum(amount) FROM folded
    GROUP BY volunteer_id, name
    ON CONFLICT (campaign_id, volunteer_id, name)
    DO UPDATE SET amount = base.amount + excluded.amount;
END
$$"""

# Deferred to the commit: the foreign keys' cascades fire the counting
# triggers of the campaign's calls, outcomes and entries after the row
# triggers of the campaign's own DELETE, and they add deltas as they go.
_PG_FORGET = """
CREATE FUNCTION campaign_counters_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM campaign_counters WHERE campaign_id = OLD.id;
    DELETE FROM campaign_counter_deltas WHERE campaign_id = OLD.id;
    RETURN NULL;
END
$$"""


def _pg_upgrade() -> None:
    op.execute(_PG_FOLD)
    op.execute(_PG_FORGET)
    op.execute(
        "CREATE CONSTRAINT TRIGGER campaign_counters_forget AFTER DELETE ON campaigns"
        " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION campaign_counters_forget()"
    )
    for counted in _counted("postgresql"):
        table = counted.table
        added = f"campaign_counts_{table}_insert"
        op.execute(_pg_function(added, _pg_changes(counted, "new_rows", 1)))
        op.execute(
            f"CREATE TRIGGER {added} AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows"
            f" FOR EACH STATEMENT EXECUTE FUNCTION {added}()"
        )
        removed = f"campaign_counts_{table}_delete"
        op.execute(_pg_function(removed, _pg_changes(counted, "old_rows", -1)))
        op.execute(
            f"CREATE TRIGGER {removed} AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows"
            f" FOR EACH STATEMENT EXECUTE FUNCTION {removed}()"
        )
        # A row trigger with WHEN: the many updates that change nothing counted
        # (claims, channels, timestamps) never call the function.
        changed = f"campaign_counts_{table}_update"
        op.execute(
            _pg_function(
                changed,
                _pg_changes(counted, _pg_row(counted, "NEW"), 1)
                + " UNION ALL "
                + _pg_changes(counted, _pg_row(counted, "OLD"), -1),
            )
        )
        op.execute(
            f"CREATE TRIGGER {changed} AFTER UPDATE ON {table} FOR EACH ROW"
            f" WHEN ({_changed(counted, 'postgresql')}) EXECUTE FUNCTION {changed}()"
        )


def _pg_downgrade() -> None:
    for counted in _counted("postgresql"):
        for event in ("insert", "delete", "update"):
            name = f"campaign_counts_{counted.table}_{event}"
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {counted.table}")
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.execute("DROP TRIGGER IF EXISTS campaign_counters_forget ON campaigns")
    op.execute("DROP FUNCTION IF EXISTS campaign_counters_forget()")
    op.execute("DROP FUNCTION IF EXISTS campaign_counters_fold(integer)")


# -- SQLite: row triggers adding to the totals directly -----------------------------


def _sqlite_add(counted: Counted, record: str, sign: int) -> str:
    rows = " UNION ALL ".join(
        f"SELECT {record}.campaign_id AS campaign_id,"
        f" {counted.volunteer.format(r=record)} AS volunteer_id,"
        f" {name.format(r=record)} AS name, ({amount.format(r=record)}) * {sign} AS amount"
        for name, amount in counted.totals
    )
    return (
        "INSERT INTO campaign_counters (campaign_id, volunteer_id, name, amount)"
        f" SELECT campaign_id, volunteer_id, name, amount FROM ({rows})"
        " WHERE campaign_id IS NOT NULL AND name IS NOT NULL AND amount <> 0"
        " ON CONFLICT (campaign_id, volunteer_id, name)"
        " DO UPDATE SET amount = amount + excluded.amount;"
    )


def _sqlite_upgrade() -> None:
    op.execute(
        "CREATE TRIGGER campaign_counters_forget AFTER DELETE ON campaigns FOR EACH ROW"
        " BEGIN DELETE FROM campaign_counters WHERE campaign_id = OLD.id; END"
    )
    for counted in _counted("sqlite"):
        table = counted.table
        op.execute(
            f"CREATE TRIGGER campaign_counts_{table}_insert AFTER INSERT ON {table} FOR EACH ROW"
            f" BEGIN {_sqlite_add(counted, 'NEW', 1)} END"
        )
        op.execute(
            f"CREATE TRIGGER campaign_counts_{table}_delete AFTER DELETE ON {table} FOR EACH ROW"
            f" BEGIN {_sqlite_add(counted, 'OLD', -1)} END"
        )
        op.execute(
            f"CREATE TRIGGER campaign_counts_{table}_update AFTER UPDATE ON {table} FOR EACH ROW"
            f" WHEN {_changed(counted, 'sqlite')}"
            f" BEGIN {_sqlite_add(counted, 'OLD', -1)} {_sqlite_add(counted, 'NEW', 1)} END"
        )


def _sqlite_downgrade() -> None:
    for counted in _counted("sqlite"):
        for event in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS campaign_counts_{counted.table}_{event}")
    op.execute("DROP TRIGGER IF EXISTS campaign_counters_forget")


# -- both ---------------------------------------------------------------------------


def _backfill(dialect: str) -> str:
    """The totals of the rows already there, as the triggers would have counted them."""
    if dialect == "postgresql":
        changes = " UNION ALL ".join(
            _pg_changes(counted, counted.table, 1) for counted in _counted(dialect)
        )
    else:
        changes = " UNION ALL ".join(
            f"SELECT r.campaign_id AS campaign_id, {counted.volunteer.format(r='r')}"
            f" AS volunteer_id, {name.format(r='r')} AS name, {amount.format(r='r')} AS amount"
            f" FROM {counted.table} AS r WHERE r.campaign_id IS NOT NULL"
            for counted in _counted(dialect)
            for name, amount in counted.totals
        )
    return (
        "INSERT INTO campaign_counters (campaign_id, volunteer_id, name, amount)"
        f" SELECT campaign_id, volunteer_id, name, sum(amount) FROM ({changes}) AS changes"
        " WHERE name IS NOT NULL GROUP BY campaign_id, volunteer_id, name"
        " HAVING sum(amount) <> 0"
    )


def upgrade() -> None:
    op.create_table(
        "campaign_counters",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("volunteer_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "campaign_id", "volunteer_id", "name", name=op.f("pk_campaign_counters")
        ),
    )
    op.create_table(
        "campaign_counter_deltas",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("volunteer_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_counter_deltas")),
    )
    op.create_index(
        "ix_campaign_counter_deltas_campaign", "campaign_counter_deltas", ["campaign_id"]
    )
    op.create_index(
        "ix_call_attempts_campaign_requested", "call_attempts", ["campaign_id", "requested_at"]
    )
    op.create_index(
        "ix_call_attempts_campaign_live",
        "call_attempts",
        ["campaign_id"],
        postgresql_where=sa.text("ended_at IS NULL"),
        sqlite_where=sa.text("ended_at IS NULL"),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        _pg_upgrade()
    else:
        _sqlite_upgrade()
    op.execute(_backfill(dialect))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _pg_downgrade()
    else:
        _sqlite_downgrade()
    op.drop_index("ix_call_attempts_campaign_live", table_name="call_attempts")
    op.drop_index("ix_call_attempts_campaign_requested", table_name="call_attempts")
    op.drop_index("ix_campaign_counter_deltas_campaign", table_name="campaign_counter_deltas")
    op.drop_table("campaign_counter_deltas")
    op.drop_table("campaign_counters")
