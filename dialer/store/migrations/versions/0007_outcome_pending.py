"""calls whose outcome is pending or skipped

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from dialer.domain.vocabulary import CONVERSATION_ENDS

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FK = "fk_call_attempts_outcome_skipped_by_id_users"


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.add_column(
        "call_attempts", sa.Column("outcome_skipped_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "call_attempts", sa.Column("outcome_skip_reason", sa.String(length=40), nullable=True)
    )
    op.add_column(
        "call_attempts", sa.Column("outcome_skip_note", sa.String(length=500), nullable=True)
    )
    if sqlite:
        # SQLite adds a constraint only by recreating the table (batch mode).
        with op.batch_alter_table("call_attempts") as batch:
            batch.add_column(sa.Column("outcome_skipped_by_id", sa.Integer(), nullable=True))
            batch.create_foreign_key(
                _FK, "users", ["outcome_skipped_by_id"], ["id"], ondelete="SET NULL"
            )
    else:
        op.add_column(
            "call_attempts", sa.Column("outcome_skipped_by_id", sa.Integer(), nullable=True)
        )
        op.create_foreign_key(
            _FK, "call_attempts", "users", ["outcome_skipped_by_id"], ["id"], ondelete="SET NULL"
        )
    # Answered calls that ended before this revision never asked for their
    # outcome: they are not left blocking their volunteers' next call.  The
    # calls are those the pending rule picks (outcome_owed, in
    # dialer.store.calls.pending_outcome_filter).
    # Our own enum's values, not anyone's input: safe to write into the SQL.
    ends = ", ".join(f"'{outcome.value}'" for outcome in sorted(CONVERSATION_ENDS))
    op.execute(
        "UPDATE call_attempts SET outcome_skipped_at = ended_at,"  # noqa: S608
        " outcome_skip_reason = 'before_upgrade'"
        f" WHERE state = 'ended' AND contact_answered_at IS NOT NULL AND outcome IN ({ends})"
        " AND NOT EXISTS (SELECT 1 FROM dispositions"
        " WHERE dispositions.call_attempt_id = call_attempts.id)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("call_attempts") as batch:
            batch.drop_column("outcome_skipped_by_id")
            batch.drop_column("outcome_skip_note")
            batch.drop_column("outcome_skip_reason")
            batch.drop_column("outcome_skipped_at")
        return
    op.drop_constraint(_FK, "call_attempts", type_="foreignkey")
    op.drop_column("call_attempts", "outcome_skipped_by_id")
    op.drop_column("call_attempts", "outcome_skip_note")
    op.drop_column("call_attempts", "outcome_skip_reason")
    op.drop_column("call_attempts", "outcome_skipped_at")
