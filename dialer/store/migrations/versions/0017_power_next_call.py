"""campaigns.power_next_call: when a power session dials its next contact

After an answered call, the next contact is dialed once its outcome is
recorded (``after_outcome``, the default), or as soon as the call ends
(``at_call_end``: the volunteer records it while the next one rings).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    # Not a batch on SQLite: rebuilding campaigns would drop its counter
    # trigger (0012); SQLite cannot add the CHECK without one.
    op.add_column(
        "campaigns",
        sa.Column(
            "power_next_call",
            sa.Enum(
                "after_outcome",
                "at_call_end",
                name="power_next_call",
                native_enum=False,
                create_constraint=not sqlite,
                length=32,
            ),
            nullable=False,
            server_default="after_outcome",
        ),
    )


def downgrade() -> None:
    # PostgreSQL drops the column's CHECK with it; SQLite never had one.
    op.drop_column("campaigns", "power_next_call")
