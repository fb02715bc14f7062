"""Voter-file scale: millions of contacts, imported, searched and called.

Seeds its own PostgreSQL database (``dialer_scale`` by default) with 2 M
contacts, 50 campaigns and 500 volunteers: one team per campaign, every
contact on its district campaign's list and one in ten also on the statewide
campaign's (campaign 1), each entry assigned to a volunteer of the team, and
a realistic share of history: 35% of entries attempted (about 0.55 calls and
as many outcomes per entry), 10% done, 5% with a call-back (3% due), tags,
support scores, languages, 1% on the do-not-call list.  The seed is written
set-based in SQL at migration 0010 with the secondary indexes dropped and
foreign keys unchecked, then indexed; the later migrations (the scale
indexes, the dashboard counters) then run on the seeded rows, as on a
deployment's database, and their time is shown.

Then, in one run, it prints one table; each line has the issue's target and
whether it was met:

- import rows/s of a generated 1 M-row CSV, each into a fresh campaign of the
  seeded database and each in its own process (so the peak memory shown is
  that process's, and its workers'): the batch path (``bulk=False``), the bulk
  path (``bulk=True``), and two ceilings: raw ``COPY`` of the same file into a
  scratch table (the database's), and the bulk path's worker processes
  checking every row and writing its staging line with no database at all
  (the workers', on every core of the machine: the import can go no faster,
  since PostgreSQL's share of the cores comes on top);
- p50/p95 of the contact search (name fragments, digits) and of the filtered
  list (tags, score, language, never called, call-back due), as an
  administrator and as a volunteer of the statewide campaign's team (the
  largest scope a volunteer has), and of the whole contacts page
  (``ContactService.search_page``);
- p50/p95 of next-contact with 200 volunteers at once, each claiming the
  contact it is handed as a click does (``CallService.start_call`` commits the
  call request that the live-call unique index arbitrates), holding it for a
  think time, then hanging up.  The think time is 15 s, the shortest a real
  call can take (the contact's phone rings 15 s at least before a no-answer;
  an answered call takes a minute or more), so 200 volunteers ask for about
  13 contacts a second; then again at 5 s, three times that pace, shown
  without a target.  Half of them call from a teammate's list
  ("Others"), so two volunteers are often handed the same contact and the
  claim must refuse one; a contact held by two volunteers at once is a double
  claim, and that line must read 0;
- p50/p95 of the campaign dashboard, and the export rows/s of the campaign
  with the most calls (in its own process);
- the peak memory (max RSS) of every process: this one (it plays the web
  process), each import process and its workers, the export process.

It calls the services' public functions, with the engine and services built
as the app builds them (``dialer.runtime.bootstrap.build_runtime``), so it
measures whatever the code is when it runs.  After the imports the database
is put back as seeded: ``--reuse`` starts the next run from the same rows (and
seeds again when the migrations or the sizes changed).

Run: .venv/bin/python bench/scale.py              # the issue's sizes
     .venv/bin/python bench/scale.py --contacts 100000 --import-rows 50000 \\
         --campaigns 10 --volunteers 40 --concurrency 40 --duration 10 \\
         --import-timeout 30   # quick
     --reuse keeps the seeded database of an earlier run with the same sizes,
     --drop removes it at the end, --skip import,export leaves phases out.
The issue's sizes take about 15 minutes on a 2-core machine (seeding 2 M
contacts with the migrations after it about 2.5 of them; 11 with --reuse),
while an import slower than the target is cut at --import-timeout (240 s);
the quick one about 2.
Uses DIALER_TEST_PG (default postgres@127.0.0.1:5432).  A superuser seeds
faster (foreign keys are not checked row by row).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import itertools
import json
import multiprocessing
import os
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo

import asyncpg
from common import ALWAYS, PG_SERVER, percentile
from pydantic import SecretStr

from dialer.domain.compliance import (
    DEFAULT_BLOCKED_PREFIXES,
    CallRefused,
    DialingPolicy,
    RefusalCode,
)
from dialer.domain.survey import SurveyDefinition
from dialer.services.bulk_import import worker_count
from dialer.store import engine as db

# The child processes read the database's URL here rather than on their
# command line, where `ps` would show a password in it.
URL_ENV = "DIALER_SCALE_URL"
# The schema the seed's SQL is written for.  The migrations after it run on
# the seeded rows, as they would on a deployment's database.
SEED_REVISION = "0010"
# Bump when the seed's shape changes: --reuse then seeds again.
SEED_FORMAT = 1
SEED_MARK = "dialer bench/scale.py seed"
MIGRATIONS = Path(db.__file__).parent / "migrations" / "versions"
CALLER_ID = "+15145550100"
# The seed's numbers and the import file's are in different area codes: the
# imports add contacts, they do not merge into the seeded ones.
SEED_AREAS = ("514", "438", "450", "418", "819")
IMPORT_AREAS = ("604", "778", "416", "647", "613")
SEEDED_TABLES = (
    "users",
    "teams",
    "team_members",
    "campaigns",
    "contacts",
    "contact_phones",
    "calling_list_entries",
    "call_attempts",
    "dispositions",
)
COPY_TABLE = "bench_copy_ceiling"
# The import's ceilings, each measured in a child process: the job, and its memory line.
CEILINGS = {"copy": "raw COPY process", "checks": "workers-alone process"}

# The targets.
IMPORT_ROWS_S = 50_000
SEARCH_P95_MS = 150.0
NEXT_P95_MS = 20.0
DASHBOARD_P95_MS = 300.0
EXPORT_ROWS_S = 100_000
PROCESS_MB = 500.0

FIRST_NAMES = (
    "Marie", "Jean", "Louise", "Pierre", "Nathalie", "Michel", "Sophie", "François",
    "Isabelle", "Luc", "Julie", "André", "Émilie", "Denis", "Chantal", "Marc",
    "Geneviève", "Alain", "Caroline", "Daniel", "Sylvie", "Patrick", "Ginette", "Yves",
    "Ada", "Alan", "Grace", "Tommy", "Fatima", "Wei", "Priya", "Omar", "Amina",
    "David", "Sarah", "James", "Emma", "Olivia", "Liam", "Noah", "Chloé", "Gabriel",
    "Léa", "Thomas", "Camille", "Hugo", "Zoé", "Mohamed", "Yasmine", "Karim",
    "Mei", "Hiroshi", "Ana", "Carlos", "Sofia", "Mateo", "Ivan", "Olga", "Kwame", "Aïcha",
)  # fmt: skip
# Last names are a prefix and a suffix: 900 of them, some real, most plausible.
LAST_PREFIXES = (
    "Tremb", "Gau", "Bou", "Lav", "Pel", "Gag", "Côt", "Mor", "Ber", "Four",
    "Dub", "Lef", "Roy", "Ouel", "Chou", "Lap", "Bél", "Mar", "Ste", "Har",
    "Mac", "O'Br", "Nguy", "Sing", "Che", "Wil", "Rob", "Tho", "And", "Kow",
)  # fmt: skip
LAST_SUFFIXES = (
    "lay", "thier", "chard", "oie", "letier", "non", "é", "in", "geron", "nier",
    "ois", "ebvre", "ier", "lette", "inard", "ointe", "anger", "tin", "wart", "ris",
    "donald", "ien", "en", "h", "ng", "son", "ertson", "mpson", "erson", "alski",
)  # fmt: skip
TAGS = ("donor", "member", "volunteer", "gotv", "sign", "youth")


# -- sizes, numbers and the seed's SQL ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Sizes:
    contacts: int
    campaigns: int
    volunteers: int

    def team_size(self, team: int) -> int:
        """Members of 0-based ``team``: volunteer v (0-based) is in team v % campaigns."""
        return (self.volunteers - team + self.campaigns - 1) // self.campaigns


def dialable_exchanges() -> list[str]:
    """Exchanges whose numbers the default dialing policy lets through in every area used.

    The calling lists skip numbers the policy refuses; a seed full of them
    would measure empty lists.
    """
    policy = DialingPolicy.parse(["CA"], DEFAULT_BLOCKED_PREFIXES)
    return [
        str(exchange)
        for exchange in range(200, 1000)
        if all(
            policy.check(f"+1{area}{exchange}4821") is None for area in (*SEED_AREAS, *IMPORT_AREAS)
        )
    ]


def number_of(k: int, areas: Sequence[str], exchanges: Sequence[str]) -> str:
    """The k-th number of ``areas`` (one-to-one below len(areas) * len(exchanges) * 10000).

    Mirrors :func:`sql_number`, so the bench can search for seeded numbers.
    """
    m, area = divmod(k, len(areas))
    return f"+1{areas[area]}{exchanges[(m // 10000) % len(exchanges)]}{m % 10000:04d}"


def sql_number(k: str) -> str:
    """:func:`number_of` in SQL, with the areas as $2 and the exchanges as $3."""
    return (
        f"'+1' || ($2::text[])[1 + ({k}) % cardinality($2::text[])]"
        f" || ($3::text[])[1 + ({k}) / cardinality($2::text[]) / 10000"
        f" % cardinality($3::text[])]"
        f" || lpad((({k}) / cardinality($2::text[]) % 10000)::text, 4, '0')"
    )


def mix(value: str, salt: int) -> str:
    """A non-negative pseudo-random bigint of ``value`` (SQL), one stream per salt."""
    return f"(hashint8extended(({value})::bigint, {salt}) & 9223372036854775807)"


def people_sql(
    sizes: Sizes, now: datetime, hours: str, survey: str
) -> list[tuple[str, Sequence[Any]]]:
    """Users (an administrator, then the volunteers), teams, members, campaigns."""
    return [
        (
            "INSERT INTO users (id, username, display_name, role, password_hash, is_active,"
            " created_at) VALUES (1, 'bench-admin', 'Bench administrator', 'admin', 'x', true,"
            " $1)",
            (now,),
        ),
        (
            "INSERT INTO users (id, username, display_name, role, password_hash, sip_extension,"
            " is_active, created_at)"
            " SELECT 2 + v, 'vol' || lpad(v::text, 5, '0'), 'Volunteer ' || v, 'volunteer', 'x',"
            " (30000 + v)::text, true, $2 FROM generate_series(0, $1::int - 1) AS v",
            (sizes.volunteers, now),
        ),
        (
            "INSERT INTO teams (id, name, created_at, calling_hours)"
            " SELECT t + 1, 'Team ' || (t + 1), $2, $3::json"
            " FROM generate_series(0, $1::int - 1) AS t",
            (sizes.campaigns, now, hours),
        ),
        (
            "INSERT INTO team_members (team_id, user_id, joined_at)"
            " SELECT 1 + v % $2::int, 2 + v, $3 FROM generate_series(0, $1::int - 1) AS v",
            (sizes.volunteers, sizes.campaigns, now),
        ),
        (
            "INSERT INTO campaigns (id, title, brief, team_id, status, allowed_caller_ids,"
            " calling_hours, max_attempts, retry_delay_minutes, survey, created_by_id, created_at)"
            " SELECT t + 1, CASE WHEN t = 0 THEN 'Statewide and district 1'"
            " ELSE 'District ' || (t + 1) END, '', t + 1, 'active', '[]', $3::json, 3, 240,"
            " $4::json, 1, $2::timestamptz - interval '30 days'"
            " FROM generate_series(0, $1::int - 1) AS t",
            (sizes.campaigns, now, hours, survey),
        ),
    ]


# $1 contacts, $2 first names, $3 last-name prefixes, $4 suffixes, $5 campaigns, $6 seed time.
CONTACTS_SQL = f"""
INSERT INTO contacts (id, first_name, last_name, email, language, area, tags, support_score,
                      do_not_call, dnc_reason, dnc_at, notes, created_at, updated_at)
SELECT i, first, last,
       CASE WHEN h3 % 10 < 6 THEN lower(first || '.' || last) || i || '@example.org' END,
       CASE WHEN h4 % 100 < 44 THEN 'fr' WHEN h4 % 100 < 46 THEN 'fr-CA'
            WHEN h4 % 100 < 90 THEN 'en' WHEN h4 % 100 < 94 THEN 'es' END,
       'District ' || (1 + (i - 1)::bigint * $5::int / $1::int),
       to_json(array_remove(ARRAY[
           CASE WHEN h5 % 10 = 0 THEN 'donor' END,
           CASE WHEN h5 / 10 % 7 = 0 THEN 'member' END,
           CASE WHEN h5 / 70 % 20 = 0 THEN 'volunteer' END,
           CASE WHEN h5 / 1400 % 10 < 3 THEN 'gotv' END,
           CASE WHEN h5 / 14000 % 12 = 0 THEN 'sign' END,
           CASE WHEN h5 / 168000 % 8 = 0 THEN 'youth' END], NULL)),
       CASE WHEN h6 % 10 >= 5 THEN 1 + h6 % 5 END,
       h7 % 100 = 0,
       CASE WHEN h7 % 100 = 0 THEN 'asked not to be called' END,
       CASE WHEN h7 % 100 = 0 THEN $6::timestamptz - make_interval(days => (h7 % 300)::int) END,
       '',
       $6::timestamptz - make_interval(days => (h8 % 365)::int),
       $6::timestamptz - make_interval(days => (h8 % 365)::int)
FROM (SELECT i,
             ($2::text[])[1 + {mix("i", 1)} % cardinality($2::text[])] AS first,
             ($3::text[])[1 + {mix("i", 2)} % cardinality($3::text[])]
               || ($4::text[])[1 + {mix("i", 2)} / 1000 % cardinality($4::text[])] AS last,
             {mix("i", 3)} AS h3, {mix("i", 4)} AS h4, {mix("i", 5)} AS h5,
             {mix("i", 6)} AS h6, {mix("i", 7)} AS h7, {mix("i", 8)} AS h8
      FROM generate_series(1, $1::int) AS i) AS s
"""

# $1 contacts, $2 areas, $3 exchanges, $4 seed time.  Phone i is contact i's
# first number; 8% of contacts have a second one (numbers N+1.. of the areas).
PHONES_SQL = f"""
INSERT INTO contact_phones (id, contact_id, e164, phone_type, wrong_number, do_not_call,
                            created_at)
SELECT i, i, {sql_number("i")},
       CASE WHEN {mix("i", 20)} % 3 = 0 THEN 'landline' ELSE 'mobile' END,
       {mix("i", 20)} % 200 = 7, {mix("i", 20)} % 500 = 3, $4::timestamptz
FROM generate_series(1, $1::int) AS i
UNION ALL
SELECT $1::int + i, i, {sql_number("$1::int + i")}, 'work', false, false, $4::timestamptz
FROM generate_series(1, $1::int) AS i
WHERE {mix("i", 21)} % 100 < 8
"""

# $1 contacts, $2 campaigns, $3 volunteers, $4 seed time.  Contact i is on
# district campaign 1 + (i-1)*C/N (contiguous blocks), and one in ten also
# on campaign 1, the statewide one; each entry goes to a member of the
# campaign's team.  States by s (per mille): 0-649 never called, 650-849
# being retried, 850-949 done, 950-979 call-back due, 980-999 call-back later.
ENTRIES_SQL = f"""
INSERT INTO calling_list_entries (campaign_id, contact_id, volunteer_id, attempts,
                                  last_attempt_at, next_attempt_at, callback_at, done,
                                  assigned_at)
SELECT t + 1, i,
       2 + t + $2::int * ({mix("i", 13)} % (($3::int - t + $2::int - 1) / $2::int)),
       attempts, last_at, last_at + interval '240 minutes', callback_at,
       s >= 850 AND s < 950, $4::timestamptz - interval '30 days'
FROM (SELECT i, t, s,
             CASE WHEN s < 650 THEN 0 WHEN s < 850 THEN 1 + s % 2
                  WHEN s < 950 THEN 1 + s % 3 ELSE 1 END AS attempts,
             CASE WHEN s < 650 THEN NULL
                  WHEN s < 950 THEN $4::timestamptz - make_interval(mins => (r % 43200)::int)
                  WHEN s < 980 THEN $4::timestamptz - make_interval(hours => 24 + (r % 48)::int)
                  ELSE $4::timestamptz - interval '1 day' END AS last_at,
             CASE WHEN s >= 950 AND s < 980
                       THEN $4::timestamptz - make_interval(hours => (r % 48)::int)
                  WHEN s >= 980
                       THEN $4::timestamptz + make_interval(hours => 1 + (r % 72)::int)
             END AS callback_at
      FROM (SELECT i, t, {mix("i::bigint * 64 + t", 11)} % 1000 AS s,
                   {mix("i::bigint * 64 + t", 12)} AS r
            FROM (SELECT i, ((i - 1)::bigint * $2::int / $1::int)::int AS t
                  FROM generate_series(1, $1::int) AS i
                  UNION ALL
                  SELECT i, 0 FROM generate_series(10, $1::int, 10) AS i
                  WHERE $2::int > 1 AND (i - 1)::bigint * $2::int / $1::int <> 0) AS listed
           ) AS drawn
     ) AS entries
"""

# $1 which half of the campaigns (campaign_id % 2), $2 caller ID.  One call
# per attempt, a day apart, the last at last_attempt_at; the last call of a
# done or call-back entry was answered, the others were not.
CALLS_SQL = f"""
INSERT INTO call_attempts (call_id, campaign_id, contact_id, phone_id, number_e164,
                           volunteer_id, caller_id, pbx, state, outcome, needs_review,
                           requested_at, volunteer_answered_at, contact_answered_at, ended_at,
                           dial_status, updated_at)
SELECT 's' || e.id || '-' || j, e.campaign_id, e.contact_id, p.id, p.e164, e.volunteer_id,
       $2::text, 'default', 'ended', outcome, false,
       at, at + interval '5 seconds',
       CASE WHEN outcome = 'completed' THEN at + interval '20 seconds' END,
       at + CASE WHEN outcome = 'completed' THEN make_interval(secs => (80 + h % 540)::float8)
                 ELSE interval '35 seconds' END,
       CASE outcome WHEN 'completed' THEN 'ANSWER' WHEN 'contact_busy' THEN 'BUSY'
                    ELSE 'NOANSWER' END,
       at + interval '10 minutes'
FROM calling_list_entries AS e
JOIN contact_phones AS p ON p.id = e.contact_id
CROSS JOIN LATERAL generate_series(1, e.attempts) AS j
CROSS JOIN LATERAL (
    SELECT e.last_attempt_at - make_interval(days => e.attempts - j) AS at,
           {mix("e.id::bigint * 4 + j", 22)} AS h) AS drawn
CROSS JOIN LATERAL (
    SELECT CASE WHEN j = e.attempts AND (e.done OR e.callback_at IS NOT NULL) THEN 'completed'
                WHEN drawn.h % 10 < 7 THEN 'contact_no_answer'
                ELSE 'contact_busy' END AS outcome) AS ended
WHERE e.attempts > 0 AND e.campaign_id % 2 = $1::int
"""

# $1 which half of the campaigns.  Every seeded call has its outcome: an
# answered one the volunteer's, the others the automatic "absent".  (An
# answered call without one would hold its volunteer "wrapping up".)
DISPOSITIONS_SQL = f"""
INSERT INTO dispositions (submission_id, call_attempt_id, contact_id, campaign_id, volunteer_id,
                          outcome, consent, survey_answers, comments, mobilized, support_score,
                          callback_at, created_at)
SELECT 'seed-' || c.id, c.id, c.contact_id, c.campaign_id, c.volunteer_id, d.outcome,
       CASE WHEN d.outcome = 'answered' THEN h % 10 < 7 END,
       '{{}}'::json,
       CASE WHEN d.outcome = 'answered' AND h % 4 = 0 THEN 'Wants a lawn sign' ELSE '' END,
       CASE WHEN d.outcome = 'answered' THEN h % 10 < 3 END,
       CASE WHEN d.outcome IN ('answered', 'refused') THEN 1 + h % 5 END,
       CASE WHEN d.outcome = 'call_back_later' THEN e.callback_at END,
       c.ended_at
FROM call_attempts AS c
JOIN calling_list_entries AS e ON e.campaign_id = c.campaign_id AND e.contact_id = c.contact_id
CROSS JOIN LATERAL (SELECT {mix("c.id", 31)} AS h) AS drawn
CROSS JOIN LATERAL (
    SELECT CASE WHEN c.outcome <> 'completed' THEN 'absent'
                WHEN e.callback_at IS NOT NULL AND NOT e.done THEN 'call_back_later'
                WHEN h % 10 < 6 THEN 'answered' ELSE 'refused' END AS outcome) AS d
WHERE c.campaign_id % 2 = $1::int
"""

SECONDARY_INDEXES_SQL = """
SELECT c.relname, pg_get_indexdef(i.indexrelid)
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indexrelid
JOIN pg_class AS t ON t.oid = i.indrelid
WHERE t.relname = ANY($1::text[]) AND t.relnamespace = 'public'::regnamespace
  AND NOT EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conindid = i.indexrelid)
"""


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def asyncpg_dsn(database: str) -> str:
    return f"postgresql://{PG_SERVER}/{database}"


def app_url(database: str) -> str:
    return f"postgresql+asyncpg://{PG_SERVER}/{database}"


def say(message: str) -> None:
    """Progress, on stderr: the table alone goes to stdout."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def migrations_fingerprint() -> str:
    """The migrations the seed's SQL is written for; a reused seed is brought
    up to the newer ones, as a deployment's database would be."""
    digest = hashlib.sha256()
    for path in sorted(MIGRATIONS.glob("*.py")):
        if path.name[:4].isdigit() and path.name[:4] > SEED_REVISION:
            continue
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def seed_identity(sizes: Sizes, exchanges: Sequence[str]) -> dict[str, Any]:
    """What a reusable seed must match: its shape, its sizes, the migrations it went through."""
    return {
        "mark": SEED_MARK,
        "format": SEED_FORMAT,
        "contacts": sizes.contacts,
        "campaigns": sizes.campaigns,
        "volunteers": sizes.volunteers,
        "exchanges": hashlib.sha256(",".join(exchanges).encode()).hexdigest()[:16],
        "migrations": migrations_fingerprint(),
    }


async def seed_marker(database: str) -> dict[str, Any] | None:
    """The seed's identity stored on ``database`` (its comment); None when it is not the bench's."""
    admin = await asyncpg.connect(asyncpg_dsn("postgres"))
    try:
        comment = await admin.fetchval(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            database,
        )
    finally:
        await admin.close()
    if not comment:
        return None
    try:
        marker = json.loads(comment)
    except ValueError:
        return None
    return marker if isinstance(marker, dict) and marker.get("mark") == SEED_MARK else None


async def database_exists(database: str) -> bool:
    admin = await asyncpg.connect(asyncpg_dsn("postgres"))
    try:
        return bool(await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database))
    finally:
        await admin.close()


async def drop_database(database: str) -> None:
    admin = await asyncpg.connect(asyncpg_dsn("postgres"))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {quoted(database)} WITH (FORCE)")
    finally:
        await admin.close()


@dataclass(slots=True)
class Seeded:
    seconds: float = 0.0
    reused: bool = False
    upgrade_seconds: float = 0.0
    rows: dict[str, int] = field(default_factory=dict)
    steps: list[tuple[str, float]] = field(default_factory=list)
    # The largest id of each seeded table: anything above came after the seed.
    watermarks: dict[str, int] = field(default_factory=dict)


async def prepare_database(
    database: str, sizes: Sizes, exchanges: list[str], *, reuse: bool
) -> Seeded:
    identity = seed_identity(sizes, exchanges)
    if await database_exists(database):
        marker = await seed_marker(database)
        if marker is None:
            raise SystemExit(
                f"database {database} exists and was not seeded by this bench: "
                "refusing to drop it (name another with --database)"
            )
        stored = {key: marker.get(key) for key in identity}
        if reuse and stored == identity:
            say(f"reusing the seed in {database}")
            before = await schema_revision(database)
            await db.upgrade_async(app_url(database))
            if await schema_revision(database) != before:
                # Autovacuum would clean up after a migration that rewrote
                # rows; the bench cannot count on it being on.
                await vacuum(database, SEEDED_TABLES)
            return Seeded(
                reused=True,
                rows={str(k): int(v) for k, v in marker.get("rows", {}).items()},
                watermarks={str(k): int(v) for k, v in marker.get("watermarks", {}).items()},
            )
        if reuse:
            changed = sorted(key for key in identity if stored[key] != identity[key])
            say(f"the seed in {database} differs ({', '.join(changed)}): seeding again")
        await drop_database(database)
    admin = await asyncpg.connect(asyncpg_dsn("postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {quoted(database)}")
    finally:
        await admin.close()
    # Marked at once: a seed cut short is the bench's to drop next time.
    await mark_seed(database, {"mark": SEED_MARK, "complete": False})
    seeded = await seed(database, sizes, exchanges)
    await mark_seed(database, {**identity, "rows": seeded.rows, "watermarks": seeded.watermarks})
    return seeded


async def schema_revision(database: str) -> str:
    connection = await asyncpg.connect(asyncpg_dsn(database))
    try:
        return str(await connection.fetchval("SELECT version_num FROM alembic_version"))
    finally:
        await connection.close()


async def mark_seed(database: str, marker: dict[str, Any]) -> None:
    literal = json.dumps(marker).replace("'", "''")
    admin = await asyncpg.connect(asyncpg_dsn("postgres"))
    try:
        await admin.execute(f"COMMENT ON DATABASE {quoted(database)} IS '{literal}'")
    finally:
        await admin.close()


async def _seeding_connection(dsn: str) -> tuple[Any, bool]:
    connection = await asyncpg.connect(dsn)
    await connection.execute("SET maintenance_work_mem = '512MB'")
    await connection.execute("SET work_mem = '64MB'")
    try:
        # Foreign keys are triggers; as a replica they are not checked row by
        # row (the seed is consistent by construction).  Superusers only.
        await connection.execute("SET session_replication_role = replica")
        unchecked = True
    except asyncpg.PostgresError:
        unchecked = False
    return connection, unchecked


async def seed(database: str, sizes: Sizes, exchanges: list[str]) -> Seeded:
    capacity = len(SEED_AREAS) * len(exchanges) * 10000
    if 2 * sizes.contacts >= capacity:
        raise SystemExit(f"at most {capacity // 2} contacts")
    started = time.perf_counter()
    seeded = Seeded()
    url = app_url(database)
    say(f"migrating {database} to {SEED_REVISION}")
    await db.upgrade_async(url, SEED_REVISION)
    dsn = asyncpg_dsn(database)
    # Two connections: the machine has two cores, and the server one per connection.
    first, unchecked = await _seeding_connection(dsn)
    second, _ = await _seeding_connection(dsn)
    if not unchecked:
        say("not a superuser: foreign keys are checked row by row (slower)")
    now = datetime.now(UTC)
    survey = json.dumps(SurveyDefinition().model_dump(mode="json"))
    hours = json.dumps(ALWAYS.to_json())

    async def step(name: str, work: Awaitable[Any]) -> None:
        began = time.perf_counter()
        await work
        seeded.steps.append((name, time.perf_counter() - began))
        say(f"  {name}: {time.perf_counter() - began:.1f} s")

    async def run(connection: Any, *statements: tuple[str, Sequence[Any]]) -> None:
        for statement, arguments in statements:
            await connection.execute(statement, *arguments)

    try:
        dropped = await first.fetch(SECONDARY_INDEXES_SQL, list(SEEDED_TABLES))
        for name, _definition in dropped:
            await first.execute(f"DROP INDEX {quoted(name)}")
        say(f"seeding {sizes.contacts:,} contacts (secondary indexes dropped: {len(dropped)})")
        people = people_sql(sizes, now, hours, survey)
        names = (list(FIRST_NAMES), list(LAST_PREFIXES), list(LAST_SUFFIXES))
        await step(
            "users, teams, campaigns, contacts || phones, list entries",
            asyncio.gather(
                run(
                    first,
                    *people,
                    (CONTACTS_SQL, (sizes.contacts, *names, sizes.campaigns, now)),
                ),
                run(
                    second,
                    (PHONES_SQL, (sizes.contacts, list(SEED_AREAS), exchanges, now)),
                    (ENTRIES_SQL, (sizes.contacts, sizes.campaigns, sizes.volunteers, now)),
                ),
            ),
        )
        await step(
            "call attempts",
            asyncio.gather(
                first.execute(CALLS_SQL, 0, CALLER_ID), second.execute(CALLS_SQL, 1, CALLER_ID)
            ),
        )
        await step(
            "outcomes",
            asyncio.gather(first.execute(DISPOSITIONS_SQL, 0), second.execute(DISPOSITIONS_SQL, 1)),
        )
        for table in SEEDED_TABLES:
            if table == "team_members":
                continue
            await first.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" coalesce((SELECT max(id) FROM {table}), 1),"
                f" (SELECT max(id) IS NOT NULL FROM {table}))"
            )
        definitions = [definition for _name, definition in dropped]

        async def build(connection: Any, share: list[str]) -> None:
            for definition in share:
                await connection.execute(definition)

        await step(
            f"{len(definitions)} secondary indexes",
            asyncio.gather(build(first, definitions[0::2]), build(second, definitions[1::2])),
        )
    finally:
        await first.close()
        await second.close()
    say(f"migrating {database} from {SEED_REVISION} to head on the seeded rows")
    began = time.perf_counter()
    await db.upgrade_async(url)
    seeded.upgrade_seconds = time.perf_counter() - began
    seeded.steps.append((f"migrations after {SEED_REVISION}", seeded.upgrade_seconds))
    say(f"  migrations: {seeded.upgrade_seconds:.1f} s")
    await step("vacuum and analyze", vacuum(database, list(SEEDED_TABLES)))
    connection = await asyncpg.connect(dsn)
    try:
        for table in SEEDED_TABLES:
            seeded.rows[table] = int(await connection.fetchval(f"SELECT count(*) FROM {table}"))
            if table != "team_members":
                seeded.watermarks[table] = int(
                    await connection.fetchval(f"SELECT coalesce(max(id), 0) FROM {table}")
                )
    finally:
        await connection.close()
    seeded.seconds = time.perf_counter() - started
    return seeded


async def vacuum(database: str, tables: Sequence[str]) -> None:
    """VACUUM (ANALYZE) ``tables`` on two connections: a deployment's tables are vacuumed."""
    queue = list(tables)

    async def lane() -> None:
        connection = await asyncpg.connect(asyncpg_dsn(database))
        try:
            await connection.execute("SET maintenance_work_mem = '512MB'")
            while queue:
                await connection.execute(f"VACUUM (ANALYZE) {queue.pop(0)}")
        finally:
            await connection.close()

    await asyncio.gather(lane(), lane())


async def server_setting(database: str, name: str) -> str:
    """A PostgreSQL setting, as SHOW gives it: the searches' times depend on
    how much of the contacts' tables and indexes ``shared_buffers`` holds."""
    connection = await asyncpg.connect(asyncpg_dsn(database))
    try:
        return str(await connection.fetchval("SELECT current_setting($1)", name))
    finally:
        await connection.close()


async def restore(database: str, seeded: Seeded) -> int:
    """Put the database back as seeded: no live call, no campaign or contact added since.

    The calls and outcomes the bench made through the services stay (they
    are the product's own rows).  Returns how many contacts were removed.
    """
    connection = await asyncpg.connect(asyncpg_dsn(database))
    try:
        await connection.execute(f"DROP TABLE IF EXISTS {COPY_TABLE}")
        await connection.execute(
            "UPDATE call_attempts SET state = 'ended', outcome = 'hung_up_by_volunteer',"
            " failure_reason = 'bench stopped', ended_at = now(), updated_at = now()"
            " WHERE state <> 'ended'"
        )
        # In the normal role: deleting a campaign cascades to its list.
        await connection.execute(
            "DELETE FROM campaigns WHERE id > $1", seeded.watermarks.get("campaigns", 0)
        )
        mark = seeded.watermarks.get("contacts", 0)
        if not await connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM contacts WHERE id > $1)", mark
        ):
            return 0
        referencing = await connection.fetch(
            "SELECT c.conrelid::regclass::text, a.attname FROM pg_constraint AS c"
            " JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
            " WHERE c.contype = 'f' AND c.confrelid = 'contacts'::regclass"
        )
        # The tables pointing at contacts mostly have no index leading with
        # contact_id: each cascade would scan them once per contact.  One
        # DELETE per table instead, with the foreign keys off.
        async with connection.transaction():
            await connection.execute("SET LOCAL session_replication_role = replica")
            for table, column in referencing:
                await connection.execute(
                    f"DELETE FROM {quoted(table)} WHERE {quoted(column)} > $1", mark
                )
            removed = int(
                (await connection.execute("DELETE FROM contacts WHERE id > $1", mark)).split()[-1]
            )
    finally:
        await connection.close()
    await vacuum(database, ["contacts", "contact_phones", "calling_list_entries"])
    return removed


# -- the table ----------------------------------------------------------------------


@dataclass(slots=True)
class Line:
    section: str
    what: str
    count: str = ""
    value: str = ""
    p95: str = ""
    target: str = ""
    verdict: str = ""


@dataclass(slots=True)
class Table:
    lines: list[Line] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def latency(
        self, section: str, what: str, samples: Sequence[float], target_ms: float | None
    ) -> None:
        if not samples:
            self.lines.append(Line(section, what, "0", "no sample", "", "", "n/a"))
            return
        p50, p95 = percentile(samples, 0.5), percentile(samples, 0.95)
        self.lines.append(
            Line(
                section,
                what,
                f"{len(samples):,}",
                f"{p50:,.1f} ms",
                f"{p95:,.1f} ms",
                "" if target_ms is None else f"p95 < {target_ms:,.0f} ms",
                "" if target_ms is None else ("pass" if p95 < target_ms else "MISS"),
            )
        )

    def rate(
        self, section: str, what: str, rows: int, seconds: float, target: float | None
    ) -> None:
        rate = rows / seconds if seconds > 0 else 0.0
        self.lines.append(
            Line(
                section,
                what,
                f"{rows:,}",
                f"{rate:,.0f} rows/s",
                f"{seconds:,.1f} s",
                "" if target is None else f">= {target:,.0f} rows/s",
                "" if target is None else ("pass" if rate >= target else "MISS"),
            )
        )

    def memory(self, what: str, kilobytes: int) -> None:
        megabytes = kilobytes / 1024
        self.lines.append(
            Line(
                "memory",
                what,
                "",
                f"{megabytes:,.0f} MB",
                "",
                f"< {PROCESS_MB:,.0f} MB",
                "pass" if megabytes < PROCESS_MB else "MISS",
            )
        )

    def info(
        self, section: str, what: str, value: str, target: str = "", verdict: str = ""
    ) -> None:
        self.lines.append(Line(section, what, "", value, "", target, verdict))

    def failed(self, section: str, what: str, error: BaseException) -> None:
        message = f"{type(error).__name__}: {error}".splitlines()[0][:60]
        self.lines.append(Line(section, what, "", "error", "", "", message))

    def render(self) -> str:
        header = Line("", "what", "n", "p50 / value", "p95 / time", "target", "")
        widths = [
            max(len(getattr(line, name)) for line in [header, *self.lines])
            for name in ("section", "what", "count", "value", "p95", "target")
        ]
        out = []
        for index, line in enumerate([header, *self.lines]):
            out.append(
                f"{line.section:<{widths[0]}}  {line.what:<{widths[1]}}  "
                f"{line.count:>{widths[2]}}  {line.value:>{widths[3]}}  "
                f"{line.p95:>{widths[4]}}  {line.target:<{widths[5]}}  {line.verdict}".rstrip()
            )
            if index == 0:
                out.append("-" * len(out[0]))
        out.extend(f"  {note}" for note in self.notes)
        return "\n".join(out)


def peak_rss_kb() -> int:
    """This process's peak resident memory, in kB.

    VmHWM rather than getrusage: a child started by vfork (as subprocess
    does) inherits its parent's peak in ru_maxrss, whatever it used itself.
    """
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# -- child processes: the imports, the COPY ceiling, the export ---------------------


@dataclass(slots=True)
class ImportProgress:
    rows: int = 0
    started: float = 0.0

    def add(self, rows: int) -> None:
        self.rows += rows


def child_main(args: argparse.Namespace) -> None:
    """One measured job in this process; writes its numbers as JSON to ``args.result``."""
    url = os.environ[URL_ENV]
    result_path = Path(args.result)
    progress = ImportProgress(started=time.perf_counter())

    def write(result: dict[str, Any]) -> None:
        result["rss_kb"] = peak_rss_kb()
        # Worker processes the job started and waited for: the largest of them.
        result["children_rss_kb"] = int(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        result_path.write_text(json.dumps(result), encoding="utf-8")

    def stopped(_signal: int, _frame: object) -> None:
        # Out of time (--import-timeout): how far it got is the measure.
        seconds = time.perf_counter() - progress.started
        write({"rows": progress.rows, "seconds": seconds, "partial": True})
        os._exit(0)

    signal.signal(signal.SIGTERM, stopped)
    if args.child == "export":
        # Where the CLI writes a file or stdout: only the rows' cost, not the disk's.
        with open(os.devnull, "wb") as sink:
            result = asyncio.run(child_export(url, args.campaign, sink))
    elif args.child == "copy":
        result = asyncio.run(child_copy(url, Path(args.csv)))
    elif args.child == "checks":
        result = child_checks(Path(args.csv))
    else:
        result = asyncio.run(child_import(url, Path(args.csv), args.campaign, args.bulk, progress))
    write(result)


async def child_import(
    url: str, path: Path, campaign_id: int, bulk: str, progress: ImportProgress
) -> dict[str, Any]:
    from dialer.services.importer import import_contacts

    async with db.open_database(url) as sessions:
        progress.started = started = time.perf_counter()
        report = await import_contacts(
            sessions,
            path,
            region="CA",
            campaign_id=campaign_id,
            progress=progress.add,
            bulk=bulk == "true",
        )
        seconds = time.perf_counter() - started
    return {
        "rows": report.rows,
        "seconds": seconds,
        "imported": report.imported,
        "rejected": report.rejected,
        "added_to_list": report.added_to_list,
    }


async def child_copy(url: str, path: Path) -> dict[str, Any]:
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            f"CREATE TABLE {COPY_TABLE} (first_name text, last_name text, phone text,"
            " email text, language text, tags text, pointage int)"
        )
        started = time.perf_counter()
        await connection.copy_to_table(COPY_TABLE, source=str(path), format="csv", header=True)
        seconds = time.perf_counter() - started
        rows = int(await connection.fetchval(f"SELECT count(*) FROM {COPY_TABLE}"))
        await connection.execute(f"DROP TABLE {COPY_TABLE}")
    finally:
        await connection.close()
    return {"rows": rows, "seconds": seconds}


def child_checks(path: Path) -> dict[str, Any]:
    """The bulk path's worker processes alone, on the whole file, with no database:
    its reader hands every batch to the same pool, which checks the rows
    (phonenumbers) and writes their staging lines.  The import can go no
    faster than this on the machine however little PostgreSQL takes, since
    PostgreSQL's share of the cores is on top of it."""
    from concurrent.futures import Future, ProcessPoolExecutor

    from dialer.domain import i18n
    from dialer.services import bulk_import, importer

    # The bulk path's own worker set-up and job (module-private: this is
    # that path with the database left out, not a second implementation).
    with path.open("rb") as stream:
        parsed = importer.parse_stream(stream, region="CA")
        setup = bulk_import._Setup(parsed.columns, "CA", None, i18n.current().language)
        started = time.perf_counter()
        with ProcessPoolExecutor(
            max_workers=bulk_import.worker_count(),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=bulk_import._start_worker,
            initargs=(setup,),
        ) as pool:
            # As many batches in flight as the bulk path keeps: memory stays flat.
            checks: collections.deque[Future[tuple[bytes, list[importer.RowError]]]]
            checks = collections.deque()
            staged = rejected = 0

            def collect() -> None:
                nonlocal staged, rejected
                data, errors = checks.popleft().result()
                staged += data.count(b"\n")
                rejected += len(errors)

            for batch in itertools.count():
                rows = list(itertools.islice(parsed.raw, importer.BATCH_SIZE))
                if not rows:
                    break
                good = [row for row in rows if not isinstance(row, importer.RowError)]
                rejected += len(rows) - len(good)
                checks.append(pool.submit(bulk_import._check_batch, batch, good))
                if len(checks) >= bulk_import.CHUNKS_AHEAD:
                    collect()
            while checks:
                collect()
        seconds = time.perf_counter() - started
    return {"rows": staged + rejected, "seconds": seconds, "rejected": rejected}


async def child_export(url: str, campaign_id: int, sink: BinaryIO) -> dict[str, Any]:
    # The bytes, as `dialer export-results` and the web download write them.
    from dialer.services.export import export_results

    async with db.open_database(url) as sessions:
        async with sessions() as session:
            started = time.perf_counter()
            rows = await export_results(session, campaign_id, sink)
            seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds}


@dataclass(frozen=True, slots=True)
class ChildRun:
    result: dict[str, Any]
    # Its own peak, and its largest child's.
    rss_kb: int
    children_rss_kb: int


def run_child(database: str, *arguments: str, timeout: float | None = None) -> ChildRun:
    """Run one job in a child process (blocking: call it in a thread).

    Past ``timeout`` seconds the child is told to stop and reports how far it got.
    """
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "result.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--child", *arguments]
        command += ["--result", str(result_path)]
        env = {**os.environ, URL_ENV: app_url(database)}
        # Its own process group: worker processes it leaves behind go with it.
        process = subprocess.Popen(command, env=env, start_new_session=True)
        timer = None
        if timeout is not None:
            timer = threading.Timer(timeout, process.send_signal, (signal.SIGTERM,))
            timer.start()
        try:
            _pid, status, _usage = os.wait4(process.pid, 0)
        finally:
            if timer is not None:
                timer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if process.returncode != 0:
            raise RuntimeError(f"{arguments[0]} process exited with {process.returncode}")
        result = json.loads(result_path.read_text(encoding="utf-8"))
    return ChildRun(result, int(result["rss_kb"]), int(result.get("children_rss_kb", 0)))


# -- the import file ----------------------------------------------------------------


def write_import_file(path: Path, rows: int, exchanges: Sequence[str], seed: int = 19) -> None:
    """A voter file of ``rows`` new people, none of whose numbers is in the seed."""
    rng = random.Random(seed)
    languages = ("fr", "fr", "en", "en", "en", "es", "")
    tag_sets = ("", "donor", "gotv", "donor;gotv", "member", "member;sign", "youth;gotv")
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("first_name,last_name,phone,email,language,tags,pointage\n")
        chunk: list[str] = []
        for index in range(1, rows + 1):
            number = number_of(index, IMPORT_AREAS, exchanges)
            first = rng.choice(FIRST_NAMES)
            last = rng.choice(LAST_PREFIXES) + rng.choice(LAST_SUFFIXES)
            score = rng.choice(("", "1", "2", "3", "4", "5"))
            chunk.append(
                f'{first},"{last}",({number[2:5]}) {number[5:8]}-{number[8:]},'
                f"v{index}@example.org,{rng.choice(languages)},{rng.choice(tag_sets)},{score}\n"
            )
            if len(chunk) >= 10_000:
                handle.writelines(chunk)
                chunk.clear()
        handle.writelines(chunk)


async def new_campaign(database: str, title: str) -> int:
    connection = await asyncpg.connect(asyncpg_dsn(database))
    try:
        return int(
            await connection.fetchval(
                "INSERT INTO campaigns (title, brief, team_id, status, allowed_caller_ids,"
                " calling_hours, max_attempts, retry_delay_minutes, survey, created_at)"
                " VALUES ($1, '', 1, 'active', '[]', $2::json, 3, 240, $3::json, now())"
                " RETURNING id",
                title,
                json.dumps(ALWAYS.to_json()),
                json.dumps(SurveyDefinition().model_dump(mode="json")),
            )
        )
    finally:
        await connection.close()


async def measure_imports(
    database: str,
    seeded: Seeded,
    rows: int,
    exchanges: list[str],
    time_limit: float,
    table: Table,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "voters.csv"
        began = time.perf_counter()
        await asyncio.to_thread(write_import_file, path, rows, exchanges)
        size_mb = path.stat().st_size / 1024 / 1024
        say(f"import file: {rows:,} rows, {size_mb:.0f} MB in {time.perf_counter() - began:.1f} s")
        jobs: list[tuple[str, str]] = [("raw COPY into a scratch table (ceiling)", "copy")]
        jobs.append((f"the bulk path's {worker_count()} workers alone, no database", "checks"))
        jobs.append(("batch path (bulk=False)", "false"))
        jobs.append(("bulk path (bulk=True)", "true"))
        for label, mode in jobs:
            try:
                if mode in CEILINGS:
                    say(f"import: {label}")
                    run = await asyncio.to_thread(run_child, database, mode, "--csv", str(path))
                else:
                    campaign = await new_campaign(database, f"Import bench: {label}")
                    say(f"import: {label} into campaign {campaign}")
                    run = await asyncio.to_thread(
                        run_child,
                        database,
                        "import",
                        "--csv",
                        str(path),
                        "--campaign",
                        str(campaign),
                        "--bulk",
                        mode,
                        timeout=time_limit,
                    )
                result = run.result
                target = None if mode in CEILINGS else float(IMPORT_ROWS_S)
                shown = label + (" (stopped, timed out)" if result.get("partial") else "")
                table.rate("import", shown, int(result["rows"]), float(result["seconds"]), target)
                if result.get("partial"):
                    table.notes.append(
                        f"{label}: stopped after {time_limit:g} s (--import-timeout) with "
                        f"{int(result['rows']):,} of {rows:,} rows done; the rate is up to then"
                    )
                if result.get("rejected"):
                    table.notes.append(f"{label}: {result['rejected']:,} rows rejected")
                listed = result.get("added_to_list", rows)
                if mode not in CEILINGS and not result.get("partial") and listed != rows:
                    table.notes.append(
                        f"{label}: {result.get('added_to_list')} of {rows:,} rows added to the list"
                    )
                memory_label = CEILINGS.get(mode, f"import process, {label}")
                table.memory(memory_label, run.rss_kb)
                if run.children_rss_kb:
                    table.memory("  its largest worker process", run.children_rss_kb)
            except Exception as error:
                traceback.print_exc()
                table.failed("import", label, error)
            finally:
                removed = await restore(database, seeded)
                if removed:
                    say(f"  removed the {removed:,} imported contacts again")


# -- search, list, next contact, dashboard, export ----------------------------------


async def timed(
    work: Callable[[int], Awaitable[object]], *, samples: int, budget: float
) -> list[float]:
    """Milliseconds of ``work(i)``, after one warm-up: ``samples`` of them, or fewer
    (at least 3) once ``budget`` seconds are spent."""
    await work(-1)
    durations: list[float] = []
    began = time.perf_counter()
    index = 0
    while len(durations) < samples and (len(durations) < 3 or time.perf_counter() - began < budget):
        start = time.perf_counter()
        await work(index)
        durations.append((time.perf_counter() - start) * 1000)
        index += 1
    return durations


def build_app_runtime(database: str, pool_size: int) -> Any:
    from dialer.runtime.bootstrap import build_runtime
    from dialer.runtime.settings import Settings

    settings = Settings(
        _env_file=None,
        database_url=SecretStr(app_url(database)),
        database_pool_size=pool_size,
        default_caller_id=CALLER_ID,
        allowed_destinations="CA",
    )
    # 200 volunteers share the pool as they would one web process's; on a
    # loaded 2-core machine a checkout may wait longer than the default 30 s.
    return build_runtime(settings, pool_timeout=300)


async def measure_queries(
    runtime: Any, sizes: Sizes, exchanges: list[str], args: argparse.Namespace, table: Table
) -> None:
    from dialer.services.caller_ids import CallerIds
    from dialer.services.contacts import ContactFilter, ContactService, search
    from dialer.store.models import User

    sessions = runtime.sessions
    async with sessions() as session:
        admin = await session.get(User, 1)
        volunteer = await session.get(User, 2)
    assert admin is not None and volunteer is not None
    rng = random.Random(7)

    def name_query(index: int) -> str:
        last = rng.choice(LAST_PREFIXES) + rng.choice(LAST_SUFFIXES)
        first = rng.choice(FIRST_NAMES)
        return (last[:4], last, f"{first} {last}", first)[index % 4]

    def digits_query(index: int) -> str:
        number = number_of(rng.randint(1, sizes.contacts), SEED_AREAS, exchanges)
        return (number[-4:], number[-7:], f"({number[2:5]}) {number[5:8]}-{number[8:]}")[index % 3]

    filters: list[tuple[str, str, Callable[[int], ContactFilter]]] = [
        ("search", "name fragment", lambda i: ContactFilter(query=name_query(i))),
        ("search", "digits of a number", lambda i: ContactFilter(query=digits_query(i))),
        ("list", "tag", lambda i: ContactFilter(tags=(TAGS[i % len(TAGS)],))),
        ("list", "support score 4-5", lambda _i: ContactFilter(support_scores=(4, 5))),
        ("list", "language", lambda i: ContactFilter(language=("fr", "en", "es")[i % 3])),
        ("list", "never called", lambda _i: ContactFilter(never_called=True)),
        ("list", "call-back due", lambda _i: ContactFilter(callback_due=True)),
        (
            "list",
            "tag + score + language",
            lambda i: ContactFilter(tags=("gotv",), support_scores=(4, 5), language="fr"),
        ),
    ]
    for user, role in ((admin, "admin"), (volunteer, "volunteer")):
        for section, what, make in filters:
            label = f"{what}, as {role}"

            async def one(index: int, user: User = user, make: Any = make) -> None:
                async with sessions() as session:
                    await search(session, user, make(index), now=datetime.now(UTC))

            say(f"{section}: {label}")
            try:
                durations = await timed(one, samples=args.samples, budget=args.budget)
                table.latency(section, label, durations, SEARCH_P95_MS)
            except Exception as error:
                traceback.print_exc()
                table.failed(section, label, error)
    # The whole page: the search, and the filters' choices it offers.
    service = ContactService(sessions, CallerIds(CALLER_ID))
    for user, role in ((admin, "admin"), (volunteer, "volunteer")):
        label = f"contacts page (search_page), name, as {role}"

        async def page(index: int, user: User = user) -> None:
            await service.search_page(
                user, ContactFilter(query=name_query(index)), now=datetime.now(UTC)
            )

        say(f"page: {label}")
        try:
            durations = await timed(page, samples=args.samples, budget=args.budget)
            table.latency("page", label, durations, SEARCH_P95_MS)
        except Exception as error:
            traceback.print_exc()
            table.failed("page", label, error)


@dataclass(slots=True)
class CallingRound:
    next_ms: list[float] = field(default_factory=list)
    claim_ms: list[float] = field(default_factory=list)
    hangup_ms: list[float] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)
    empty: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    # Contact -> the volunteer holding its claim, as the services answered.
    holders: dict[int, int] = field(default_factory=dict)
    double_claims: int = 0
    # Handed a contact another volunteer held at that moment (then refused).
    handed_held: int = 0
    claims: int = 0


async def measure_next_contact(
    runtime: Any,
    database: str,
    sizes: Sizes,
    args: argparse.Namespace,
    table: Table,
    *,
    think: float,
    target: float | None,
) -> None:
    from dialer.services.calling import OutcomePending

    lists, calls = runtime.lists, runtime.service
    count = min(args.concurrency, sizes.volunteers)
    state = CallingRound()
    stop_at = time.perf_counter() + args.duration
    stopping = asyncio.Event()

    async def volunteer(v: int) -> None:
        user_id, team, k = 2 + v, v % sizes.campaigns, v // sizes.campaigns
        campaign_id = team + 1
        # Every second volunteer of a team calls from its teammate's list
        # ("Others"): two volunteers are handed the same contacts.
        owner = 2 + team + sizes.campaigns * (k - 1) if k % 2 else None
        # The two volunteers of a list draw the same think times, so they ask
        # for their next contact at about the same moment, cycle after cycle:
        # both are handed the same contact and the claim must refuse one.
        rng = random.Random(owner or user_id)
        await asyncio.sleep(rng.uniform(0, think))
        while time.perf_counter() < stop_at:
            try:
                began = time.perf_counter()
                found = await lists.next_contact(user_id, campaign_id, list_owner_id=owner)
                state.next_ms.append((time.perf_counter() - began) * 1000)
                if found.contact is None:
                    state.empty[str(found.empty_reason)] += 1
                    await asyncio.sleep(think)
                    continue
                contact_id = found.contact.id
                if contact_id in state.holders:
                    state.handed_held += 1
                began = time.perf_counter()
                try:
                    call = await calls.start_call(
                        volunteer_id=user_id, contact_id=contact_id, campaign_id=campaign_id
                    )
                except CallRefused as refused:
                    state.refused[refused.refusal.code.value] += 1
                    if refused.refusal.code is not RefusalCode.CONTACT_BEING_CALLED:
                        await asyncio.sleep(think)
                    continue
                state.claim_ms.append((time.perf_counter() - began) * 1000)
                state.claims += 1
                if contact_id in state.holders:
                    state.double_claims += 1
                state.holders[contact_id] = user_id
                await asyncio.sleep(think * rng.uniform(0.5, 1.5))
                # Released before the hang-up commits: a claim another volunteer
                # wins from here on is not counted as a double one.
                if state.holders.get(contact_id) == user_id:
                    del state.holders[contact_id]
                began = time.perf_counter()
                await calls.hang_up(user_id, call.call_id)
                state.hangup_ms.append((time.perf_counter() - began) * 1000)
            except (OutcomePending, Exception) as error:
                state.errors[type(error).__name__] += 1
                if sum(state.errors.values()) <= 3:
                    traceback.print_exc()
                await asyncio.sleep(think)

    async def watch_lag() -> None:
        # How late a 50 ms sleep wakes: the bench's own event loop as a bottleneck.
        while not stopping.is_set():
            began = time.perf_counter()
            await asyncio.sleep(0.05)
            state.lag_ms.append((time.perf_counter() - began - 0.05) * 1000)

    say(
        f"next contact: {count} volunteers, think {think:g} s, {args.duration:g} s "
        f"(pool {args.pool_size})"
    )
    watcher = asyncio.ensure_future(watch_lag())
    tasks = [asyncio.ensure_future(volunteer(v)) for v in range(count)]
    grace = max(30.0, 3 * think)
    _done, pending = await asyncio.wait(tasks, timeout=args.duration + think * 2 + grace)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
        table.notes.append(
            f"next contact: {len(pending)} volunteers still busy after the grace time"
        )
    stopping.set()
    await watcher
    label = f"{count} volunteers, think {think:g} s"
    table.latency("next", f"next contact, {label}", state.next_ms, target)
    table.latency("next", "  claim (start_call)", state.claim_ms, None)
    table.latency("next", "  hang up (hang_up)", state.hangup_ms, None)
    table.info("next", "  claims made", f"{state.claims:,}")
    refused_total = sum(state.refused.values())
    table.info(
        "next",
        "  contact handed while another volunteer held it",
        f"{state.handed_held:,}",
    )
    table.info("next", "  claims refused", f"{refused_total:,}")
    table.info(
        "next",
        "double claims (one contact, two volunteers)",
        f"{state.double_claims:,}",
        "0",
        "pass" if state.double_claims == 0 else "MISS",
    )
    table.latency("next", "  event loop lag of this process", state.lag_ms, None)
    if state.refused:
        table.notes.append(
            "next contact: refused "
            + ", ".join(f"{code} {n:,}" for code, n in state.refused.most_common())
        )
    if state.empty:
        table.notes.append(
            "next contact: empty lists "
            + ", ".join(f"{reason} {n:,}" for reason, n in state.empty.most_common())
        )
    if state.errors:
        table.notes.append(
            "next contact: errors "
            + ", ".join(f"{name} {n:,}" for name, n in state.errors.most_common())
        )
    # A claim a cancelled volunteer left behind would hold its volunteer busy next run.
    connection = await asyncpg.connect(asyncpg_dsn(database))
    try:
        left = await connection.execute(
            "UPDATE call_attempts SET state = 'ended', outcome = 'hung_up_by_volunteer',"
            " failure_reason = 'bench stopped', ended_at = now(), updated_at = now()"
            " WHERE state <> 'ended'"
        )
    finally:
        await connection.close()
    if left.split()[-1] != "0":
        table.notes.append(f"next contact: {left.split()[-1]} calls were left live and ended")


async def measure_dashboard(
    runtime: Any, database: str, args: argparse.Namespace, table: Table
) -> None:
    from dialer.services.dashboard import DashboardService

    service = DashboardService(runtime.sessions)
    zone = ZoneInfo("America/Toronto")
    campaign_id = 1
    say("dashboard")

    async def one(_index: int) -> None:
        await service.campaign_stats(campaign_id, now=datetime.now(UTC), zone=zone)

    try:
        durations = await timed(one, samples=args.samples, budget=args.budget)
        table.latency(
            "dashboard", "campaign dashboard, statewide campaign", durations, DASHBOARD_P95_MS
        )
        stats = await service.campaign_stats(campaign_id, now=datetime.now(UTC), zone=zone)
        connection = await asyncpg.connect(asyncpg_dsn(database))
        try:
            entries = await connection.fetchval(
                "SELECT count(*) FROM calling_list_entries WHERE campaign_id = $1", campaign_id
            )
            dials = await connection.fetchval(
                "SELECT count(*) FROM call_attempts WHERE campaign_id = $1", campaign_id
            )
        finally:
            await connection.close()
        agrees = stats.list_total == entries and stats.dials == dials
        table.info(
            "dashboard",
            "  its counts agree with the rows",
            "yes"
            if agrees
            else f"no: list {stats.list_total:,}/{entries:,}, dials {stats.dials:,}/{dials:,}",
            "yes",
            "pass" if agrees else "MISS",
        )
    except Exception as error:
        traceback.print_exc()
        table.failed("dashboard", "campaign dashboard", error)


async def measure_export(database: str, table: Table) -> None:
    say("export")
    try:
        run = await asyncio.to_thread(run_child, database, "export", "--campaign", "1")
        rows, seconds = int(run.result["rows"]), float(run.result["seconds"])
        table.rate("export", "export, statewide campaign", rows, seconds, EXPORT_ROWS_S)
        table.memory("export process", run.rss_kb)
    except Exception as error:
        traceback.print_exc()
        table.failed("export", "export", error)


# -- the run ------------------------------------------------------------------------

PHASES = ("search", "next", "dashboard", "export", "import")


async def main(args: argparse.Namespace) -> None:
    began = time.perf_counter()
    sizes = Sizes(args.contacts, args.campaigns, args.volunteers)
    if sizes.volunteers < sizes.campaigns:
        raise SystemExit("--volunteers must be at least --campaigns (one team per campaign)")
    skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    if skip - set(PHASES):
        raise SystemExit(f"--skip takes {', '.join(PHASES)}")
    exchanges = await asyncio.to_thread(dialable_exchanges)
    seeded = await prepare_database(args.database, sizes, exchanges, reuse=args.reuse)
    shared_buffers = await server_setting(args.database, "shared_buffers")
    await restore(args.database, seeded)
    table = Table()
    if seeded.reused:
        table.info("seed", "reused from an earlier run", args.database)
    else:
        total_rows = sum(seeded.rows.values())
        table.rate("seed", "seed, all tables (SQL, then indexes)", total_rows, seeded.seconds, None)
        table.info(
            "seed", f"  migrations after {SEED_REVISION} on it", f"{seeded.upgrade_seconds:,.1f} s"
        )
    table.notes.append(
        "seeded rows: " + ", ".join(f"{name} {count:,}" for name, count in seeded.rows.items())
    )
    try:
        runtime = build_app_runtime(args.database, args.pool_size)
        try:
            if "search" not in skip:
                await phase(
                    table, "search", measure_queries(runtime, sizes, exchanges, args, table)
                )
            if "next" not in skip:
                # At the pace the target is for, then at three times it.
                for think, target in ((args.think, NEXT_P95_MS), (args.stress_think, None)):
                    if think > 0:
                        await phase(
                            table,
                            "next",
                            measure_next_contact(
                                runtime,
                                args.database,
                                sizes,
                                args,
                                table,
                                think=think,
                                target=target,
                            ),
                        )
            if "dashboard" not in skip:
                await phase(
                    table, "dashboard", measure_dashboard(runtime, args.database, args, table)
                )
        finally:
            await runtime.close()
        if "export" not in skip:
            await phase(table, "export", measure_export(args.database, table))
        if "import" not in skip:
            await phase(
                table,
                "import",
                measure_imports(
                    args.database, seeded, args.import_rows, exchanges, args.import_timeout, table
                ),
            )
        table.memory("this process (the web process's part)", peak_rss_kb())
        if args.drop:
            await drop_database(args.database)
    finally:
        # Whatever was measured is shown, even when a phase or the clean-up failed.
        minutes = (time.perf_counter() - began) / 60
        print(
            f"\nbench/scale.py: {sizes.contacts:,} contacts, {sizes.campaigns} campaigns, "
            f"{sizes.volunteers} volunteers; {args.import_rows:,}-row import file; "
            f"{os.cpu_count()} CPUs; PostgreSQL shared_buffers {shared_buffers}; "
            f"{minutes:.1f} min\n"
        )
        print(table.render())


async def phase(table: Table, name: str, work: Awaitable[None]) -> None:
    """Run one phase; one that fails (the code under test half-written, say) is a line."""
    try:
        await work
    except Exception as error:
        traceback.print_exc()
        table.failed(name, f"{name} phase", error)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--contacts", type=int, default=2_000_000)
    parser.add_argument("--campaigns", type=int, default=50)
    parser.add_argument("--volunteers", type=int, default=500)
    parser.add_argument("--import-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--concurrency", type=int, default=200, help="volunteers calling at once (next contact)"
    )
    parser.add_argument(
        "--think",
        type=float,
        default=15.0,
        help="mean seconds a volunteer holds a contact: the shortest a real call can"
        " be (the contact's phone rings 15 s at least before a no-answer); answered"
        " calls take a minute or more",
    )
    parser.add_argument(
        "--stress-think",
        type=float,
        default=5.0,
        help="then the same at this think time, three times the pace (0: not)",
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of calling")
    parser.add_argument(
        "--import-timeout",
        type=float,
        default=240.0,
        help="seconds an import may take; then it stops and its rate so far is shown",
    )
    parser.add_argument(
        "--pool-size", type=int, default=10, help="DIALER_DATABASE_POOL_SIZE of the web process"
    )
    parser.add_argument("--samples", type=int, default=20, help="timed runs of each query")
    parser.add_argument(
        "--budget", type=float, default=12.0, help="seconds per query line, then at least 3 runs"
    )
    parser.add_argument("--database", default="dialer_scale")
    parser.add_argument("--reuse", action="store_true", help="keep an earlier run's seed")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    parser.add_argument("--skip", default="", help=f"phases to leave out: {','.join(PHASES)}")
    # One measured job in a child process (see run_child).
    parser.add_argument(
        "--child", choices=("import", "copy", "checks", "export"), help=argparse.SUPPRESS
    )
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    parser.add_argument("--campaign", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--bulk", choices=("true", "false"), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", args.database):
        parser.error("--database: lower-case letters, digits and _ only")
    if min(args.contacts, args.campaigns, args.volunteers, args.import_rows) < 1:
        parser.error("sizes must be positive")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.child:
        child_main(arguments)
    else:
        asyncio.run(main(arguments))
