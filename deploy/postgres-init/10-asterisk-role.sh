#!/bin/sh
# Run by the postgres image when its data volume is new: the role Asterisk
# reads the browser phones with (asterisk-config/res_pgsql.conf).  It may
# log in and nothing else; the dialer's migration 0013 grants it SELECT on
# the three ps_* views and on nothing else.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v password="$ASTERISK_DB_PASSWORD" <<'SQL'
CREATE ROLE asterisk LOGIN PASSWORD :'password';
SQL
