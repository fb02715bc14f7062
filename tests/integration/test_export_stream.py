"""The results export (dialer.services.export): the same bytes as the export of
ORM entities it replaced, whether PostgreSQL writes the lines (COPY) or
Python does (SQLite, and the answers SQL leaves to Python); streamed in
chunks of whole lines; formulas neutralised."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.vocabulary import CallOutcome, CallState, CampaignStatus, DispositionOutcome
from dialer.services.export import (
    BASE_COLUMNS,
    ExportError,
    ResultsExport,
    export_results,
    open_results,
    spreadsheet_safe,
)
from dialer.store.models import CallAttempt, Campaign, Contact, Disposition, User

Sessions = async_sessionmaker[AsyncSession]

SURVEY: dict[str, Any] = {
    "questions": [
        {"id": "vote", "label": "Will you vote?", "type": "yes_no"},
        {"id": "score", "label": "How sure?", "type": "scale", "min": 1, "max": 5},
        {"id": "why", "label": "Why?", "type": "text"},
        {
            "id": "picks",
            "label": "Which?",
            "type": "multiple_choice",
            "choices": [{"value": "a", "label": "A"}, {"value": "b", "label": "B"}],
        },
        {"id": "amount", "label": "How much?", "type": "number"},
        {"id": "never", "label": "Never answered", "type": "text"},
    ]
}
# Cells a spreadsheet would run, cells CSV must quote, and COPY's escapes.
TRICKY = [
    "",
    "plain",
    '=HYPERLINK("x")',
    "+1 555",
    "+15145550184",
    "-5",
    "-5.5",
    "-",
    "-x",
    "@home",
    "\tTab",
    "\rCR",
    "a,b",
    'quote "q"',
    "multi\nline",
    "crlf\r\nx",
    "back\\slash",
    "back\\nslash",
    "ctrl\x01one",
    "ctrl\x02two",
    "x\x0bv\x0cf\x08b",
    "é accent ü",
    "😀 emoji",
    "1.5",
    "=",
    " =space",
    '"',
    ",",
    "\\.",
    "\\",
]
# JSON as stored, including what json.dumps never writes (-0, 1E2, duplicate keys).
ANSWERS = [
    "{}",
    '{"vote": true, "score": 4, "why": "=1+2", "picks": ["a", "b"], "amount": 1.5}',
    '{"vote": false, "score": -3, "why": "line\\nbreak, \\"q\\"", "picks": [], "amount": 100.0}',
    '{"why": "caf\\u00e9 \\ud83d\\ude00", "amount": 1e16, "picks": ["=a", "b;c"]}',
    '{"why": "nul\\u0000here"}',
    '{"score": -0, "amount": 1E2}',
    '{"score": 0, "why": null}',
    '{"vote": 1, "why": ["x", 1, true, null, 1.5]}',
    '{"why": {"nested": [1, 2]}}',
    '{"score": 12345678901234567890}',
    '{"why": "a", "why": "b"}',
    '{"why": "\\\\u0000 is not a NUL"}',
    '{"why": "-", "picks": ["-1"]}',
    '{"why": "\\t tab", "vote": "yes"}',
    '{"why": ""}',
    '{"why": "\\r"}',
    '{"why": "x\\u0001y"}',
    '{"amount": 0.1, "score": 5}',
]
START = datetime(2026, 11, 24, 17, 30, tzinfo=UTC)


@pytest.fixture
def db(either_database: Sessions) -> Sessions:
    """On PostgreSQL, then on SQLite."""
    return either_database


async def seed(sessions: Sessions, *, calls: int = len(TRICKY) * 2) -> int:
    """A campaign with ``calls`` calls, every tricky value somewhere in them."""
    async with sessions.begin() as session:
        volunteers = [
            User(username=name, password_hash="x") for name in ("alice", "=bob", "carol,c")
        ]
        campaign = Campaign(title="GOTV", status=CampaignStatus.ACTIVE, survey=SURVEY)
        session.add_all([*volunteers, campaign])
        await session.flush()
        people = [
            Contact(first_name=TRICKY[n % len(TRICKY)], last_name=TRICKY[(n * 7) % len(TRICKY)])
            for n in range(len(TRICKY))
        ]
        session.add_all(people)
        await session.flush()
        placed = []
        for n in range(calls):
            requested = START + timedelta(seconds=n * 13, microseconds=(n % 3) * 250_000)
            answered = requested + timedelta(seconds=5) if n % 4 else None
            # One call still live (one per volunteer and contact at most).
            live = n == 9
            placed.append(
                CallAttempt(
                    call_id=f"c{n:05d}",
                    campaign_id=campaign.id,
                    contact_id=people[n % len(people)].id,
                    volunteer_id=volunteers[n % len(volunteers)].id,
                    number_e164=["+15145550184", "+33142685300", "=1+1"][n % 3],
                    caller_id=None if n % 5 == 0 else "+15145550000",
                    state=CallState.TALKING if live else CallState.ENDED,
                    outcome=None if live else list(CallOutcome)[n % len(CallOutcome)],
                    requested_at=requested,
                    contact_answered_at=answered,
                    ended_at=None if live else (answered or requested) + timedelta(seconds=40),
                    dial_status=TRICKY[(n * 3) % len(TRICKY)] or None,
                )
            )
        session.add_all(placed)
        await session.flush()
        session.add_all(
            Disposition(
                submission_id=f"s{n:05d}",
                call_attempt_id=call.id,
                contact_id=call.contact_id,
                campaign_id=campaign.id,
                volunteer_id=call.volunteer_id,
                outcome=list(DispositionOutcome)[n % len(DispositionOutcome)],
                consent=[True, False, None][n % 3],
                mobilized=[None, True, False][n % 3],
                support_score=None if n % 2 else 1 + n % 5,
                callback_at=START + timedelta(days=1, microseconds=n % 2) if n % 4 == 1 else None,
                comments=TRICKY[(n * 5) % len(TRICKY)],
                survey_answers={},
            )
            for n, call in enumerate(placed)
            if n % 6 != 5
        )
    async with sessions.begin() as session:
        # The answers' JSON exactly as written above, whatever json.dumps would make of it.
        await session.execute(
            text("UPDATE dispositions SET survey_answers = :answers WHERE submission_id = :s"),
            [
                {"answers": ANSWERS[n % len(ANSWERS)], "s": f"s{n:05d}"}
                for n in range(calls)
                if n % 6 != 5
            ],
        )
    return campaign.id


async def entity_export(session: AsyncSession, campaign_id: int) -> bytes:
    """The export as it was: ORM entities, one csv.writer row each."""
    campaign = await session.get(Campaign, campaign_id)
    assert campaign is not None
    question_ids = [question.id for question in campaign.survey.questions]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*BASE_COLUMNS, *(f"survey:{qid}" for qid in question_ids)])
    rows = await session.stream(
        select(CallAttempt, Contact, User.username, Disposition)
        .join(Contact, Contact.id == CallAttempt.contact_id)
        .join(User, User.id == CallAttempt.volunteer_id)
        .outerjoin(Disposition, Disposition.call_attempt_id == CallAttempt.id)
        .where(CallAttempt.campaign_id == campaign_id)
        .order_by(CallAttempt.requested_at, CallAttempt.id)
    )
    async for call, contact, username, disposition in rows:
        answers = disposition.survey_answers if disposition else {}
        values: list[Any] = [
            call.call_id,
            contact.id,
            contact.first_name,
            contact.last_name,
            call.number_e164,
            username,
            call.caller_id,
            call.requested_at,
            call.contact_answered_at,
            call.ended_at,
            call.state.value,
            call.outcome.value if call.outcome else None,
            call.dial_status,
            disposition.outcome.value if disposition else None,
            disposition.consent if disposition else None,
            disposition.mobilized if disposition else None,
            disposition.support_score if disposition else None,
            disposition.callback_at if disposition else None,
            disposition.comments if disposition else None,
        ]
        values.extend(answers.get(qid) for qid in question_ids)
        writer.writerow([spreadsheet_safe(value) for value in values])
    return out.getvalue().encode()


class Chunks:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    async def __call__(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


async def exported(sessions: Sessions, campaign_id: int, *, in_python: bool = False) -> Chunks:
    chunks = Chunks()
    async with sessions() as session:
        export = await open_results(session, campaign_id)
        if in_python:
            # The path SQLite takes, on PostgreSQL's rows.
            export.rows = await export._format_in_python(chunks)
        else:
            await export.write_to(chunks)
    return chunks


def differences(got: bytes, expected: bytes) -> Iterable[tuple[str, str]]:
    for mine, theirs in zip(got.split(b"\r\n"), expected.split(b"\r\n"), strict=False):
        if mine != theirs:
            yield mine.decode(), theirs.decode()


async def test_the_export_is_byte_for_byte_the_entity_export(db: Sessions) -> None:
    campaign_id = await seed(db)
    async with db() as session:
        expected = await entity_export(session, campaign_id)
    got = (await exported(db, campaign_id)).data
    assert list(differences(got, expected)) == []
    assert got == expected


async def test_python_writes_the_lines_postgresql_writes(sessions: Sessions) -> None:
    campaign_id = await seed(sessions)
    _header, rows = (await exported(sessions, campaign_id)).data.split(b"\r\n", 1)
    assert (await exported(sessions, campaign_id, in_python=True)).data == rows


async def test_formulas_are_neutralised_and_plain_numbers_left_alone(db: Sessions) -> None:
    campaign_id = await seed(db)
    out = io.BytesIO()
    async with db() as session:
        assert await export_results(session, campaign_id, out) == len(TRICKY) * 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue().decode(), newline="")))
    names = {row["first_name"] for row in rows}
    assert '\'=HYPERLINK("x")' in names and "'@home" in names and "'-x" in names
    assert "'\tTab" in names and "'+1 555" in names
    assert {"-5", "-5.5", "+15145550184", "1.5", "multi\nline", 'quote "q"'} <= names
    assert {row["number"] for row in rows} == {"+15145550184", "+33142685300", "'=1+1"}
    assert {row["volunteer"] for row in rows} == {"alice", "'=bob", "carol,c"}
    answered = rows[1]
    assert (answered["survey:vote"], answered["survey:score"], answered["survey:why"]) == (
        "yes",
        "4",
        "'=1+2",
    )
    assert (answered["survey:picks"], answered["survey:amount"]) == ("a;b", "1.5")


async def test_many_rows_come_in_chunks_of_whole_lines(sessions: Sessions) -> None:
    """PostgreSQL: COPY's chunks, with the lines Python finishes among them."""
    campaign_id = await seed(sessions, calls=3000)
    async with sessions() as session:
        expected = await entity_export(session, campaign_id)
    chunks = await exported(sessions, campaign_id)
    assert chunks.data == expected
    assert len(chunks.chunks) > 2
    assert all(chunk.endswith(b"\r\n") for chunk in chunks.chunks)


async def test_a_missing_campaign_is_refused_before_anything_is_written(db: Sessions) -> None:
    out = io.BytesIO()
    async with db() as session:
        with pytest.raises(ExportError):
            await export_results(session, 999, out)
    assert out.getvalue() == b""


async def test_an_export_counts_its_rows(db: Sessions) -> None:
    campaign_id = await seed(db, calls=7)
    async with db() as session:
        export = await open_results(session, campaign_id)
        assert isinstance(export, ResultsExport)
        assert await export.write_to(Chunks()) == 7 == export.rows
    assert json.loads(json.dumps(export.header))[-1] == "survey:never"


async def test_the_export_leaves_its_transaction_settings_as_it_found_them(
    sessions: Sessions,
) -> None:
    """PostgreSQL: the planner settings made for the COPY do not reach what the
    same transaction runs after it."""
    campaign_id = await seed(sessions, calls=5)
    show = text(
        "SELECT current_setting('enable_hashjoin'), current_setting('work_mem'),"
        " current_setting('jit')"
    )
    async with sessions() as session:
        before = tuple((await session.execute(show)).one())
        export = await open_results(session, campaign_id)
        assert await export.write_to(Chunks()) == 5
        assert tuple((await session.execute(show)).one()) == before
        assert before[0] == "on"
