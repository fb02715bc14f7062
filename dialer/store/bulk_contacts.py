"""The bulk contact import's staging tables; nothing else.

Writes only its own ``TEMPORARY`` tables, which live on one connection
for one import and are in no other module's map
(:mod:`dialer.store.writers`): the rows of a window of the file
(``import_stage``, filled by ``COPY``), the people among them that go in
set-based with the ids they get (``import_stage_new``), and the contacts
the window puts on the campaign's list (``import_stage_listed``).  The
product's tables are written by their owners, from the queries here:
:func:`new_contacts`, :func:`new_phones` (``dialer.store.contacts``) and
:func:`list_entries` (``dialer.store.lists``).

A staged row carries the row as parsed (its fields, numbers, flagged
numbers and cells), its line and its batch: the batch of
:data:`dialer.services.importer.BATCH_SIZE` rows that the batch path would
have written it in, because the rule for rows of one file sharing a number
depends on it (see :func:`pick_new_people`).  :func:`stage_line` writes a
row in ``COPY``'s text format; it runs in the import's worker processes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, bindparam, column, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.selectable import TextualSelect

from dialer.store.models import UTCDateTime

STAGE = "import_stage"
NEW = "import_stage_new"
LISTED = "import_stage_listed"

# The row's fields staged as text, as the CSV importer names them.
TEXT_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "language",
    "address",
    "area",
    "timezone",
    "dnc_reason",
    "notes",
)
FIELDS = (*TEXT_FIELDS, "tags", "support_score", "do_not_call")
STAGE_COLUMNS = ("line", "batch", *FIELDS, "e164s", "kinds", "flags", "cells")

_CREATE = (
    f"""CREATE TEMPORARY TABLE {STAGE} (
        line integer NOT NULL,
        batch integer NOT NULL,
        {", ".join(f"{name} text" for name in TEXT_FIELDS)},
        tags text,
        support_score integer,
        do_not_call boolean,
        e164s text[] NOT NULL,
        kinds text[] NOT NULL,
        flags text,
        cells text NOT NULL
    )""",
    f"CREATE TEMPORARY TABLE {NEW} (line integer PRIMARY KEY, contact_id integer NOT NULL)",
    f"CREATE TEMPORARY TABLE {LISTED} (key bigint NOT NULL, contact_id integer NOT NULL)",
)

# Taken for the transaction that decides which rows are new people and
# inserts them: two bulk imports never both find a number free.
_IMPORT_LOCK = 0x6469616C_696D7074  # "dialimpt"

# COPY's text format: backslash escapes, \N for NULL.
_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
NULL = "\\N"


def _text(value: str | None) -> str:
    return NULL if value is None else value.translate(_ESCAPES)


_FIELD_SET = frozenset(FIELDS)
# json.dumps builds an encoder on every call made with options; the worker
# processes stage every row of the file, so they keep one.
_json_keeping_text = json.JSONEncoder(ensure_ascii=False).encode


def stage_line(
    line: int,
    batch: int,
    values: Mapping[str, Any],
    phones: Sequence[tuple[str, str]],
    flags: Sequence[tuple[str, str]],
    cells: Sequence[str],
) -> str:
    """One parsed row as a line of ``COPY import_stage`` (text format).

    ``values`` holds only :data:`FIELDS`; numbers (E.164) and their kinds
    need no quoting inside an array literal.
    """
    if not _FIELD_SET.issuperset(values):
        raise ValueError(f"no staging column for {sorted(set(values) - _FIELD_SET)}")
    score = values.get("support_score")
    dnc = values.get("do_not_call")
    tags = values.get("tags")
    fields = [
        str(line),
        str(batch),
        *[
            NULL if (value := values.get(name)) is None else value.translate(_ESCAPES)
            for name in TEXT_FIELDS
        ],
        NULL if tags is None else _text(json.dumps(tags)),
        NULL if score is None else str(int(score)),
        NULL if dnc is None else ("t" if dnc else "f"),
        "{" + ",".join([e164 for e164, _kind in phones]) + "}",
        "{" + ",".join([kind for _e164, kind in phones]) + "}",
        _text(json.dumps([list(flag) for flag in flags])) if flags else NULL,
        _text(_json_keeping_text(list(cells))),
    ]
    return "\t".join(fields) + "\n"


@dataclass(frozen=True, slots=True)
class StagedRow:
    """A staged row read back: what it takes to merge it as the batch path does."""

    line: int
    batch: int
    values: dict[str, Any]
    phones: list[tuple[str, str]]
    flags: list[tuple[str, str]]
    cells: tuple[str, ...]


async def _driver(session: AsyncSession) -> Any:
    """The asyncpg connection under ``session`` (for COPY)."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


# For this connection while it stages: a window's sorts and hashes (tens of
# thousands of rows) fit in memory, and no statement is worth compiling
# (the planner's guesses about tables it never analysed made it JIT-compile
# the window's statements, at 0.3 s each).
_SETTINGS = {"work_mem": "64MB", "jit": "off"}


async def create_tables(session: AsyncSession) -> None:
    """Create the staging tables (and set the connection up) for one import."""
    await drop_tables(session)
    for statement in _CREATE:
        await session.execute(text(statement))
    for name, value in _SETTINGS.items():
        await session.execute(
            text("SELECT set_config(:name, :value, false)"), {"name": name, "value": value}
        )


async def drop_tables(session: AsyncSession) -> None:
    """Drop the staging tables; the connection goes back to the pool as it came."""
    await session.execute(text(f"DROP TABLE IF EXISTS {STAGE}, {NEW}, {LISTED}"))
    for name in _SETTINGS:
        await session.execute(text(f"RESET {name}"))


async def clear(session: AsyncSession) -> None:
    """Empty the tables for the next window."""
    await session.execute(text(f"TRUNCATE {STAGE}, {NEW}, {LISTED}"))


async def copy_rows(session: AsyncSession, lines: AsyncIterable[bytes]) -> None:
    """``COPY`` rows written by :func:`stage_line` (UTF-8) into ``import_stage``."""
    driver = await _driver(session)
    await driver.copy_to_table(STAGE, source=lines, columns=list(STAGE_COLUMNS), format="text")


async def lock_imports(session: AsyncSession) -> None:
    """Wait for any other bulk import's new people to be in (until this transaction ends)."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _IMPORT_LOCK})


# A number merges its row when it is on file, or when a row of the same or an
# earlier batch of the window has it: the batch path would find that row's
# contact on file by then, or merge the two rows as one person in the batch.
# Rows of earlier windows are on file already (or were rejected, and then
# the batch path does not know their numbers either).
#
# Each number is looked up in the unique index on its own (the LIMIT keeps
# the lookup a parameterised index scan): written as EXISTS, the planner
# hashed all of contact_phones instead, 1.3-1.6 s a window at 2 M numbers
# against about 0.2 s for 50,000 index look-ups.  The sequence is looked up
# once (the subquery), not for every row (0.3 s a window).
_PICK_NEW_PEOPLE = text(
    """INSERT INTO import_stage_new (line, contact_id)
    SELECT line, nextval((SELECT CAST(pg_get_serial_sequence('contacts', 'id') AS regclass)))
    FROM (
        SELECT s.line FROM import_stage s
        WHERE s.line NOT IN (
            SELECT numbers.line FROM (
                SELECT s2.line, n.e164, on_file.found,
                    count(*) OVER (PARTITION BY n.e164 ORDER BY s2.batch) AS seen
                FROM import_stage s2 CROSS JOIN LATERAL unnest(s2.e164s) AS n(e164)
                LEFT JOIN LATERAL (
                    SELECT true AS found FROM contact_phones p WHERE p.e164 = n.e164 LIMIT 1
                ) on_file ON true
            ) numbers
            WHERE numbers.seen > 1 OR numbers.found
        )
        ORDER BY s.line
    ) new_people"""
)


async def pick_new_people(session: AsyncSession) -> int:
    """Give an id to every staged row that is a new person on its own; how many.

    Such a row's numbers are neither on file nor in a row of the same or an
    earlier batch of the window, so the batch path would insert it as a new
    contact without looking at any other row.  Every other row merges and
    is left to it (:func:`merging_rows`).
    """
    result = await session.execute(_PICK_NEW_PEOPLE)
    return int(getattr(result, "rowcount", 0) or 0)


CONTACT_COLUMNS = (
    "id",
    "first_name",
    "last_name",
    "email",
    "language",
    "address",
    "area",
    "timezone",
    "tags",
    "support_score",
    "do_not_call",
    "dnc_reason",
    "dnc_at",
    "notes",
    "created_at",
    "updated_at",
)


def _now(statement: TextClause, now: datetime) -> TextClause:
    return statement.bindparams(bindparam("now", now, type_=UTCDateTime()))


def new_contacts(now: datetime, default_dnc_reason: str) -> TextualSelect:
    """The new people's contacts, in :data:`CONTACT_COLUMNS`, as an import inserts them."""
    statement = text(
        """SELECT n.contact_id, coalesce(s.first_name, ''), coalesce(s.last_name, ''),
            s.email, s.language, s.address, s.area, s.timezone,
            CAST(coalesce(s.tags, '[]') AS json), s.support_score,
            coalesce(s.do_not_call, false),
            CASE WHEN s.do_not_call THEN coalesce(s.dnc_reason, :default_reason) END,
            CASE WHEN s.do_not_call THEN :now END,
            coalesce(s.notes, ''), :now, :now
        FROM import_stage_new n JOIN import_stage s USING (line)
        ORDER BY n.contact_id"""
    ).bindparams(default_reason=default_dnc_reason)
    return _now(statement, now).columns(*(column(name) for name in CONTACT_COLUMNS))


PHONE_COLUMNS = ("contact_id", "e164", "phone_type", "wrong_number", "do_not_call", "created_at")


def new_phones(now: datetime) -> TextualSelect:
    """The new people's numbers, in :data:`PHONE_COLUMNS`, in their rows' order."""
    statement = text(
        """SELECT n.contact_id, p.e164, p.kind, false, false, :now
        FROM import_stage_new n JOIN import_stage s USING (line)
        CROSS JOIN LATERAL unnest(s.e164s, s.kinds) WITH ORDINALITY AS p(e164, kind, position)
        ORDER BY n.contact_id, p.position"""
    )
    return _now(statement, now).columns(*(column(name) for name in PHONE_COLUMNS))


async def new_people_flags(session: AsyncSession) -> list[tuple[int, str, str]]:
    """(line, number, why) of the new people's numbers the dialing policy refuses."""
    result = await session.execute(
        text(
            """SELECT s.line, s.flags FROM import_stage_new n JOIN import_stage s USING (line)
            WHERE s.flags IS NOT NULL ORDER BY s.line"""
        )
    )
    return [
        (int(line), str(e164), str(reason))
        for line, flags in result
        for e164, reason in json.loads(flags)
    ]


# The tables a window grows; statistics a fifth behind their size are stale.
_GROWN_TABLES = "contacts, contact_phones, calling_list_entries"
_STALE_GROWTH = 0.2


async def refresh_statistics(session: AsyncSession, added: int) -> bool:
    """``ANALYZE`` the tables the import grows if ``added`` contacts (since they
    were last analysed here) are a fifth or more of those the statistics know.

    The batch path's merging code (:func:`importer.write_batch`) looks numbers up in
    ``contact_phones``; with the statistics of a much smaller table the
    planner takes the trigram index for that, at seconds a batch, until
    autovacuum (a minute later) catches up with a window's tens of
    thousands of rows.  Whether it analysed.
    """
    known = await session.scalar(
        text("SELECT reltuples FROM pg_class WHERE oid = CAST('contact_phones' AS regclass)")
    )
    if added < _STALE_GROWTH * max(float(known or 0), 0.0):
        return False
    await session.execute(text(f"ANALYZE {_GROWN_TABLES}"))
    return True


def list_key(batch: int, new: int, line: int) -> int:
    """Where a contact comes in a window's list order: by batch, then the contacts
    on file before the new people (as a batch of the batch path lists them), then line."""
    return (batch << 33) | (new << 32) | line


async def list_new_people(session: AsyncSession) -> None:
    """Put the new people on the window's list order (see :func:`list_key`)."""
    await session.execute(
        text(
            """INSERT INTO import_stage_listed (key, contact_id)
            SELECT (CAST(s.batch AS bigint) << 33) | (CAST(1 AS bigint) << 32) | s.line,
                n.contact_id
            FROM import_stage_new n JOIN import_stage s USING (line)"""
        )
    )


async def list_contacts(session: AsyncSession, keyed: Sequence[tuple[int, int]]) -> None:
    """Add (key, contact id) pairs to the window's list order."""
    if keyed:
        driver = await _driver(session)
        await driver.copy_records_to_table(LISTED, records=keyed, columns=["key", "contact_id"])


async def forget_listed(session: AsyncSession, below: int) -> None:
    """Drop the list order before ``below``: those contacts were put on the list."""
    await session.execute(
        text("DELETE FROM import_stage_listed WHERE key < :below").bindparams(
            bindparam("below", below, type_=BigInteger())
        )
    )


LIST_COLUMNS = ("campaign_id", "contact_id", "volunteer_id", "attempts", "done", "assigned_at")


def list_entries(
    campaign_id: int,
    volunteer_ids: Sequence[int],
    next_volunteer: int,
    now: datetime,
    *,
    below: int,
) -> TextualSelect:
    """The contacts of the window's list order before ``below`` (a :func:`list_key`)
    not yet on the campaign's list, in :data:`LIST_COLUMNS`, each once, in list
    order, handed to ``volunteer_ids`` in turn from ``next_volunteer`` on (none
    when there are none)."""
    statement = text(
        """SELECT :campaign_id, listed.contact_id,
            (:volunteers)[((:next_volunteer + listed.rank - 1) % NULLIF(:count, 0)) + 1],
            0, false, :now
        FROM (
            SELECT l.contact_id, row_number() OVER (ORDER BY min(l.key)) AS rank
            FROM import_stage_listed l
            WHERE l.key < :below AND NOT EXISTS (
                SELECT 1 FROM calling_list_entries e
                WHERE e.campaign_id = :campaign_id AND e.contact_id = l.contact_id
            )
            GROUP BY l.contact_id
        ) listed
        ORDER BY listed.rank"""
    ).bindparams(
        bindparam("campaign_id", campaign_id, type_=Integer()),
        bindparam("volunteers", list(volunteer_ids), type_=ARRAY(Integer())),
        bindparam("next_volunteer", next_volunteer, type_=Integer()),
        bindparam("count", len(volunteer_ids), type_=Integer()),
        bindparam("below", below, type_=BigInteger()),
    )
    return _now(statement, now).columns(*(column(name) for name in LIST_COLUMNS))


async def merging_rows(session: AsyncSession) -> list[StagedRow]:
    """The staged rows that are not new people on their own, in file order."""
    result = await session.execute(
        text(
            """SELECT s.line, s.batch, s.first_name, s.last_name, s.email, s.language,
                s.address, s.area, s.timezone, s.dnc_reason, s.notes, s.tags,
                s.support_score, s.do_not_call, s.e164s, s.kinds, s.flags, s.cells
            FROM import_stage s
            WHERE NOT EXISTS (SELECT 1 FROM import_stage_new n WHERE n.line = s.line)
            ORDER BY s.line"""
        )
    )
    rows: list[StagedRow] = []
    for record in result:
        staged = dict(zip(STAGE_COLUMNS, record, strict=True))
        values: dict[str, Any] = {
            name: staged[name] for name in TEXT_FIELDS if staged[name] is not None
        }
        if staged["tags"] is not None:
            values["tags"] = json.loads(staged["tags"])
        if staged["support_score"] is not None:
            values["support_score"] = int(staged["support_score"])
        if staged["do_not_call"] is not None:
            values["do_not_call"] = bool(staged["do_not_call"])
        flags = json.loads(staged["flags"]) if staged["flags"] is not None else []
        rows.append(
            StagedRow(
                line=int(staged["line"]),
                batch=int(staged["batch"]),
                values=values,
                phones=list(zip(staged["e164s"], staged["kinds"], strict=True)),
                flags=[(str(e164), str(reason)) for e164, reason in flags],
                cells=tuple(json.loads(staged["cells"])),
            )
        )
    return rows
