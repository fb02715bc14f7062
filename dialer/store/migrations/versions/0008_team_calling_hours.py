"""per-team hours for manual calls

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# CallingHours()'s default, written out: a migration must not change when
# the model's default does.  Existing teams get it, so manual calls keep
# today's hours until an organizer sets their team's.
_DEFAULT_HOURS = {
    "weekday": {"start": "09:00:00", "end": "21:00:00"},
    "weekend": {"start": "10:00:00", "end": "18:00:00"},
}


def upgrade() -> None:
    with op.batch_alter_table("teams") as batch:
        batch.add_column(
            sa.Column(
                "calling_hours",
                sa.JSON(),
                nullable=False,
                server_default=sa.text(f"'{json.dumps(_DEFAULT_HOURS)}'"),
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("teams") as batch:
        batch.drop_column("calling_hours")
