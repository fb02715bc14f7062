"""The CSV lines of a campaign's results, written by PostgreSQL: ``COPY (query) TO STDOUT``.

The query builds each line of :mod:`dialer.services.export`'s CSV in SQL,
with its spreadsheet neutralisation and Python's ``csv`` quoting, so that
PostgreSQL's parallel workers do the formatting.  A line whose survey
answers only Python can write exactly comes marked: :data:`MARK`, the
line's other cells, :data:`ANSWERS_AT`, the answers' JSON (which holds no
raw control character).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

MARK = "\x01"
ANSWERS_AT = "\x02"
_FORMULA_SQL = "('=', '+', '-', '@', E'\\t', E'\\r')"


def _safe_sql(value: str) -> str:
    """:func:`dialer.services.export.spreadsheet_safe` of a text value, in SQL."""
    return (
        f"CASE WHEN left({value}, 1) IN {_FORMULA_SQL}"
        f" AND {value} !~ '^[+-]?[0-9][0-9.]*$' THEN '''' || {value} ELSE {value} END"
    )


def _quoted(value: str) -> str:
    """Python's csv writing of a text value's :func:`spreadsheet_safe` form; NULL stays NULL.

    One regular expression lets most values through as they are; the others
    are neutralised, then quoted when they hold a comma, a double quote, CR
    or LF (the quote the neutralisation adds needs no quoting).
    """
    safe = _safe_sql(value)
    return (
        f"CASE WHEN {value} !~ E'^[-=+@\\t\\r]|[,\"\\r\\n]' THEN {value}"
        f" WHEN {value} ~ E'[,\"\\r\\n]' THEN '\"' || replace({safe}, '\"', '\"\"') || '\"'"
        f" ELSE {safe} END"
    )


def _text_cell(value: str) -> str:
    return f"COALESCE({_quoted(value)}, '')"


def _time_cell(value: str) -> str:
    """``datetime.isoformat()`` of a UTC time: microseconds only when not zero."""
    return (
        f"COALESCE(replace(to_char({value} AT TIME ZONE 'UTC',"
        f" 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), '.000000', '') || '+00:00', '')"
    )


def _yes_no_cell(value: str) -> str:
    return f"CASE WHEN {value} THEN 'yes' WHEN NOT {value} THEN 'no' ELSE '' END"


def _plain_cell(value: str) -> str:
    """A value that never needs neutralising or quoting: a number, a vocabulary word."""
    return f"COALESCE({value}::text, '')"


_BASE_CELLS = (
    _text_cell("a.call_id"),
    _plain_cell("c.id"),
    _text_cell("c.first_name"),
    _text_cell("c.last_name"),
    _text_cell("a.number_e164"),
    _text_cell("u.username"),
    _text_cell("a.caller_id"),
    _time_cell("a.requested_at"),
    _time_cell("a.contact_answered_at"),
    _time_cell("a.ended_at"),
    _plain_cell("a.state"),
    _plain_cell("a.outcome"),
    _text_cell("a.dial_status"),
    _plain_cell("d.outcome"),
    _yes_no_cell("d.consent"),
    _yes_no_cell("d.mobilized"),
    _plain_cell("d.support_score"),
    _time_cell("d.callback_at"),
    _text_cell("d.comments"),
)


def _answer_cell(answer: str) -> str:
    """A survey answer (JSON) as Python writes it; NULL when only Python can write it exactly.

    Exact here: no answer, null, true/false, an integer written as Python
    writes it, and strings (PostgreSQL decodes their JSON escapes as Python
    does).  Lists and decimal numbers are left to Python: SQL could only
    join a list in a subquery, which would keep the formatting out of the
    parallel workers.
    """
    text = f"({answer} #>> '{{}}')"
    return (
        f"CASE WHEN {answer} IS NULL OR json_typeof({answer}) = 'null' THEN ''"
        f" WHEN json_typeof({answer}) = 'boolean'"
        f" THEN CASE WHEN {answer}::text = 'true' THEN 'yes' ELSE 'no' END"
        f" WHEN json_typeof({answer}) = 'number'"
        f" THEN CASE WHEN {answer}::text ~ '^(0|-?[1-9][0-9]*)$' THEN {answer}::text END"
        f" WHEN json_typeof({answer}) = 'string' THEN {_text_cell(text)}"
        " END"
    )


# The six characters \u0000, as an E'' string's body.
_NUL_ESCAPE = "\\\\u0000"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def copy_query(question_ids: Sequence[str]) -> str:
    """The query COPY writes, for the campaign $1.

    Plain expressions, no subquery: PostgreSQL computes them in its parallel
    workers, before the sort.  The survey's answers are read from the JSON
    once per row (``json_to_record``), one column per question.
    """
    base = " || ',' || ".join(_BASE_CELLS)
    questions = list(dict.fromkeys(question_ids))
    if questions:
        record = ", ".join(f"{_identifier(qid)} json" for qid in questions)
        # PostgreSQL text holds no NUL: answers with that escape are Python's to read.
        no_nul = f"strpos(d.survey_answers::text, E'{_NUL_ESCAPE}') = 0"
        answers = (
            " LEFT JOIN LATERAL json_to_record(CASE WHEN json_typeof(d.survey_answers) = 'object'"
            f" AND {no_nul} THEN d.survey_answers END) AS q({record}) ON true"
        )
        cells = " || ".join(
            f"',' || {_answer_cell('q.' + _identifier(qid))}" for qid in question_ids
        )
        survey = f"CASE WHEN d.survey_answers IS NULL OR {no_nul} THEN {cells} END"
    else:
        answers, survey = "", "''"
    # Built from this module's expressions and the survey's question ids
    # (slugs, and quoted as identifiers); the campaign is the parameter $1.
    return (
        f"SELECT COALESCE({base} || {survey},"  # noqa: S608
        f" E'\\001' || {base} || E'\\002' || d.survey_answers::text)"
        " FROM call_attempts AS a"
        " JOIN contacts AS c ON c.id = a.contact_id"
        " JOIN users AS u ON u.id = a.volunteer_id"
        " LEFT JOIN dispositions AS d ON d.call_attempt_id = a.id"
        f"{answers}"
        " WHERE a.campaign_id = $1"
        " ORDER BY a.requested_at, a.id"
    )


# For the export's statement only (its transaction's settings, put back after).
# A campaign's calls are found by index, and each one's contact, volunteer
# and outcome by key.  Left to itself the planner hashed every contact and
# every outcome of every campaign instead (2 M and 1.2 M rows at a voter
# file's scale, for a campaign of 130,000 calls), spilled the hashes and the
# sort to disk in the default 4 MB, and JIT-compiled the line's expressions
# for about 0.5 s: 60-80,000 lines a second against 95-125,000
# (bench/scale.py's export on its 2 M-contact seed).
_PLANNER_SETTINGS = {"enable_hashjoin": "off", "work_mem": "64MB", "jit": "off"}


async def copy_lines(
    session: AsyncSession,
    campaign_id: int,
    question_ids: Sequence[str],
    forward: Callable[[bytes], Awaitable[None]],
) -> int:
    """Hand ``forward`` the campaign's lines, COPY's text format, chunk by
    chunk (whole lines); the number of lines."""
    # Through the session: its transaction has begun when the settings are made.
    before = await _set_local(session, _PLANNER_SETTINGS)
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    status = await driver.copy_from_query(copy_query(question_ids), campaign_id, output=forward)
    await _set_local(session, before)
    return int(str(status).rsplit(" ", 1)[-1])


async def _set_local(session: AsyncSession, settings: dict[str, str]) -> dict[str, str]:
    """Make ``settings`` for the rest of the transaction; the values they replace."""
    names = list(settings)
    before = (
        await session.execute(
            text("SELECT " + ", ".join(f"current_setting(:name{i})" for i in range(len(names)))),
            {f"name{i}": name for i, name in enumerate(names)},
        )
    ).one()
    await session.execute(
        text(
            "SELECT "
            + ", ".join(f"set_config(:name{i}, :value{i}, true)" for i in range(len(names)))
        ),
        {f"name{i}": name for i, name in enumerate(names)}
        | {f"value{i}": settings[name] for i, name in enumerate(names)},
    )
    return dict(zip(names, before, strict=True))
