"""sign-in hardening: known devices, and failures counted per device

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "known_devices",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_known_devices_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", "user_id", name=op.f("pk_known_devices")),
    )
    op.create_index(
        op.f("ix_known_devices_last_used_at"), "known_devices", ["last_used_at"], unique=False
    )
    op.add_column("login_failures", sa.Column("device", sa.String(length=64), nullable=True))
    op.create_index(op.f("ix_login_failures_device"), "login_failures", ["device"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_login_failures_device"), table_name="login_failures")
    with op.batch_alter_table("login_failures") as batch:
        batch.drop_column("device")
    op.drop_index(op.f("ix_known_devices_last_used_at"), table_name="known_devices")
    op.drop_table("known_devices")
