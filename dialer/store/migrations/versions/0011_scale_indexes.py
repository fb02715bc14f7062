"""contacts and lists indexes for millions of contacts

Search by name, email and digits of a number (trigrams), the tag filter
(jsonb), the contact list's order and filters, next-contact order and
the outcome a volunteer owes.
PostgreSQL gets the trigram, jsonb and NULLS FIRST indexes; SQLite (the
demo) has none of those and gets the plain ones.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# name, table, columns, partial-index condition (both dialects)
_PLAIN: list[tuple[str, str, list[str], str | None]] = [
    ("ix_contacts_support_score", "contacts", ["support_score"], None),
    (
        "ix_calling_list_contact_campaign",
        "calling_list_entries",
        ["contact_id", "campaign_id"],
        None,
    ),
    (
        "ix_calling_list_callbacks",
        "calling_list_entries",
        ["contact_id", "campaign_id", "callback_at"],
        "NOT done AND callback_at IS NOT NULL",
    ),
    ("ix_call_attempts_contact_requested", "call_attempts", ["contact_id", "requested_at"], None),
    # A volunteer's latest calls: the outcome they owe, before every next contact.
    (
        "ix_call_attempts_volunteer_requested",
        "call_attempts",
        ["volunteer_id", "requested_at"],
        None,
    ),
    ("ix_dispositions_contact_latest", "dispositions", ["contact_id", "created_at", "id"], None),
]

# PostgreSQL only: name, table, definition (as PostgreSQL prints it back).
_POSTGRESQL: list[tuple[str, str, str]] = [
    (
        "ix_contacts_full_name_trgm",
        "contacts",
        "USING gin (((first_name::text || ' '::text) || last_name::text) gin_trgm_ops)",
    ),
    ("ix_contacts_email_trgm", "contacts", "USING gin (lower(email::text) gin_trgm_ops)"),
    ("ix_contacts_tags", "contacts", "USING gin (((tags)::jsonb))"),
    (
        "ix_contact_phones_digits_trgm",
        "contact_phones",
        "USING gin (substr((e164)::text, 2) gin_trgm_ops)",
    ),
    (
        "ix_calling_list_next",
        "calling_list_entries",
        "(campaign_id, volunteer_id, callback_at, attempts, next_attempt_at NULLS FIRST, id)"
        " WHERE NOT done",
    ),
]


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name, table, columns, where in _PLAIN:
        condition: dict[str, Any] = (
            {"postgresql_where": sa.text(where), "sqlite_where": sa.text(where)} if where else {}
        )
        op.create_index(name, table, columns, unique=False, **condition)
    # What the contact list filters on rides along (PostgreSQL; SQLite has no
    # INCLUDE): walking the list in order then reads the index alone.
    op.create_index(
        "ix_contacts_name_order",
        "contacts",
        ["last_name", "first_name", "id"],
        unique=False,
        postgresql_include=["do_not_call", "support_score", "language", "tags"],
    )
    op.create_index(
        "ix_contacts_language",
        "contacts",
        ["language"],
        unique=False,
        postgresql_ops={"language": "varchar_pattern_ops"},
    )
    # Covered by ix_dispositions_contact_latest, which starts with contact_id.
    op.drop_index("ix_dispositions_contact_id", table_name="dispositions")
    if postgresql:
        # A trusted extension since PostgreSQL 13: the database's owner may create it.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for name, table, definition in _POSTGRESQL:
            # Our own constants, not anyone's input.
            op.execute(f"CREATE INDEX {name} ON {table} {definition}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, _table, _definition in reversed(_POSTGRESQL):
            op.execute(f"DROP INDEX IF EXISTS {name}")
        # pg_trgm stays: it may serve more than this revision's indexes.
    op.create_index("ix_dispositions_contact_id", "dispositions", ["contact_id"], unique=False)
    op.drop_index("ix_contacts_language", table_name="contacts")
    op.drop_index("ix_contacts_name_order", table_name="contacts")
    for name, table, _columns, _where in reversed(_PLAIN):
        op.drop_index(name, table_name=table)
