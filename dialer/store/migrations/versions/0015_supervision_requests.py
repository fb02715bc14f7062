"""supervision_requests: an organizer's listen, whisper or barge, for the worker

A web process takes the click; the worker of the call's PBX rings the
organizer's phone into ChanSpy.  As with hang-ups (0003), the request is a
row so that the two may be different processes and a worker restart does
not forget it.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "supervision_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("pbx", sa.String(length=100), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["users.id"],
            name=op.f("fk_supervision_requests_actor_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_supervision_requests")),
    )
    op.create_index(
        "ix_supervision_requests_waiting",
        "supervision_requests",
        ["pbx"],
        postgresql_where=sa.text("handled_at IS NULL"),
        sqlite_where=sa.text("handled_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_supervision_requests_waiting", table_name="supervision_requests")
    op.drop_table("supervision_requests")
