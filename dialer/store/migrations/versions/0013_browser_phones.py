"""volunteer phones: desk, browser or own number, and the PJSIP objects Asterisk reads

``users.phone`` says what rings when the volunteer clicks Call: a desk
phone configured in Asterisk's files, the browser over WebRTC, or the
volunteer's own number dialed over the carrier trunk.  ``users.sip_secret``
holds the browser phone's generated SIP password; ``users.own_number`` the
own number, with who approved it and when.

On PostgreSQL three views give Asterisk's realtime (res_config_pgsql with
res_sorcery_realtime, see asterisk-config/sorcery.conf) one endpoint, auth
and AOR per active browser-phone user, named after their extension.  Views
rather than tables the dialer copies into: a user created, deactivated or
switched to a desk phone in the web app or the CLI is what Asterisk sees at
its next lookup, with nothing to keep in step and no reload.  The endpoint's
settings are the WebRTC template of asterisk-config/pjsip.conf written out,
since realtime objects cannot inherit from a template.

SQLite (the demo, on the AMI simulator) has no Asterisk to feed: no views.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_APPROVER_FK = "fk_users_own_number_approved_by_id_users"

# Who has a browser phone Asterisk should know.
_BROWSER_USERS = (
    "FROM users WHERE phone = 'browser' AND is_active"
    " AND sip_extension IS NOT NULL AND sip_secret IS NOT NULL"
)

VIEWS = {
    # Column names are PJSIP option names (pjsip.conf's [...](webrtc-endpoint)).
    "ps_endpoints": (
        "SELECT sip_extension::varchar(40) AS id,"
        " sip_extension::varchar(40) AS aors,"
        " sip_extension::varchar(40) AS auth,"
        " 'from-phones'::varchar(40) AS context,"
        " 'all'::varchar(200) AS disallow,"
        # Browsers speak G.711; so does the carrier leg: nothing is transcoded.
        " 'ulaw,alaw'::varchar(200) AS allow,"
        " 'yes'::varchar(3) AS webrtc,"
        " 'yes'::varchar(3) AS dtls_auto_generate_cert,"
        " 'rfc4733'::varchar(20) AS dtmf_mode,"
        " 'no'::varchar(3) AS direct_media,"
        " 'no'::varchar(3) AS allow_transfer,"
        " '1'::varchar(10) AS device_state_busy_at,"
        " '120'::varchar(10) AS rtp_timeout,"
        " ('\"Volunteer ' || sip_extension || '\" <' || sip_extension || '>')::varchar(100)"
        " AS callerid " + _BROWSER_USERS
    ),
    "ps_auths": (
        "SELECT sip_extension::varchar(40) AS id,"
        " 'userpass'::varchar(20) AS auth_type,"
        " sip_extension::varchar(40) AS username,"
        " sip_secret::varchar(64) AS password " + _BROWSER_USERS
    ),
    "ps_aors": (
        "SELECT sip_extension::varchar(40) AS id,"
        # One browser tab at a time: a newer tab's registration replaces the older.
        " '1'::varchar(10) AS max_contacts,"
        " 'yes'::varchar(3) AS remove_existing,"
        " '60'::varchar(10) AS minimum_expiration,"
        " '120'::varchar(10) AS default_expiration,"
        " '300'::varchar(10) AS maximum_expiration,"
        # A closed tab shows as Unavailable within this, and Call then fails at once.
        " '20'::varchar(10) AS qualify_frequency,"
        # Asterisk looks for AORs with static contacts at start; a browser has none.
        " NULL::varchar(255) AS contact " + _BROWSER_USERS
    ),
}


def _phone_type(*, checked: bool = True) -> sa.Enum:
    return sa.Enum(
        "desk",
        "browser",
        "own_number",
        name="volunteer_phone",
        native_enum=False,
        create_constraint=checked,
        length=32,
    )


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("phone", _phone_type(), nullable=False, server_default="desk"))
        batch.add_column(sa.Column("sip_secret", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("own_number", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("own_number_approved_by_id", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("own_number_approved_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.create_foreign_key(
            _APPROVER_FK, "users", ["own_number_approved_by_id"], ["id"], ondelete="SET NULL"
        )
    # The phone a session chose, and the one each call rang.
    with op.batch_alter_table("web_sessions") as batch:
        batch.add_column(sa.Column("phone", _phone_type(), nullable=True))
    # Not a batch on SQLite: rebuilding call_attempts would drop its counter
    # triggers (migration 0012); SQLite cannot add the CHECK without one.
    op.add_column("call_attempts", sa.Column("volunteer_phone", _phone_type(checked=not sqlite)))
    if not sqlite:
        for name, query in VIEWS.items():
            op.execute(f"CREATE VIEW {name} AS {query}")
        # The role Asterisk connects as (deploy/postgres-init), where it exists:
        # these views and nothing else.
        op.execute(
            "DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'asterisk') THEN"
            f" GRANT SELECT ON {', '.join(VIEWS)} TO asterisk; END IF; END $$"
        )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if not sqlite:
        for name in VIEWS:
            op.execute(f"DROP VIEW IF EXISTS {name}")
    # PostgreSQL drops the column's CHECK with it; SQLite never had one.
    op.drop_column("call_attempts", "volunteer_phone")
    with op.batch_alter_table("web_sessions") as batch:
        batch.drop_constraint("volunteer_phone", type_="check")
        batch.drop_column("phone")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("volunteer_phone", type_="check")
        batch.drop_constraint(_APPROVER_FK, type_="foreignkey")
        batch.drop_column("own_number_approved_at")
        batch.drop_column("own_number_approved_by_id")
        batch.drop_column("own_number")
        batch.drop_column("sip_secret")
        batch.drop_column("phone")
