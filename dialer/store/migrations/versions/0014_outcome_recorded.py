"""call_attempts.outcome_recorded_at: the outcome a volunteer owes, found at once

Before every call a volunteer starts, the call whose outcome they owe is
looked up.  That was a walk through all of the volunteer's calls, testing
each for a disposition: about 2,000 calls and as many index probes (15-25
ms) for a volunteer of a large campaign, on every click.  The call now
says when its outcome was recorded (``dialer.store.outcomes``, the only
writer of dispositions, keeps it), and a partial index holds only the
answered calls with no outcome recorded nor skipped: a handful.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As dialer.store.models.OUTCOME_OWED_SQL was when this was written.
_OWED = (
    "contact_answered_at IS NOT NULL AND outcome_recorded_at IS NULL AND outcome_skipped_at IS NULL"
)


def upgrade() -> None:
    # Not a batch on SQLite: rebuilding call_attempts would drop its counter
    # triggers (migration 0012).
    op.add_column(
        "call_attempts", sa.Column("outcome_recorded_at", sa.DateTime(timezone=True), nullable=True)
    )
    # The time of the call's disposition (one per call at most:
    # uq_dispositions_call_attempt_id), for the calls the owed-outcome index
    # could hold: answered and not skipped, about a quarter of all calls.
    # Dating every call would rewrite every row of the largest table, leaving
    # a heap twice its size that each scan (the results export's) then reads;
    # the calls left undated were never answered or were skipped, and read
    # the same to every query (none reads the date, only whether it is set
    # on a call that may owe an outcome).
    op.execute(
        "UPDATE call_attempts SET outcome_recorded_at = dispositions.created_at"
        " FROM dispositions WHERE dispositions.call_attempt_id = call_attempts.id"
        " AND call_attempts.contact_answered_at IS NOT NULL"
        " AND call_attempts.outcome_skipped_at IS NULL"
    )
    op.create_index(
        "ix_call_attempts_outcome_owed",
        "call_attempts",
        ["volunteer_id", "requested_at"],
        postgresql_where=sa.text(_OWED),
        sqlite_where=sa.text(_OWED),
    )


def downgrade() -> None:
    op.drop_index("ix_call_attempts_outcome_owed", table_name="call_attempts")
    op.drop_column("call_attempts", "outcome_recorded_at")
