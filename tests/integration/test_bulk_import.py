"""The bulk import path gives what the batch path gives: the same report, the same rows.

A 50,000-row voter file with everything a real one holds (new people, rows
of one person sharing numbers within a batch and across batches, rows for
contacts on file that fill, conflict or overwrite, do-not-call rows, bad
numbers, emails and CSV, numbers the dialing policy refuses, contacts of
another team under a non-admin importer, a campaign shared among two
volunteers) is imported by the batch path into one state and by the bulk
path into an identical one; then both are compared, ids and times aside.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.compliance import DialingPolicy
from dialer.domain.vocabulary import CampaignStatus, PhoneType, Role
from dialer.runtime import cli
from dialer.runtime.settings import Settings
from dialer.services import bulk_import, importer
from dialer.services.importer import ImportReport, import_contacts, policy_options, run_job
from dialer.store import engine as db
from dialer.store.models import (
    AuditEntry,
    Base,
    CallingListEntry,
    Campaign,
    Contact,
    ContactPhone,
    ImportJob,
    ImportJobRow,
    Notification,
    Team,
    TeamMember,
    User,
)

# The heavy imports run one after another on one xdist worker (.ci/run's
# --dist loadgroup): two at once starve the two cores, and the timing
# assertions of the tests beside them.
pytestmark = pytest.mark.xdist_group("heavy_imports")

Sessions = async_sessionmaker[AsyncSession]
POLICY = DialingPolicy.parse(["CA"], ["+1900"])
ROWS = 50_000
HEADER = (
    "first_name,last_name,phone,mobile,email,language,tags,support,dnc,dnc_reason,notes,"
    "timezone,source\n"
)
FIRST = ["Ada", "Émile", "Marie", "Tommy", "Grace", "Alan", "Louise", "Jean", "Fatima", "Wei"]
LAST = ["Lovelace", "Nelligan", "Curie", "Douglas", "Hopper", "Turing", "Arbour", "Tremblay"]
TAGS = ["", "donor", "gotv", "donor;gotv", "member", "youth|gotv"]
ZONES = ["", "", "", "America/Toronto", "America/Vancouver"]


def _number(index: int, area: str = "438") -> str:
    """A valid Canadian number of its own for each index."""
    return f"+1{area}{200 + index // 10_000:03d}{index % 10_000:04d}"


def _written(e164: str, rng: random.Random) -> str:
    """A number as people type it."""
    area, exchange, line = e164[2:5], e164[5:8], e164[8:]
    return rng.choice(
        [
            f"({area}) {exchange}-{line}",
            f"{area}-{exchange}-{line}",
            f"+1 {area} {exchange} {line}",
            f"{area}{exchange}{line}",
        ]
    )


def _cell(value: str) -> str:
    if any(char in value for char in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


@dataclass
class Seed:
    """The contacts on file before the imports (the same in both states)."""

    visible: list[str] = field(default_factory=list)  # on the campaign's list
    dnc: list[str] = field(default_factory=list)  # visible and on the do-not-call list
    outside: list[str] = field(default_factory=list)  # another team's, or on no list


def _seed_rows(rng: random.Random) -> tuple[list[dict[str, Any]], Seed]:
    seed = Seed()
    contacts: list[dict[str, Any]] = []
    now = datetime(2026, 1, 5, tzinfo=UTC)
    for index in range(1500):
        e164 = _number(index, "514")
        dnc = index % 15 == 0
        contacts.append(
            {
                "first_name": rng.choice(["", *FIRST]),
                "last_name": rng.choice(["", *LAST]),
                "email": rng.choice([None, f"on-file{index}@example.org"]),
                "language": rng.choice([None, "fr", "en"]),
                "address": None,
                "area": rng.choice([None, "Verdun", "Rosemont"]),
                "timezone": None,
                "tags": rng.choice([[], ["donor"], ["member", "gotv"]]),
                "support_score": rng.choice([None, 2, 5]),
                "do_not_call": dnc,
                "dnc_reason": "asked on the phone" if dnc else None,
                "dnc_at": now if dnc else None,
                "notes": rng.choice(["", "called in 2024"]),
                "created_at": now,
                "updated_at": now,
                "e164": e164,
            }
        )
        if index < 1400:
            (seed.dnc if dnc else seed.visible).append(e164)
        else:
            seed.outside.append(e164)
    return contacts, seed


async def _seed(sessions: Sessions) -> dict[str, int]:
    """The same world each time: two teams, their campaigns, the contacts on file."""
    rng = random.Random(5)
    contact_rows, _seed_info = _seed_rows(rng)
    ids: dict[str, int] = {}
    async with sessions.begin() as session:
        montreal, quebec = Team(name="Montreal"), Team(name="Quebec")
        users = {
            name: User(username=name, password_hash="x", role=role)
            for name, role in [
                ("olivia", Role.ORGANIZER),
                ("alice", Role.VOLUNTEER),
                ("bob", Role.VOLUNTEER),
                ("oscar", Role.ORGANIZER),
            ]
        }
        session.add_all([montreal, quebec, *users.values()])
        await session.flush()
        session.add_all(
            [
                TeamMember(team_id=montreal.id, user_id=users["olivia"].id),
                TeamMember(team_id=montreal.id, user_id=users["alice"].id),
                TeamMember(team_id=montreal.id, user_id=users["bob"].id),
                TeamMember(team_id=quebec.id, user_id=users["oscar"].id),
            ]
        )
        gotv = Campaign(title="GOTV", status=CampaignStatus.ACTIVE, team_id=montreal.id)
        canvass = Campaign(title="Canvass", status=CampaignStatus.ACTIVE, team_id=quebec.id)
        session.add_all([gotv, canvass])
        await session.flush()
        numbers = [row.pop("e164") for row in contact_rows]
        result = await session.execute(
            insert(Contact).returning(Contact.id, sort_by_parameter_order=True), contact_rows
        )
        contact_ids = list(result.scalars())
        await session.execute(
            insert(ContactPhone),
            [
                {
                    "contact_id": contact_id,
                    "e164": e164,
                    "phone_type": PhoneType.OTHER,
                    "wrong_number": False,
                    "do_not_call": False,
                    "created_at": datetime(2026, 1, 5, tzinfo=UTC),
                }
                for contact_id, e164 in zip(contact_ids, numbers, strict=True)
            ],
        )
        entries = [
            {"campaign_id": gotv.id, "contact_id": contact_id, "attempts": 0, "done": False}
            for contact_id in contact_ids[:1400]
        ] + [
            {"campaign_id": canvass.id, "contact_id": contact_id, "attempts": 0, "done": False}
            for contact_id in contact_ids[1400:1450]
        ]
        await session.execute(insert(CallingListEntry), entries)
        ids = {name: user.id for name, user in users.items()}
        ids["gotv"] = gotv.id
    return ids


def write_voter_file(path: Path, rows: int = ROWS) -> None:
    """The first import: ``rows`` lines of a realistic voter file (see the module)."""
    rng = random.Random(19)
    _contacts, seed = _seed_rows(random.Random(5))
    out = bytearray(HEADER.encode())
    made: list[str] = []  # numbers of new people written so far
    fresh = 0

    def new_number() -> str:
        nonlocal fresh
        fresh += 1
        return _number(fresh)

    def person(e164: str, mobile: str = "", **overrides: str) -> list[str]:
        values = {
            "first_name": rng.choice(FIRST),
            "last_name": rng.choice(LAST),
            "phone": _written(e164, rng),
            "mobile": _written(mobile, rng) if mobile else "",
            "email": rng.choice(["", f"p{rng.randrange(10**9)}@example.org"]),
            "language": rng.choice(["", "fr", "en", "fr-CA"]),
            "tags": rng.choice(TAGS),
            "support": rng.choice(["", "1", "3", "5"]),
            "dnc": "yes" if rng.random() < 0.02 else rng.choice(["", "no"]),
            "dnc_reason": "",
            "notes": rng.choice(["", "", "met at the rally", "line one\nline two"]),
            "timezone": rng.choice(ZONES),
            "source": "voter file",
        }
        if values["dnc"] == "yes" and rng.random() < 0.5:
            values["dnc_reason"] = "moved away"
        values.update(overrides)
        return list(values.values())

    line = 1
    while line <= rows:
        line += 1
        roll = rng.random()
        if roll < 0.72 or not made:
            e164 = new_number()
            mobile = new_number() if rng.random() < 0.1 else ""
            cells = person(e164, mobile)
            made.append(e164)
        elif roll < 0.76:
            # The same person again within the batch: merged as one new person.
            cells = person(rng.choice(made[-300:]), new_number() if rng.random() < 0.3 else "")
        elif roll < 0.79:
            # ...or thousands of lines later: merged into the contact made by then.
            cells = person(rng.choice(made[: max(1, len(made) - 3000)]))
        elif roll < 0.86:
            # Contacts on file: fill what they lack, conflict with the rest.
            cells = person(rng.choice(seed.visible), new_number() if rng.random() < 0.2 else "")
        elif roll < 0.87:
            # On the do-not-call list: a "no" in the file never takes them off.
            cells = person(rng.choice(seed.dnc), dnc="no")
        elif roll < 0.875:
            cells = person(rng.choice(seed.outside))  # another team's: rejected
        elif roll < 0.878:
            a, b = rng.sample(seed.visible, 2)
            cells = person(a, b)  # two contacts on file in one row: rejected
        elif roll < 0.88:
            cells = person(made[-1], rng.choice(seed.visible))  # a new person and one on file
        elif roll < 0.89:
            # Numbers the dialing policy refuses: imported, flagged.
            refused = rng.choice(
                [f"1 900 {rng.randint(200, 999)} {rng.randint(1000, 9999)}", "+33 1 42 68 53 00"]
            )
            cells = person(new_number())
            cells[2] = refused
        elif roll < 0.9:
            cells = person(new_number())
            cells[2] = rng.choice(["555-12", "514-555-CALL", "5142345678 x12", "+999 123"])
        elif roll < 0.905:
            cells = person(new_number(), email="not-an-email")
        elif roll < 0.907:
            cells = person(new_number(), support="9")
        elif roll < 0.909:
            cells = person(new_number(), timezone="Mars/Olympus")
        elif roll < 0.911:
            out += (",".join(_cell(c) for c in person(new_number())) + ",extra,field\n").encode()
            continue
        elif roll < 0.913:
            out += b"\n"  # a blank line: not a row
            continue
        elif roll < 0.915:
            out += f'"Ada "the" Lovelace",x,{_written(new_number(), rng)}\n'.encode()
            continue
        elif roll < 0.917:
            # Not UTF-8 (a Latin-1 é).
            out += b"Jos\xe9,Tremblay," + _written(new_number(), rng).encode() + b"\n"
            continue
        else:
            e164 = new_number()
            cells = person(e164)
            made.append(e164)
        out += (",".join(_cell(cell) for cell in cells) + "\n").encode()
    path.write_bytes(bytes(out))


def write_overwrite_file(path: Path) -> None:
    """The second import, with overwrite: new values for contacts on file and new ones."""
    rng = random.Random(23)
    _contacts, seed = _seed_rows(random.Random(5))
    lines = [HEADER.rstrip("\n")]
    for index in range(3000):
        e164 = rng.choice([*seed.visible, _number(rng.randint(1, 30_000)), _number(90_000 + index)])
        lines.append(
            ",".join(
                _cell(cell)
                for cell in [
                    rng.choice(FIRST),
                    rng.choice(LAST),
                    _written(e164, rng),
                    "",
                    f"new{index}@example.org",
                    rng.choice(["fr", "en"]),
                    rng.choice(TAGS),
                    rng.choice(["1", "4"]),
                    rng.choice(["", "yes"]),
                    "",
                    "second file",
                    "",
                    "update",
                ]
            )
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# -- the two states, side by side ------------------------------------------------------


async def _reset(sessions: Sessions) -> None:
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    async with sessions.begin() as session:
        await session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


async def _import_both_files(
    sessions: Sessions, first: Path, second: Path, *, bulk: bool
) -> tuple[dict[str, Any], ImportReport, dict[str, Any]]:
    """The first file as a web job (organizer olivia, campaign shared by alice and
    bob, the dialing policy), the second from the command line with overwrite."""
    await _reset(sessions)
    ids = await _seed(sessions)
    now = datetime.now(UTC)
    async with sessions.begin() as session:
        job = ImportJob(
            campaign_id=ids["gotv"],
            actor_id=ids["olivia"],
            file_name=first.name,
            state="running",
            bytes_total=len(first.name),  # not read: the comparison ignores progress
            started_at=now,
            updated_at=now,
        )
        session.add(job)
        await session.flush()
        job_id = job.id
    second_report = await _import_files(sessions, ids, job_id, first, second, bulk=bulk)
    async with sessions() as session:
        stored = await session.get(ImportJob, job_id)
        assert stored is not None and stored.state == "done", stored and stored.error
        job_report = dict(stored.report or {})
    return job_report, second_report, await _snapshot(sessions)


async def _import_files(
    sessions: Sessions, ids: dict[str, int], job_id: int, first: Path, second: Path, *, bulk: bool
) -> ImportReport:
    await run_job(
        sessions,
        job_id,
        first,
        name=first.name,
        region="CA",
        campaign_id=ids["gotv"],
        assign_to=["alice", "bob"],
        actor_id=ids["olivia"],
        actor_label="web",
        web=True,
        policy=policy_options(POLICY),
        bulk=bulk,
    )
    return await import_contacts(
        sessions,
        second,
        region="CA",
        campaign_id=ids["gotv"],
        assign_to=["bob"],
        overwrite=True,
        policy=POLICY,
        bulk=bulk,
    )


_CONTACT_REF = re.compile(r"#(\d+)")


async def _snapshot(sessions: Sessions) -> dict[str, Any]:
    """Every row the imports wrote, each contact named by its first number, not its id."""
    async with sessions() as session:
        phones = (
            await session.execute(
                select(
                    ContactPhone.contact_id,
                    ContactPhone.e164,
                    ContactPhone.phone_type,
                    ContactPhone.do_not_call,
                    ContactPhone.wrong_number,
                ).order_by(ContactPhone.id)
            )
        ).all()
        numbers: dict[int, list[tuple[Any, ...]]] = {}
        for contact_id, *phone in phones:
            numbers.setdefault(contact_id, []).append(tuple(phone))
        key = {contact_id: found[0][0] for contact_id, found in numbers.items()}
        users = dict((await session.execute(select(User.id, User.username))).all())
        contacts = {
            key[c.id]: (
                c.first_name,
                c.last_name,
                c.email,
                c.language,
                c.address,
                c.area,
                c.timezone,
                c.tags,
                c.support_score,
                c.do_not_call,
                c.dnc_reason,
                c.dnc_at is not None,
                c.notes,
                numbers[c.id],
            )
            for c in await session.scalars(select(Contact))
        }
        entries = [
            (e.campaign_id, key[e.contact_id], users.get(e.volunteer_id), e.attempts, e.done)
            for e in await session.scalars(select(CallingListEntry).order_by(CallingListEntry.id))
        ]
        audit = [
            (
                a.action,
                a.entity_type,
                key[int(a.entity_id)] if a.entity_type == "contact" else a.entity_id,
                a.changes,
                a.actor_id,
                a.actor_label,
            )
            for a in await session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        ]
        job_rows = sorted(
            (row.kind, row.line, json.dumps(_named(row.data, key), sort_keys=True))
            for row in await session.scalars(select(ImportJobRow))
        )
        told = sorted(
            (n.user_id, str(n.kind), json.dumps(n.params, sort_keys=True))
            for n in await session.scalars(select(Notification))
        )
    return {
        "contacts": contacts,
        "entries": entries,
        "audit": audit,
        "job_rows": job_rows,
        "notifications": told,
        "key": key,
    }


def _named(value: Any, key: dict[int, str]) -> Any:
    """``value`` with the contact ids of report lines ("#12", a change's id) as numbers."""
    if isinstance(value, str):
        return _CONTACT_REF.sub(lambda found: "#" + key.get(int(found.group(1)), "?"), value)
    if isinstance(value, dict):
        if "c" in value:  # a change: [line, contact_id, contact, field, kind, old, new]
            change = list(value["c"])
            change[1] = None if change[1] is None else key[int(change[1])]
            return {**value, "c": change}
        return {name: _named(item, key) for name, item in value.items()}
    if isinstance(value, list):
        return [_named(item, key) for item in value]
    return value


def _report_json(report: dict[str, Any], key: dict[int, str]) -> dict[str, Any]:
    named = dict(report)
    named["errors"] = [[line, _named(reason, key)] for line, reason in report["errors"]]
    named["changes"] = [
        [line, None if contact_id is None else key[int(contact_id)], *rest]
        for line, contact_id, *rest in report["changes"]
    ]
    return named


@pytest.fixture(scope="module")
def voter_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("voters")
    first, second = folder / "voters.csv", folder / "updates.csv"
    write_voter_file(first)
    write_overwrite_file(second)
    return first, second


async def test_the_bulk_path_imports_as_todays_path_does(
    sessions: Sessions, voter_files: tuple[Path, Path]
) -> None:
    first, second = voter_files
    started = time.perf_counter()
    old_job, old_second, old = await _import_both_files(sessions, first, second, bulk=False)
    middle = time.perf_counter()
    new_job, new_second, new = await _import_both_files(sessions, first, second, bulk=True)
    print(f"batch path {middle - started:.1f} s, bulk path {time.perf_counter() - middle:.1f} s")

    # The file holds what it should: every kind of row, many times over.
    counts = {name: old_job[name] for name in ("imported", "updated", "unchanged", "rejected")}
    assert sum(counts.values()) == ROWS - old_job_blank_lines(first)
    assert old_job["imported"] > 35_000 and old_job["updated"] > 3_000
    assert old_job["unchanged"] > 0 and old_job["conflicts"] > 3_000
    assert old_job["flagged"] > 300 and old_job["rejected"] > 800
    assert old_job["added_to_list"] > 35_000
    reasons = {reason for _line, reason in old_job["errors"]}
    reasons |= {
        json.loads(data)["reason"] for kind, _line, data in old["job_rows"] if kind == "rejected"
    }
    assert any("another team" in reason for reason in reasons)
    assert any("different contacts (#" in reason for reason in reasons)
    assert any("malformed CSV" in reason for reason in reasons)
    assert any("not UTF-8 text" in reason for reason in reasons)
    assert len([a for a in old["audit"] if a[0] == "contact.import_overwrite"]) > 100

    assert _report_json(new_job, new["key"]) == _report_json(old_job, old["key"])
    assert _report_json(new_second.to_json(), new["key"]) == _report_json(
        old_second.to_json(), old["key"]
    )
    for part in ("contacts", "entries", "audit", "job_rows", "notifications"):
        assert new[part] == old[part], part


def old_job_blank_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n\n")


async def test_the_event_loop_keeps_turning_during_a_bulk_import(
    sessions: Sessions, tmp_path: Path
) -> None:
    path = tmp_path / "voters.csv"
    write_voter_file(path, rows=12_000)
    await _seed(sessions)
    # CPU time of the loop's thread between two ticks, not wall time: with
    # the other tests and the import's processes on two cores, the loop is
    # sometimes simply not scheduled for half a second, which says nothing
    # about what it runs.
    busy: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.thread_time()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.thread_time()
            busy.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    report = await import_contacts(sessions, path, region="CA", policy=POLICY, bulk=True)
    done.set()
    await ticking
    assert report.imported > 8_000
    # The reader thread, the workers and the server do the work: the loop
    # waits, or merges a batch of rows that share numbers as the batch path
    # does (about 0.1 s at most here, 0.4 s once on a machine running other
    # suites beside this one); checking the window's 12,000 rows in it would
    # take over a second of its CPU.
    assert len(busy) > 50
    assert max(busy) < 0.7, sorted(busy)[-5:]


async def test_sqlite_imports_in_batches_even_when_asked_for_the_bulk_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'demo.sqlite3'}")
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    sessions = db.session_factory(engine)

    async def no_bulk(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the bulk path ran on SQLite")

    monkeypatch.setattr(bulk_import, "import_rows", no_bulk)
    path = tmp_path / "voters.csv"
    write_voter_file(path, rows=300)
    try:
        report = await import_contacts(sessions, path, region="CA", bulk=True, bulk_min_bytes=0)
        automatic = await import_contacts(sessions, path, region="CA", bulk_min_bytes=0)
    finally:
        await engine.dispose()
    assert report.imported > 150
    assert automatic.imported == 0 and automatic.rows == report.rows


async def test_large_files_take_the_bulk_path_on_postgresql(
    sessions: Sessions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[bool] = []
    real = bulk_import.import_rows

    async def spy(*args: Any, **kwargs: Any) -> None:
        taken.append(True)
        await real(*args, **kwargs)

    monkeypatch.setattr(bulk_import, "import_rows", spy)
    path = tmp_path / "voters.csv"
    write_voter_file(path, rows=300)
    size = path.stat().st_size
    small = await import_contacts(sessions, path, region="CA", bulk_min_bytes=size + 1)
    assert taken == [] and small.imported > 150
    again = await import_contacts(sessions, path, region="CA", bulk_min_bytes=size)
    assert taken == [True] and again.imported == 0 and again.rows == small.rows
    # The setting's default and the functions' own agree.
    assert Settings.model_fields["import_bulk_min_bytes"].default == importer.BULK_MIN_BYTES


def test_the_command_line_takes_the_path_its_flag_or_setting_says(
    pg_url: str, sessions: Sessions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--bulk and --no-bulk win; without them DIALER_IMPORT_BULK_MIN_BYTES decides."""
    taken: list[bool] = []
    real = bulk_import.import_rows

    async def spy(*args: Any, **kwargs: Any) -> None:
        taken.append(True)
        await real(*args, **kwargs)

    monkeypatch.setattr(bulk_import, "import_rows", spy)
    monkeypatch.setenv("DIALER_DATABASE_URL", pg_url)
    monkeypatch.setenv("DIALER_DEFAULT_REGION", "CA")
    path = tmp_path / "voters.csv"
    write_voter_file(path, rows=200)

    def run(min_bytes: int, *flags: str) -> None:
        monkeypatch.setenv("DIALER_IMPORT_BULK_MIN_BYTES", str(min_bytes))
        result = CliRunner().invoke(cli.main, ["import-contacts", str(path), *flags])
        assert result.exit_code in (0, 3), result.output

    run(0, "--no-bulk")
    assert taken == []
    run(0)
    assert taken == [True]
    run(10**9, "--bulk")
    assert taken == [True, True]
    run(10**9)
    assert taken == [True, True]


async def test_overlapping_imports_at_once_make_each_person_once(
    sessions: Sessions, tmp_path: Path
) -> None:
    """Two bulk imports and one by the batch path, of files sharing most of their
    numbers, all at once: one contact per number, whoever got there first."""
    rng = random.Random(3)
    numbers = [_number(index) for index in range(1, 4001)]
    paths = []
    for name, part in (("a", numbers[:3000]), ("b", numbers[1000:]), ("c", numbers[500:3500])):
        path = tmp_path / f"{name}.csv"
        rows = [f"{rng.choice(FIRST)},{rng.choice(LAST)},{_written(e164, rng)}" for e164 in part]
        path.write_text("first_name,last_name,phone\n" + "\n".join(rows) + "\n")
        paths.append(path)
    reports = await asyncio.gather(
        import_contacts(sessions, paths[0], region="CA", bulk=True),
        import_contacts(sessions, paths[1], region="CA", bulk=True),
        import_contacts(sessions, paths[2], region="CA", bulk=False),
    )
    async with sessions() as session:
        contacts = await session.scalar(select(func.count()).select_from(Contact))
        phones = await session.scalar(select(func.count()).select_from(ContactPhone))
    assert (contacts, phones) == (4000, 4000)
    assert sum(report.imported for report in reports) == 4000
    assert all(report.rejected == 0 for report in reports)
    assert sum(report.imported + report.unchanged for report in reports) == 9000
