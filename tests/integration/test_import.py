"""CSV import into the real PostgreSQL schema, with the exact reports asserted."""

from __future__ import annotations

import asyncio
import io
import os
import random
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from dialer.domain.notifications import NotificationKind
from dialer.domain.vocabulary import CampaignStatus, PhoneType, Role
from dialer.services import importer
from dialer.services.importer import (
    ImportFileError,
    ImportJobView,
    ImportService,
    RowError,
    import_contacts,
    parse_rows,
)
from dialer.store import engine as db
from dialer.store.models import (
    AuditEntry,
    CallingListEntry,
    Campaign,
    Contact,
    ContactPhone,
    ImportJob,
    Notification,
    Team,
    TeamMember,
    User,
)

Sessions = async_sessionmaker[AsyncSession]
CSV = Path(__file__).parent.parent / "fixtures" / "csv"


async def _contacts(sessions: Sessions) -> list[Contact]:
    async with sessions() as session:
        result = await session.scalars(
            select(Contact).options(selectinload(Contact.phones)).order_by(Contact.id)
        )
        return list(result)


async def test_good_rows_are_imported_with_every_field(sessions: Sessions) -> None:
    report = await import_contacts(sessions, CSV / "good.csv", region="CA")
    assert (report.imported, report.updated, report.unchanged, report.rejected) == (4, 0, 0, 0)
    assert report.errors == []
    ada, emile, marie, tommy = await _contacts(sessions)
    assert (ada.first_name, ada.last_name, ada.email, ada.language) == (
        "Ada",
        "Lovelace",
        "ada@example.org",
        "en",
    )
    assert ada.area == "Montréal"
    assert ada.tags == ["donor", "volunteer"]
    assert ada.support_score == 4
    assert ada.notes == "Met at the rally"
    assert [(p.e164, p.phone_type) for p in ada.phones] == [("+15145550184", PhoneType.OTHER)]
    assert [(p.e164, p.phone_type) for p in emile.phones] == [
        ("+15145550185", PhoneType.OTHER),
        ("+14385550199", PhoneType.MOBILE),
    ]
    assert emile.email == "emile@example.org"
    assert emile.do_not_call is False
    assert marie.phones[0].e164 == "+33142685300"
    assert (marie.language, marie.timezone) == ("fr-fr", "Europe/Paris")
    assert tommy.do_not_call is True
    assert tommy.dnc_at is not None
    assert tommy.dnc_reason == "imported as do-not-call"


async def test_reimporting_the_same_file_changes_nothing(sessions: Sessions) -> None:
    await import_contacts(sessions, CSV / "good.csv", region="CA")
    before = [
        (c.id, c.first_name, c.tags, c.notes, len(c.phones)) for c in await _contacts(sessions)
    ]
    report = await import_contacts(sessions, CSV / "good.csv", region="CA")
    assert (report.imported, report.updated, report.unchanged, report.rejected) == (0, 0, 4, 0)
    after = [
        (c.id, c.first_name, c.tags, c.notes, len(c.phones)) for c in await _contacts(sessions)
    ]
    assert after == before


async def test_duplicates_are_merged_by_number(sessions: Sessions) -> None:
    report = await import_contacts(sessions, CSV / "duplicates.csv", region="CA")
    # Lines 3 and 4 share a number with line 2 (directly, or through the
    # mobile line 3 added), so three rows make one person.
    assert (report.imported, report.updated, report.unchanged, report.rejected) == (2, 2, 0, 0)
    merged, alan = await _contacts(sessions)
    assert sorted(p.e164 for p in merged.phones) == ["+14385550142", "+15145550184"]
    # Rows of one file that are one person merge by the rule for contacts on
    # file: the first row's name stays, the later ones are conflicts.
    assert (merged.first_name, merged.last_name) == ("Ada", "Lovelace")
    assert report.conflicts == 2
    assert [str(change) for change in report.changes if change.change.field == "name"] == [
        "line 3: Ada Lovelace, name: kept 'Ada Lovelace', the file says 'Ada King'",
        "line 4: Ada Lovelace, name: kept 'Ada Lovelace', the file says 'Grace Hopper'",
    ]
    assert merged.tags == ["donor", "member"]
    assert merged.notes == "first row\nsecond row\nsame person as line 3 through the mobile"
    assert alan.last_name == "Turing"
    again = await import_contacts(sessions, CSV / "duplicates.csv", region="CA")
    assert again.imported == 0 and again.rejected == 0
    assert len(await _contacts(sessions)) == 2


async def test_a_row_joining_two_existing_contacts_is_rejected(
    sessions: Sessions, tmp_path: Path
) -> None:
    first = tmp_path / "first.csv"
    first.write_text("name,phone\nA One,5145550184\nB Two,5145550185\n")
    await import_contacts(sessions, first, region="CA")
    second = tmp_path / "second.csv"
    second.write_text("name,phone,mobile\nC Three,5145550184,5145550185\n")
    report = await import_contacts(sessions, second, region="CA")
    assert report.errors == [
        RowError(
            2,
            "its numbers belong to different contacts (#1, #2); fix the row or merge the "
            "contacts first",
        )
    ]


async def test_malformed_rows_are_reported_and_the_rest_imported(sessions: Sessions) -> None:
    report = await import_contacts(sessions, CSV / "malformed.csv", region="CA")
    assert [str(error) for error in report.errors] == [
        "line 3: no phone number",
        "line 4: wrong number of digits: '555-12'",
        "line 5: invalid email address 'not-an-email'",
        "line 6: support score must be a whole number from 1 to 5, not '9'",
        "line 7: invalid language 'english please' (use a code like fr or en)",
        "line 8: unknown time zone 'Mars/Olympus' (use an IANA name like America/Toronto)",
        "line 9: 8 fields but the header has 7 (an unquoted comma?)",
        "line 10: malformed CSV: unexpected end of data",
    ]
    assert (report.imported, report.rejected) == (1, 8)
    [good] = await _contacts(sessions)
    assert good.email == "good@example.org"


async def test_wrong_encoding_rejects_only_the_undecodable_rows(sessions: Sessions) -> None:
    report = await import_contacts(sessions, CSV / "latin1.csv", region="CA")
    assert [str(error) for error in report.errors] == [
        "line 2: not valid utf-8-sig text (byte 0xe9 at column 4); save the file as UTF-8 "
        "or pass --encoding (e.g. latin-1)"
    ]
    assert report.imported == 1
    fixed = await import_contacts(sessions, CSV / "latin1.csv", region="CA", encoding="latin-1")
    assert (fixed.imported, fixed.unchanged, fixed.rejected) == (1, 1, 0)
    names = sorted(c.first_name for c in await _contacts(sessions))
    assert names == ["José", "Plain"]


async def test_an_empty_file_is_refused(sessions: Sessions) -> None:
    with pytest.raises(ImportFileError, match="the file is empty"):
        await import_contacts(sessions, CSV / "empty.csv", region="CA")


async def test_a_file_without_a_phone_column_is_refused(sessions: Sessions) -> None:
    with pytest.raises(ImportFileError, match="no phone column in the header; accepted names: "):
        await import_contacts(sessions, CSV / "no_phone.csv", region="CA")
    assert await _contacts(sessions) == []


async def test_ten_thousand_garbage_rows(sessions: Sessions, tmp_path: Path) -> None:
    rng = random.Random(7)
    alphabet = "abc,;\"'\t 0123456789+-()éß€\\"
    lines = ["name,phone"]
    for _ in range(10_000):
        lines.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))))
    lines.append("Real Person,5145550177")
    path = tmp_path / "garbage.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = await import_contacts(sessions, path, region="CA")
    # Garbage lines either fail or are blank; none sneaks in a real number,
    # the real row still goes in, and every rejection names its line.
    assert report.imported + report.updated >= 1
    assert report.rejected > 9_000
    assert len({error.line for error in report.errors}) == report.rejected
    assert all(2 <= error.line <= 10_002 for error in report.errors)
    async with sessions() as session:
        numbers = set((await session.scalars(select(ContactPhone.e164))).all())
    assert "+15145550177" in numbers


async def _campaign_of_alice_and_bob(sessions: Sessions) -> tuple[User, User, Campaign]:
    """An active campaign of a team of two volunteers, alice and bob."""
    async with sessions.begin() as session:
        team = Team(name="Montreal")
        alice = User(username="alice", password_hash="x", role=Role.VOLUNTEER)
        bob = User(username="bob", password_hash="x", role=Role.VOLUNTEER)
        session.add_all([team, alice, bob])
        await session.flush()
        session.add_all([TeamMember(team_id=team.id, user_id=user.id) for user in (alice, bob)])
        campaign = Campaign(title="GOTV", status=CampaignStatus.ACTIVE, team_id=team.id)
        session.add(campaign)
    return alice, bob, campaign


async def test_import_into_a_campaign_shares_contacts_among_volunteers(sessions: Sessions) -> None:
    alice, bob, campaign = await _campaign_of_alice_and_bob(sessions)
    report = await import_contacts(
        sessions, CSV / "good.csv", region="CA", campaign_id=campaign.id, assign_to=["alice", "bob"]
    )
    assert report.added_to_list == 4
    async with sessions() as session:
        owners = (
            await session.scalars(
                select(CallingListEntry.volunteer_id).order_by(CallingListEntry.contact_id)
            )
        ).all()
        assert list(owners) == [alice.id, bob.id, alice.id, bob.id]
        audit_rows = (await session.scalars(select(AuditEntry.changes))).all()
    assert audit_rows[-1]["added_to_list"] == 4
    again = await import_contacts(
        sessions, CSV / "good.csv", region="CA", campaign_id=campaign.id, assign_to=["alice", "bob"]
    )
    assert again.added_to_list == 0


async def test_a_batch_retried_after_a_concurrent_insert_shares_and_tells_once(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A concurrent import inserting the same number makes the batch's
    transaction roll back and run again: its assignments and the round-robin
    must count once, as the notifications are told once."""
    alice, bob, campaign = await _campaign_of_alice_and_bob(sessions)
    real_write = importer._write_batch
    calls = 0

    async def collides_once(session: AsyncSession, *args: object) -> None:
        nonlocal calls
        calls += 1
        await real_write(session, *args)  # type: ignore[arg-type]
        if calls == 1:
            # What the unique number index says when another import won the race.
            raise IntegrityError("INSERT", {}, Exception("duplicate key value"))

    monkeypatch.setattr(importer, "_write_batch", collides_once)
    report = await import_contacts(
        sessions, CSV / "good.csv", region="CA", campaign_id=campaign.id, assign_to=["alice", "bob"]
    )
    assert calls == 2 and report.added_to_list == 4
    async with sessions() as session:
        owners = (
            await session.scalars(
                select(CallingListEntry.volunteer_id).order_by(CallingListEntry.contact_id)
            )
        ).all()
        told = dict(
            (
                await session.execute(
                    select(Notification.user_id, Notification.params).where(
                        Notification.kind == NotificationKind.ASSIGNMENT
                    )
                )
            ).all()
        )
    assert list(owners) == [alice.id, bob.id, alice.id, bob.id]
    assert told == {alice.id: {"count": 2}, bob.id: {"count": 2}}


async def test_unknown_assignee_or_campaign_stops_before_writing(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        campaign = Campaign(title="GOTV")
        session.add(campaign)
    with pytest.raises(ImportFileError, match="unknown user\\(s\\) for --assign-to: nobody"):
        await import_contacts(
            sessions, CSV / "good.csv", region="CA", campaign_id=campaign.id, assign_to=["nobody"]
        )
    with pytest.raises(ImportFileError, match="no campaign with id 999"):
        await import_contacts(sessions, CSV / "good.csv", region="CA", campaign_id=999)
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Contact)) == 0


# -- reading the file a chunk at a time, and background jobs ---------------------------


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_lines_cut_across_chunks_parse_as_the_whole_file_does(
    newline: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = newline.join(
        [
            "name,phone,notes",
            "A One,5145550184,plain",
            'B Two,5145550185,"two' + newline + 'lines"',
            "C Three,555-12,",
            "D Four,5145550186,last",
        ]
    )
    data = (text + newline).encode()

    def parsed() -> list[tuple[int, str | dict[str, object]]]:
        _columns, rows = parse_rows(data, region="CA")
        return [(row.line, row.reason if isinstance(row, RowError) else row.values) for row in rows]

    whole = parsed()
    # Every cut, even between a CR and its LF, gives the same rows and line numbers.
    monkeypatch.setattr(importer, "_READ_CHUNK", 3)
    assert parsed() == whole
    assert whole[1] == (3, {"first_name": "B", "last_name": "Two", "notes": f"two{newline}lines"})
    assert whole[2:] == [
        (5, "wrong number of digits: '555-12'"),
        (6, {"first_name": "D", "last_name": "Four", "notes": "last"}),
    ]


async def test_a_big_file_keeps_its_first_rejected_rows_and_exact_counts(
    sessions: Sessions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "BATCH_SIZE", 50)
    lines = ["name,phone"] + [f"Bad {n},555-{n:02d}" for n in range(1000)]
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    with path.open("rb") as stream:
        report = await importer.import_stream(
            sessions, stream, name="bad.csv", region="CA", errors_kept=30
        )
    assert report.rejected == 1000
    assert [error.line for error in report.errors[:30]] == list(range(2, 32))
    assert len(report.errors) <= 60


async def _wait_for(service: ImportService, job_id: int, campaign_id: int) -> ImportJobView:
    async with asyncio.timeout(60):
        while True:
            job = await service.job(job_id, campaign_id=campaign_id)
            assert job is not None
            if job.finished:
                return job
            await asyncio.sleep(0.05)


async def _campaign(sessions: Sessions) -> int:
    async with sessions.begin() as session:
        campaign = Campaign(title="GOTV", status=CampaignStatus.ACTIVE)
        session.add(campaign)
    return campaign.id


async def test_a_background_import_runs_in_a_child_process_and_keeps_its_report(
    sessions: Sessions, tmp_path: Path
) -> None:
    campaign_id = await _campaign(sessions)
    upload = tmp_path / "upload.csv"
    upload.write_bytes((CSV / "malformed.csv").read_bytes())
    service = ImportService(sessions)
    job_id = await service.start_import(
        upload, file_name="malformed.csv", region="CA", campaign_id=campaign_id
    )
    job = await _wait_for(service, job_id, campaign_id)
    assert (job.state, job.rows_done, job.percent) == ("done", 9, 100)
    assert job.report is not None
    assert (job.report.imported, job.report.rejected, job.report.added_to_list) == (1, 8, 1)
    assert str(job.report.errors[0]) == "line 3: no phone number"
    async with asyncio.timeout(10):  # the upload is deleted once its process exits
        while upload.exists():
            await asyncio.sleep(0.02)
    assert await service.job(job_id, campaign_id=campaign_id + 1) is None


async def test_a_file_refused_whole_starts_no_job(sessions: Sessions, tmp_path: Path) -> None:
    campaign_id = await _campaign(sessions)
    upload = tmp_path / "upload.csv"
    upload.write_bytes((CSV / "good.csv").read_bytes())
    service = ImportService(sessions)
    # Worded for the web page: no command-line option in it.
    web_words = r"^unknown user to share the contacts among: nobody$"
    with pytest.raises(ImportFileError, match=web_words):
        await service.start_import(
            upload,
            file_name="good.csv",
            region="CA",
            campaign_id=campaign_id,
            assign_to=["nobody"],
        )
    assert not upload.exists()
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(ImportJob)) == 0
        assert await session.scalar(select(func.count()).select_from(Contact)) == 0


async def test_on_sqlite_the_background_import_runs_in_the_process(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.sqlite3'}"
    await db.upgrade_async(url)
    async with db.open_database(url) as demo:
        campaign_id = await _campaign(demo)
        upload = tmp_path / "upload.csv"
        upload.write_bytes((CSV / "good.csv").read_bytes())
        service = ImportService(demo)
        job_id = await service.start_import(
            upload, file_name="good.csv", region="CA", campaign_id=campaign_id
        )
        job = await _wait_for(service, job_id, campaign_id)
        assert job.report is not None
        assert (job.state, job.report.imported, job.report.added_to_list) == ("done", 4, 4)
        assert len(await _contacts(demo)) == 4
        # The report's lines are kept for the downloads on SQLite too.
        upload = tmp_path / "again.csv"
        upload.write_bytes(b"name,phone\nAda Byron,514 555 0184\nBad,555-12\n")
        job_id = await service.start_import(
            upload, file_name="again.csv", region="CA", campaign_id=campaign_id
        )
        job = await _wait_for(service, job_id, campaign_id)
        rejected, changes = io.StringIO(), io.StringIO()
        await service.write_rejected_csv(job, rejected)
        await service.write_changes_csv(job, changes)
        assert rejected.getvalue().splitlines()[1:] == [
            "3,wrong number of digits: '555-12',Bad,555-12"
        ]
        assert "kept 'Ada Lovelace', the file says 'Ada Byron'" in changes.getvalue()


# -- the life of a job -------------------------------------------------------------------


async def test_a_job_whose_process_cannot_start_ends_failed(
    sessions: Sessions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_process(*_args: object, **_kwargs: object) -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(asyncio, "create_subprocess_exec", no_process)
    campaign_id = await _campaign(sessions)
    upload = tmp_path / "upload.csv"
    upload.write_bytes((CSV / "good.csv").read_bytes())
    service = ImportService(sessions, upload_directory=tmp_path / "uploads")
    job_id = await service.start_import(
        upload, file_name="good.csv", region="CA", campaign_id=campaign_id
    )
    job = await _wait_for(service, job_id, campaign_id)
    assert job.state == "failed"
    assert job.error is not None and job.error.startswith("an unexpected error stopped")
    async with asyncio.timeout(10):  # deleted once the job's task ends, after "failed"
        while upload.exists():
            await asyncio.sleep(0.02)


async def test_uploads_left_by_a_killed_process_are_removed_when_an_import_starts(
    sessions: Sessions, tmp_path: Path
) -> None:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    two_days_ago = time.time() - 2 * 86400
    leftover = uploads / "dialer-import-abc.csv"
    recent = uploads / "dialer-import-def.csv"  # perhaps another process's upload
    unrelated = uploads / "someone-else.csv"
    for path in (leftover, recent, unrelated):
        path.write_text("name,phone\n")
    for path in (leftover, unrelated):
        os.utime(path, (two_days_ago, two_days_ago))
    campaign_id = await _campaign(sessions)
    upload = tmp_path / "upload.csv"
    upload.write_bytes((CSV / "good.csv").read_bytes())
    service = ImportService(sessions, upload_directory=uploads)
    job_id = await service.start_import(
        upload, file_name="good.csv", region="CA", campaign_id=campaign_id
    )
    assert (await _wait_for(service, job_id, campaign_id)).state == "done"
    assert sorted(path.name for path in uploads.iterdir()) == [
        "dialer-import-def.csv",
        "someone-else.csv",
    ]
