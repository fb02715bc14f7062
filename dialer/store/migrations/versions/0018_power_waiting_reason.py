"""power_sessions.waiting_reason and waiting_until: why nobody is dialed, as codes

``waiting_note`` holds that reason in English, as it was worded when it
happened; the codes let each page say it in its reader's language:
``list:<reason>`` (the list has no contact callable now) or
``refusal:<code>`` (the contact it offered was refused), and the time the
reason names (when the list opens again, when the refusal lifts).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("power_sessions", sa.Column("waiting_reason", sa.String(64), nullable=True))
    op.add_column(
        "power_sessions", sa.Column("waiting_until", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("power_sessions", "waiting_until")
    op.drop_column("power_sessions", "waiting_reason")
