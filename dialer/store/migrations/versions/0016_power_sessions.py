"""power_sessions: power (progressive) mode, and the campaign's dialing mode

A campaign in power mode lets its volunteers start a session: their phone
is called once and waits in a conference of its own while the worker dials
their list's contacts one after the other.  A session is a row, written by
the web process that took "Start calling" and carried out by its PBX's
worker; each call dialed for it names it.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = "ended_at IS NULL"


def _enum(name: str, *values: str, checked: bool = True) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=checked, length=32)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    # Not a batch on SQLite: rebuilding campaigns would drop its counter
    # trigger (0012); SQLite cannot add the CHECK without one.
    op.add_column(
        "campaigns",
        sa.Column(
            "dialing_mode",
            _enum("dialing_mode", "click", "power", checked=not sqlite),
            nullable=False,
            server_default="click",
        ),
    )
    op.create_table(
        "power_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("volunteer_id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("pbx", sa.String(length=100), nullable=False),
        sa.Column(
            "phone", _enum("volunteer_phone", "desk", "browser", "own_number"), nullable=False
        ),
        sa.Column("caller_id", sa.String(length=40), nullable=True),
        sa.Column(
            "state",
            _enum(
                "power_session_state",
                "connecting",
                "waiting",
                "dialing",
                "talking",
                "wrap_up",
                "paused",
                "ended",
            ),
            nullable=False,
        ),
        sa.Column("state_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("leg_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("leg_answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("leg_channel", sa.String(length=200), nullable=True),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pause_reason", sa.String(length=200), nullable=True),
        sa.Column("last_call", sa.Boolean(), nullable=False),
        sa.Column("leave_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("waiting_note", sa.String(length=300), nullable=True),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("waited_seconds", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_power_sessions_campaign_id_campaigns"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["volunteer_id"],
            ["users.id"],
            name=op.f("fk_power_sessions_volunteer_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_power_sessions")),
    )
    op.create_index(
        "uq_power_sessions_live_volunteer",
        "power_sessions",
        ["volunteer_id"],
        unique=True,
        postgresql_where=sa.text(_LIVE),
        sqlite_where=sa.text(_LIVE),
    )
    op.create_index(
        "ix_power_sessions_live_pbx",
        "power_sessions",
        ["pbx"],
        postgresql_where=sa.text(_LIVE),
        sqlite_where=sa.text(_LIVE),
    )
    op.create_index("ix_power_sessions_campaign", "power_sessions", ["campaign_id", "requested_at"])
    # No foreign key (see CallAttempt.power_session_id), and not a batch on
    # SQLite: rebuilding call_attempts would drop its counter triggers (0012).
    op.add_column("call_attempts", sa.Column("power_session_id", sa.Integer(), nullable=True))
    op.create_index(
        "ix_call_attempts_power_session",
        "call_attempts",
        ["power_session_id", "requested_at"],
        postgresql_where=sa.text("power_session_id IS NOT NULL"),
        sqlite_where=sa.text("power_session_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_call_attempts_power_session", table_name="call_attempts")
    op.drop_column("call_attempts", "power_session_id")
    op.drop_index("ix_power_sessions_campaign", table_name="power_sessions")
    op.drop_index("ix_power_sessions_live_pbx", table_name="power_sessions")
    op.drop_index("uq_power_sessions_live_volunteer", table_name="power_sessions")
    op.drop_table("power_sessions")
    # PostgreSQL drops the column's CHECK with it; SQLite never had one.
    op.drop_column("campaigns", "dialing_mode")
