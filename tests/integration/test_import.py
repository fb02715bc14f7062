"""CSV import into the real PostgreSQL schema, with the exact reports asserted."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from dialer.domain.vocabulary import CampaignStatus, PhoneType, Role
from dialer.services.importer import ImportFileError, RowError, import_contacts
from dialer.store.models import AuditEntry, CallingListEntry, Campaign, Contact, ContactPhone, User

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
    assert (merged.first_name, merged.last_name) == ("Grace", "Hopper")
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


async def test_import_into_a_campaign_shares_contacts_among_volunteers(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        alice = User(username="alice", password_hash="x", role=Role.VOLUNTEER)
        bob = User(username="bob", password_hash="x", role=Role.VOLUNTEER)
        campaign = Campaign(title="GOTV", status=CampaignStatus.ACTIVE)
        session.add_all([alice, bob, campaign])
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
