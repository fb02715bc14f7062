"""The contact search and next-contact as they must hold at millions of contacts.

Keyset pages (no gap, no duplicate, equal names included), the capped count,
every filter against a plain Python reading of the same rows, the team
walls, and next-contact giving exactly what reading the whole list gave.
A few hundred rows each: what the indexes and query shapes do at 2 M
contacts is measured by bench/scale.py; here PostgreSQL is asked whether
each query *can* use its index (the shape matches the index's expression).
"""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from dialer.domain.compliance import DialingPolicy, contact_zones, next_opening
from dialer.domain.survey import CallingHours, TimeWindow
from dialer.domain.vocabulary import (
    LIVE_CALL_STATES,
    CallState,
    CampaignStatus,
    DispositionOutcome,
    PhoneType,
    Role,
)
from dialer.services import contacts as contact_search
from dialer.services.contacts import ContactFilter, ListPlace, SearchResult, search
from dialer.services.importer import import_contacts
from dialer.services.lists import CallingLists, NextContact
from dialer.store import engine as db
from dialer.store.models import (
    CallAttempt,
    CallingListEntry,
    Campaign,
    Contact,
    ContactPhone,
    Disposition,
    Team,
    TeamMember,
    User,
)

Sessions = async_sessionmaker[AsyncSession]
NOW = datetime(2026, 11, 24, 17, 30, tzinfo=UTC)  # a Tuesday: 12:30 in Montreal
POLICY = DialingPolicy.parse(["CA", "+33"], ["+1900", "+1976"])
LAST_NAMES = ["Tremblay", "Gagnon", "Roy", "Côté", "O'Neil", "de la Fontaine", "Lee", "Lé"]
FIRST_NAMES = ["Ada", "Marie", "Jean", "Zoé"]
TAGS = ["voter", "donor", "gotv", "50%_off"]
LANGUAGES = ["fr", "fr-CA", "en", "en-CA", "es", None, "fra"]


@dataclass
class Seeded:
    admin: User
    volunteer: User  # in team A only
    outsider: User  # in no team
    campaign_a: int = 0
    campaign_b: int = 0
    on_a: set[int] = field(default_factory=set)
    on_b: set[int] = field(default_factory=set)
    contacts: dict[int, Contact] = field(default_factory=dict)
    numbers: dict[int, list[str]] = field(default_factory=dict)
    called: dict[int, list[int | None]] = field(default_factory=dict)  # contact -> campaigns
    outcomes: dict[int, list[tuple[datetime, int, int | None, DispositionOutcome]]] = field(
        default_factory=dict
    )
    callbacks: dict[tuple[int, int], datetime] = field(default_factory=dict)
    # Every contact in the list's order, as the database's collation sorts names.
    order: list[int] = field(default_factory=list)

    def in_list_order(self, contacts: Iterable[Contact]) -> list[int]:
        wanted = {contact.id for contact in contacts}
        return [contact_id for contact_id in self.order if contact_id in wanted]


async def seed(sessions: Sessions, count: int = 240) -> Seeded:
    """``count`` contacts on two teams' campaigns (some on both, some on none),
    with names that repeat, tags, scores, languages, calls, outcomes and call-backs."""
    pick = random.Random(19)
    async with sessions.begin() as session:
        team_a, team_b = Team(name="A"), Team(name="B")
        session.add_all([team_a, team_b])
        await session.flush()
        admin = User(username="admin", role=Role.ADMIN, password_hash="x")
        volunteer = User(username="vera", role=Role.VOLUNTEER, password_hash="x")
        outsider = User(username="otto", role=Role.VOLUNTEER, password_hash="x")
        other = User(username="bert", role=Role.VOLUNTEER, password_hash="x")
        session.add_all([admin, volunteer, outsider, other])
        await session.flush()
        session.add_all(
            [
                TeamMember(team_id=team_a.id, user_id=volunteer.id),
                TeamMember(team_id=team_b.id, user_id=other.id),
            ]
        )
        campaign_a = Campaign(title="A", team_id=team_a.id, status=CampaignStatus.ACTIVE)
        campaign_b = Campaign(title="B", team_id=team_b.id, status=CampaignStatus.ACTIVE)
        session.add_all([campaign_a, campaign_b])
        await session.flush()
        seeded = Seeded(admin, volunteer, outsider, campaign_a.id, campaign_b.id)
        # Every draw is made in the order it always was (the data stays the
        # same); the rows that need a contact's id are added after one flush
        # of all the contacts, not one flush per contact.
        planned: list[tuple[Contact, list[str], list[Any], Any]] = []
        for k in range(count):
            first = FIRST_NAMES[k % len(FIRST_NAMES)]
            last = LAST_NAMES[(k // 3) % len(LAST_NAMES)]
            contact = Contact(
                first_name=first,
                last_name=last,
                email=f"{first}.{k}@Example.org" if k % 3 else None,
                tags=pick.sample(TAGS, pick.randint(0, 2)),
                support_score=pick.choice([None, 1, 2, 3, 4, 5]),
                language=pick.choice(LANGUAGES),
                do_not_call=k % 17 == 0,
                dnc_at=NOW if k % 17 == 0 else None,
            )
            numbers = [f"+1514555{k:04d}"] + ([f"+1438555{k:04d}"] if k % 4 == 0 else [])
            contact.phones = [ContactPhone(e164=number) for number in numbers]
            session.add(contact)
            where = k % 5  # 0: on no list, 1-2: A, 3: B, 4: both
            entries = []
            for campaign, on, owner, wanted in (
                (campaign_a, seeded.on_a, volunteer, where in (1, 2, 4)),
                (campaign_b, seeded.on_b, other, where in (3, 4)),
            ):
                if not wanted:
                    continue
                callback = (
                    NOW + timedelta(hours=pick.choice([-3, -1, 2])) if pick.random() < 0.2 else None
                )
                done = pick.random() < 0.1
                entries.append((campaign, on, owner, callback, done))
            call = None
            if pick.random() < 0.4:
                campaign_id = pick.choice([campaign_a.id, campaign_b.id, None])
                author = other if campaign_id == campaign_b.id else volunteer
                outcomes = []
                for n in range(pick.randint(0, 2)):
                    outcome = pick.choice(list(DispositionOutcome))
                    at = NOW - timedelta(hours=n + pick.randint(0, 3))
                    outcomes.append((n, outcome, at))
                call = (k, campaign_id, author, outcomes)
            planned.append((contact, numbers, entries, call))
        await session.flush()
        for contact, numbers, entries, call in planned:
            seeded.contacts[contact.id] = contact
            seeded.numbers[contact.id] = numbers
            for campaign, on, owner, callback, done in entries:
                session.add(
                    CallingListEntry(
                        campaign_id=campaign.id,
                        contact_id=contact.id,
                        volunteer_id=owner.id,
                        callback_at=callback,
                        done=done,
                    )
                )
                on.add(contact.id)
                if callback is not None and not done:
                    seeded.callbacks[(contact.id, campaign.id)] = callback
            if call is None:
                continue
            k, campaign_id, author, outcomes = call
            session.add(
                CallAttempt(
                    call_id=f"call-{k}",
                    campaign_id=campaign_id,
                    contact_id=contact.id,
                    number_e164=numbers[0],
                    volunteer_id=author.id,
                    state=CallState.ENDED,
                    requested_at=NOW - timedelta(days=k % 7),
                )
            )
            seeded.called.setdefault(contact.id, []).append(campaign_id)
            for n, outcome, at in outcomes:
                session.add(
                    Disposition(
                        submission_id=f"sub-{k}-{n}",
                        contact_id=contact.id,
                        campaign_id=campaign_id,
                        volunteer_id=author.id,
                        outcome=outcome,
                        created_at=at,
                    )
                )
                seeded.outcomes.setdefault(contact.id, []).append((at, n, campaign_id, outcome))
        await session.flush()
        seeded.order = list(
            await session.scalars(
                select(Contact.id).order_by(Contact.last_name, Contact.first_name, Contact.id)
            )
        )
    return seeded


async def every_page(
    session: AsyncSession, user: User, wanted: ContactFilter
) -> tuple[list[int], list[SearchResult]]:
    """The ids of every page, following Next from the first page."""
    pages = [await search(session, user, wanted, now=NOW)]
    while pages[-1].next_cursor is not None:
        assert len(pages) < 500
        following = replace(wanted, after=pages[-1].next_cursor)
        pages.append(await search(session, user, following, now=NOW))
    return [row.contact.id for page in pages for row in page.rows], pages


@pytest.fixture
async def seeded(sessions: Sessions) -> Seeded:
    return await seed(sessions)


@pytest.fixture
async def sqlite_sessions(tmp_path: Path) -> AsyncIterator[Sessions]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'demo.sqlite3'}"
    await db.upgrade_async(url)
    engine = db.create_engine(url)
    yield db.session_factory(engine)
    await engine.dispose()


# -- keyset pages ------------------------------------------------------------------


async def test_pages_follow_each_other_without_gap_or_duplicate(
    sessions: Sessions, seeded: Seeded
) -> None:
    async with sessions() as session:
        ids, pages = await every_page(session, seeded.admin, ContactFilter(limit=7))
    callable_ones = [c for c in seeded.contacts.values() if not c.do_not_call]
    # The same names repeat three dozen times: the id breaks the ties.
    assert ids == seeded.in_list_order(callable_ones)
    assert all(len(page.rows) == 7 for page in pages[:-1])
    assert pages[0].previous_cursor is None and pages[-1].next_cursor is None


async def test_previous_walks_the_same_pages_back(sessions: Sessions, seeded: Seeded) -> None:
    async with sessions() as session:
        _, pages = await every_page(session, seeded.admin, ContactFilter(limit=9))
        back = pages[-1]
        walked = [[row.contact.id for row in back.rows]]
        while back.previous_cursor is not None:
            back = await search(
                session, seeded.admin, ContactFilter(limit=9, before=back.previous_cursor), now=NOW
            )
            walked.append([row.contact.id for row in back.rows])
    assert walked[::-1] == [[row.contact.id for row in page.rows] for page in pages]


async def test_a_page_counts_as_the_first_one_costs(sessions: Sessions, seeded: Seeded) -> None:
    async with sessions() as session:
        ids, _ = await every_page(session, seeded.admin, ContactFilter(limit=5))
        contact = seeded.contacts[ids[100]]
        place = ListPlace(contact.last_name, contact.first_name, contact.id)
        page = await search(
            session, seeded.admin, ContactFilter(limit=5, after=place.cursor()), now=NOW
        )
    assert [row.contact.id for row in page.rows] == ids[101:106]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "",
        ListPlace("a", "b", 1).cursor()[:-2],
        "WzEsMiwzXQ",  # [1,2,3]: not names
        "WyJhIiwiYiIsLTFd",  # ["a","b",-1]
        "WyJhXHUwMDAwIiwiYiIsMV0",  # a NUL in the name
        "x" * 3000,
    ],
)
async def test_a_cursor_not_made_by_us_opens_the_first_page(
    sessions: Sessions, seeded: Seeded, cursor: str
) -> None:
    async with sessions() as session:
        first = await search(session, seeded.admin, ContactFilter(limit=5), now=NOW)
        for wanted in (ContactFilter(limit=5, after=cursor), ContactFilter(limit=5, before=cursor)):
            page = await search(session, seeded.admin, wanted, now=NOW)
            assert [row.contact.id for row in page.rows] == [row.contact.id for row in first.rows]


def test_cursors_round_trip_any_name() -> None:
    place = ListPlace("d'Arcy-Éluard 李", "Zoë/+=", 123_456_789)
    assert ListPlace.from_cursor(place.cursor()) == place
    assert "=" not in place.cursor() and "/" not in place.cursor()


@pytest.mark.parametrize(("cap", "budget"), [(5, 7), (5, 10_000), (10_000, 7)])
@pytest.mark.parametrize("query", ["Roy", "Zoé Lé", "ada", "example.org", "zzz"])
async def test_a_name_is_found_whichever_way_the_page_is_reached(
    sessions: Sessions,
    seeded: Seeded,
    monkeypatch: pytest.MonkeyPatch,
    cap: int,
    budget: int,
    query: str,
) -> None:
    """Found few or many, clustered at one letter or spread over all (see contacts._Way)."""
    monkeypatch.setattr(contact_search, "COUNT_CAP", cap)
    monkeypatch.setattr(contact_search, "WALK_BUDGET", budget)
    wanted = ContactFilter(query=query, limit=4)
    async with sessions() as session:
        ids, pages = await every_page(session, seeded.admin, wanted)
        page = pages[-1]
        back = [[row.contact.id for row in page.rows]]
        while page.previous_cursor is not None:
            page = await search(
                session, seeded.admin, replace(wanted, before=page.previous_cursor), now=NOW
            )
            back.append([row.contact.id for row in page.rows])
    assert ids == expected_ids(seeded, wanted)
    assert back[::-1] == [[row.contact.id for row in page.rows] for page in pages]


# -- the count ---------------------------------------------------------------------


async def test_the_count_stops_at_its_cap(
    sessions: Sessions, seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(contact_search, "COUNT_CAP", 25)
    async with sessions() as session:
        many = await search(session, seeded.admin, ContactFilter(limit=5), now=NOW)
        few = await search(session, seeded.admin, ContactFilter(query="Zoé Lee"), now=NOW)
    assert (many.total, many.total_capped) == (25, True)
    expected = [
        c for c in seeded.contacts.values() if c.full_name == "Zoé Lee" and not c.do_not_call
    ]
    assert 0 < len(expected) < 25
    assert (few.total, few.total_capped) == (len(expected), False)


# -- filters, read back in Python --------------------------------------------------


def expected_ids(
    seeded: Seeded, wanted: ContactFilter, *, teams_campaigns: set[int] | None = None
) -> list[int]:
    """What ``wanted`` means, for a user seeing ``teams_campaigns`` (None: everything)."""

    def in_view(campaign_id: int | None) -> bool:
        # Calls and outcomes outside a campaign are by the volunteer of team A.
        if teams_campaigns is None:
            return True
        if campaign_id is None:
            return seeded.campaign_a in teams_campaigns
        return campaign_id in teams_campaigns

    def matches(contact: Contact) -> bool:
        lists = {seeded.campaign_a: seeded.on_a, seeded.campaign_b: seeded.on_b}
        visible = [
            campaign
            for campaign, on in lists.items()
            if contact.id in on and (teams_campaigns is None or campaign in teams_campaigns)
        ]
        if wanted.campaign_id is not None and wanted.campaign_id not in visible:
            return False
        if teams_campaigns is not None and not visible:
            return False
        if contact.do_not_call and not wanted.include_do_not_call:
            return False
        term = wanted.query.strip().lower()
        if term:
            digits = "".join(ch for ch in term if ch.isdigit())
            found = term in contact.full_name.lower() or term in (contact.email or "").lower()
            if len(digits) >= 3:
                found = found or any(digits in n for n in seeded.numbers[contact.id])
            if not found:
                return False
        if wanted.tags and not set(wanted.tags) & set(contact.tags):
            return False
        if wanted.support_scores and contact.support_score not in wanted.support_scores:
            return False
        if wanted.language and not (
            contact.language == wanted.language
            or (contact.language or "").startswith(wanted.language + "-")
        ):
            return False
        if wanted.never_called and any(
            in_view(campaign) for campaign in seeded.called.get(contact.id, [])
        ):
            return False
        if wanted.callback_due and not any(
            at <= NOW
            and in_view(campaign)
            and (wanted.campaign_id is None or campaign == wanted.campaign_id)
            for (contact_id, campaign), at in seeded.callbacks.items()
            if contact_id == contact.id
        ):
            return False
        if wanted.outcome is not None:
            mine = sorted(
                (at, n, outcome)
                for at, n, campaign, outcome in seeded.outcomes.get(contact.id, [])
                if in_view(campaign)
            )
            if not mine or mine[-1][2] is not wanted.outcome:
                return False
        return True

    return seeded.in_list_order(c for c in seeded.contacts.values() if matches(c))


FILTERS = [
    ContactFilter(),
    ContactFilter(query="Ada Tr"),  # across first and last name
    ContactFilter(query="  ée  "),
    ContactFilter(query="example.ORG"),
    ContactFilter(query="ada.1"),
    ContactFilter(query="5550012"),  # digits of a number
    ContactFilter(query="(438) 555-00"),
    ContactFilter(query="o'n"),
    ContactFilter(query="50%"),  # LIKE's wildcards are plain characters
    ContactFilter(query="_"),
    ContactFilter(tags=("donor",)),
    ContactFilter(tags=("gotv", "50%_off")),
    ContactFilter(support_scores=(4, 5)),
    ContactFilter(language="fr"),
    ContactFilter(language="en", tags=("voter",), support_scores=(1, 2, 3)),
    ContactFilter(never_called=True),
    ContactFilter(callback_due=True),
    ContactFilter(outcome=DispositionOutcome.ANSWERED),
    ContactFilter(outcome=DispositionOutcome.OTHER, never_called=False, include_do_not_call=True),
    ContactFilter(query="Roy", include_do_not_call=True),
]


def _campaign_filter(seeded: Seeded) -> list[ContactFilter]:
    return [
        ContactFilter(campaign_id=seeded.campaign_a),
        ContactFilter(campaign_id=seeded.campaign_b, callback_due=True),
        ContactFilter(campaign_id=seeded.campaign_a, query="Marie"),
    ]


async def check_filters(sessions: Sessions, seeded: Seeded) -> None:
    async with sessions() as session:
        for wanted in [*FILTERS, *_campaign_filter(seeded)]:
            paged = replace(wanted, limit=11)
            for user, campaigns in (
                (seeded.admin, None),
                (seeded.volunteer, {seeded.campaign_a}),
                (seeded.outsider, set()),
            ):
                ids, pages = await every_page(session, user, paged)
                expected = expected_ids(seeded, wanted, teams_campaigns=campaigns)
                assert ids == expected, (wanted, user.username)
                assert (pages[0].total, pages[0].total_capped) == (len(expected), False)


async def test_each_filter_finds_what_it_says(sessions: Sessions, seeded: Seeded) -> None:
    await check_filters(sessions, seeded)


async def test_each_filter_finds_what_it_says_on_sqlite(sqlite_sessions: Sessions) -> None:
    await check_filters(sqlite_sessions, await seed(sqlite_sessions, count=120))


async def test_the_page_shows_what_the_viewers_teams_did(
    sessions: Sessions, seeded: Seeded
) -> None:
    async with sessions() as session:
        ids, pages = await every_page(session, seeded.volunteer, ContactFilter(limit=50))
    rows = {row.contact.id: row for page in pages for row in page.rows}
    for contact_id in ids:
        theirs = [c for c in seeded.called.get(contact_id, []) if c != seeded.campaign_b]
        assert (rows[contact_id].last_called_at is not None) == bool(theirs)
        due = [
            at
            for (cid, campaign), at in seeded.callbacks.items()
            if cid == contact_id and campaign == seeded.campaign_a
        ]
        assert rows[contact_id].callback_at == (min(due) if due else None)


async def test_a_cursor_does_not_open_the_wall(sessions: Sessions, seeded: Seeded) -> None:
    """A cursor only says where a page starts: one from the administrator's
    pages shows the volunteer their own contacts from there, nothing else."""
    async with sessions() as session:
        ids, pages = await every_page(session, seeded.admin, ContactFilter(limit=20))
        cursor = pages[2].next_cursor
        assert cursor is not None
        theirs = await search(
            session, seeded.volunteer, ContactFilter(limit=200, after=cursor), now=NOW
        )
        nothing = await search(
            session, seeded.outsider, ContactFilter(limit=200, after=cursor), now=NOW
        )
    after = ids[ids.index(ListPlace.from_cursor(cursor).contact_id) + 1 :]  # type: ignore[union-attr]
    assert [row.contact.id for row in theirs.rows] == [i for i in after if i in seeded.on_a]
    assert nothing.rows == [] and nothing.total == 0


# -- the indexes the queries are shaped for ----------------------------------------


@contextmanager
def statements_of(sessions: Sessions) -> Iterator[list[tuple[str, Any]]]:
    """The SELECTs the code under test runs, with their parameters."""
    seen: list[tuple[str, Any]] = []
    engine = sessions.kw["bind"].sync_engine

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", keep)


async def plans(sessions: Sessions, seen: list[tuple[str, Any]], *settings: str) -> list[str]:
    """EXPLAIN of each statement, with ``settings`` (the planner told off the
    easy ways out that a table of a few hundred rows offers)."""
    found = []
    async with sessions() as session:
        connection = await session.connection()
        for setting in settings:
            await connection.exec_driver_sql(f"SET LOCAL {setting}")
        for statement, parameters in seen:
            rows = await connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
            found.append("\n".join(row[0] for row in rows))
    return found


@pytest.mark.parametrize(
    ("wanted", "index"),
    [
        (ContactFilter(query="agno"), "ix_contacts_full_name_trgm"),
        (ContactFilter(query="agno"), "ix_contacts_email_trgm"),
        (ContactFilter(query="5550012"), "ix_contact_phones_digits_trgm"),
        (ContactFilter(tags=("donor", "gotv")), "ix_contacts_tags"),
        (ContactFilter(support_scores=(4, 5)), "ix_contacts_support_score"),
        (ContactFilter(language="fr"), "ix_contacts_language"),
        (ContactFilter(callback_due=True), "ix_calling_list_callbacks"),
    ],
)
async def test_search_can_use_its_indexes(
    sessions: Sessions, seeded: Seeded, wanted: ContactFilter, index: str
) -> None:
    with statements_of(sessions) as seen:
        async with sessions() as session:
            await search(session, seeded.admin, wanted, now=NOW)
    counting = [
        (statement, parameters) for statement, parameters in seen if "count(*)" in statement
    ]
    [count] = await plans(
        sessions,
        counting,
        "enable_seqscan = off",
        "enable_indexscan = off",
        "plan_cache_mode = force_custom_plan",
    )
    assert index in count, count


async def test_the_list_order_and_the_wall_use_their_indexes(
    sessions: Sessions, seeded: Seeded
) -> None:
    with statements_of(sessions) as seen:
        async with sessions() as session:
            ids, _ = await every_page(session, seeded.volunteer, ContactFilter(limit=40))
            await search(
                session,
                seeded.admin,
                ContactFilter(never_called=True, outcome=DispositionOutcome.ANSWERED),
                now=NOW,
            )
    assert len(ids) > 40
    explained = "\n".join(await plans(sessions, seen, "enable_seqscan = off", "enable_sort = off"))
    for index in (
        "ix_contacts_name_order",
        "ix_call_attempts_contact_requested",
        "ix_dispositions_contact_latest",
    ):
        assert index in explained, index
    # The wall: checked from each contact or read from the lists, by an index either way.
    assert "Seq Scan on calling_list_entries" not in explained


async def test_the_language_menu_offers_every_language_on_file(
    sessions: Sessions, seeded: Seeded
) -> None:
    """PostgreSQL skips through the language index (a loose index scan)
    rather than reading every contact: it must find what DISTINCT finds."""
    async with sessions() as session:
        found = await contact_search.known_languages(session)
        on_file = set(await session.scalars(select(Contact.language).distinct()))
    assert None in on_file and any("-" in (value or "") for value in on_file)
    assert found == sorted({value.split("-")[0] for value in on_file if value})
    assert len(found) >= 2


async def test_an_import_looks_numbers_up_on_the_unique_index_not_the_digits_one(
    sessions: Sessions, seeded: Seeded, tmp_path: Path
) -> None:
    """pg_trgm answers = as well as LIKE: a trigram index on e164 itself was
    taken for the import's lookup of whole numbers, 1.8 s for 2,000 of them
    against milliseconds on the unique index.  The digits' index cannot be."""
    path = tmp_path / "numbers.csv"
    path.write_text(
        "first_name,phone\n" + "".join(f"N{n},+1514555{n:04d}\n" for n in range(0, 400, 3)),
        encoding="utf-8",
    )
    with statements_of(sessions) as seen:
        await import_contacts(sessions, path, region="CA", bulk=False)
    lookups = [(s, p) for s, p in seen if "contact_phones.e164 IN" in s]
    assert lookups
    [plan] = await plans(sessions, lookups[:1], "enable_seqscan = off")
    assert "uq_contact_phones_e164" in plan and "trgm" not in plan, plan


async def test_next_contact_reads_the_list_in_its_index_order(sessions: Sessions) -> None:
    world = await list_world(sessions, random.Random(1))
    with statements_of(sessions) as seen:
        await world.lists().next_contact(world.volunteer_id, world.campaign_id)
    ready = [(s, p) for s, p in seen if "calling_list_entries.attempts" in s][:1]
    [plan] = await plans(
        sessions, ready, "enable_seqscan = off", "enable_bitmapscan = off", "enable_sort = off"
    )
    assert "ix_calling_list_next" in plan, plan
    # Only the numbers of one entry get sorted, never the list.
    assert not re.search(r"(^|->)\s*Sort\s+\(", plan, re.MULTILINE), plan


# -- next contact: the same answers as reading the whole list ----------------------


@dataclass
class ListWorld:
    sessions: Sessions
    campaign_id: int
    volunteer_id: int
    teammate_id: int
    now: datetime = NOW

    def lists(self) -> CallingLists:
        return CallingLists(self.sessions, policy=POLICY, clock=lambda: self.now)


HOURS = CallingHours(
    weekday=TimeWindow.model_validate({"start": "09:00", "end": "21:00"}),
    weekend=TimeWindow.model_validate({"start": "10:00", "end": "18:00"}),
)
# Montreal, Vancouver, Paris, a premium number the policy refuses, a
# country it does not allow, a number with no zone (the fallback's).
NUMBERS = ["+1514555{:04d}", "+1604555{:04d}", "+3314268{:04d}", "+1900555{:04d}", "+4420794{:04d}"]


async def list_world(sessions: Sessions, pick: random.Random, size: int = 70) -> ListWorld:
    """One volunteer's list of every kind of entry the rules tell apart."""
    async with sessions.begin() as session:
        team = Team(name=f"T{pick.random()}")
        session.add(team)
        await session.flush()
        people = [
            User(username=f"u{n}{pick.randint(0, 10**9)}", role=Role.VOLUNTEER, password_hash="x")
            for n in range(4)
        ]
        session.add_all(people)
        await session.flush()
        session.add_all(TeamMember(team_id=team.id, user_id=p.id) for p in people)
        campaign = Campaign(
            title="List",
            team_id=team.id,
            status=CampaignStatus.ACTIVE,
            max_attempts=2,
            calling_hours=HOURS,
        )
        session.add(campaign)
        await session.flush()
        live = 0
        for k in range(size):
            chosen = pick.sample(range(len(NUMBERS)), pick.choice([1, 1, 1, 2, 3]))
            contact = Contact(
                first_name=f"C{k}",
                timezone=pick.choice([None] * 6 + ["Asia/Tokyo", "Europe/Paris", "Nowhere/Zone"]),
                do_not_call=pick.random() < 0.05,
                dnc_at=NOW,
            )
            contact.phones = [
                ContactPhone(
                    e164=NUMBERS[n].format(k),
                    phone_type=PhoneType.OTHER,
                    wrong_number=pick.random() < 0.1,
                    do_not_call=pick.random() < 0.05,
                )
                for n in chosen
            ]
            session.add(contact)
            await session.flush()
            attempts = pick.choice([0, 0, 0, 1, 1, 2, 3])
            session.add(
                CallingListEntry(
                    campaign_id=campaign.id,
                    contact_id=contact.id,
                    volunteer_id=people[0].id if pick.random() < 0.9 else people[1].id,
                    attempts=attempts,
                    next_attempt_at=pick.choice(
                        [None, NOW - timedelta(hours=2), NOW + timedelta(minutes=30 * k)]
                    )
                    if attempts or pick.random() < 0.2
                    else None,
                    callback_at=pick.choice(
                        [None] * 5 + [NOW - timedelta(minutes=k), NOW + timedelta(hours=k), NOW]
                    ),
                    done=pick.random() < 0.1,
                )
            )
            if live < 2 and pick.random() < 0.05:
                session.add(
                    CallAttempt(
                        call_id=f"live-{contact.id}",
                        campaign_id=campaign.id,
                        contact_id=contact.id,
                        number_e164=contact.phones[0].e164,
                        volunteer_id=people[2 + live].id,
                        state=pick.choice(sorted(LIVE_CALL_STATES)),
                    )
                )
                live += 1
    return ListWorld(sessions, campaign.id, people[0].id, people[1].id)


async def reference_next_contact(
    world: ListWorld, volunteer_id: int, campaign_id: int, owner_id: int
) -> NextContact:
    """Next-contact as it was before migration 0011: the whole list, read into Python."""
    now = world.now
    async with world.sessions() as session:
        campaign = await session.get(Campaign, campaign_id)
        assert campaign is not None
        live_contacts = select(CallAttempt.contact_id).where(
            CallAttempt.state.in_([state.value for state in LIVE_CALL_STATES])
        )
        rows = (
            await session.execute(
                select(CallingListEntry, Contact)
                .join(Contact, Contact.id == CallingListEntry.contact_id)
                .options(selectinload(Contact.phones))
                .where(
                    CallingListEntry.campaign_id == campaign_id,
                    CallingListEntry.volunteer_id == owner_id,
                    CallingListEntry.done.is_(False),
                    Contact.do_not_call.is_(False),
                    CallingListEntry.contact_id.not_in(live_contacts),
                )
                .order_by(
                    CallingListEntry.callback_at.is_(None),
                    CallingListEntry.callback_at,
                    CallingListEntry.attempts,
                    CallingListEntry.next_attempt_at.is_not(None),
                    CallingListEntry.next_attempt_at,
                    CallingListEntry.id,
                )
            )
        ).all()
        total = len(
            (
                await session.scalars(
                    select(CallingListEntry.id).where(
                        CallingListEntry.campaign_id == campaign_id,
                        CallingListEntry.volunteer_id == owner_id,
                    )
                )
            ).all()
        )
    buckets: tuple[list[Contact], list[Contact], list[Contact]] = ([], [], [])
    earliest_hours: datetime | None = None
    earliest_retry: datetime | None = None
    for entry, contact in rows:
        phones = [
            p
            for p in contact.phones
            if not p.wrong_number and not p.do_not_call and POLICY.check(p.e164) is None
        ]
        if not phones:
            continue
        if entry.callback_at is not None and entry.callback_at > now:
            earliest_retry = min(filter(None, (earliest_retry, entry.callback_at)))
            continue
        if entry.callback_at is None and entry.attempts >= campaign.max_attempts:
            continue
        ready = entry.next_attempt_at
        if entry.callback_at is None and ready is not None and ready > now:
            earliest_retry = min(filter(None, (earliest_retry, ready)))
            continue
        zones = contact_zones(phones[0].e164, contact.timezone, "UTC")
        opening = next_opening(campaign.calling_hours, zones, now)
        if opening != now:
            if opening is not None:
                earliest_hours = min(filter(None, (earliest_hours, opening)))
            continue
        kind = 0 if entry.callback_at is not None else 1 if entry.attempts == 0 else 2
        buckets[kind].append(contact)
    for kind, bucket in enumerate(buckets):
        if bucket:
            return NextContact(bucket[0], is_callback=kind == 0)
    if not total:
        return NextContact(None, "empty")
    if earliest_hours is None and earliest_retry is None:
        return NextContact(None, "all_done")
    if earliest_retry is None or (earliest_hours is not None and earliest_hours <= earliest_retry):
        return NextContact(None, "outside_hours", available_at=earliest_hours)
    return NextContact(None, "waiting_for_retry", available_at=earliest_retry)


def answer(found: NextContact) -> tuple[int | None, str | None, datetime | None, bool]:
    contact_id = found.contact.id if found.contact is not None else None
    return contact_id, found.empty_reason, found.available_at, found.is_callback


CLOCKS = [
    NOW,  # Tuesday afternoon in America, evening in Paris
    datetime(2026, 11, 24, 3, 0, tzinfo=UTC),  # night in America, 04:00 in Paris
    datetime(2026, 11, 24, 20, 45, tzinfo=UTC),  # Paris closed, Montreal open
    datetime(2026, 11, 28, 23, 0, tzinfo=UTC),  # Saturday evening
    datetime(2026, 11, 25, 13, 0, tzinfo=UTC),  # the retries are due
]


@pytest.mark.parametrize("seed_number", [1, 2, 3])
async def test_next_contact_answers_as_reading_the_whole_list(
    sessions: Sessions, seed_number: int
) -> None:
    world = await list_world(sessions, random.Random(seed_number))
    lists = world.lists()
    answers = 0
    for now in CLOCKS:
        world.now = now
        for volunteer, owner in (
            (world.volunteer_id, world.volunteer_id),
            (world.volunteer_id, world.teammate_id),
        ):
            # Walk the list: each answer is closed, and the next one must agree too.
            for _ in range(80):
                expected = await reference_next_contact(world, volunteer, world.campaign_id, owner)
                found = await lists.next_contact(
                    volunteer,
                    world.campaign_id,
                    list_owner_id=None if owner == volunteer else owner,
                )
                assert answer(found) == answer(expected), (now, answers)
                answers += 1
                if found.contact is None:
                    break
                async with sessions.begin() as session:
                    await session.execute(
                        update(CallingListEntry)
                        .where(
                            CallingListEntry.campaign_id == world.campaign_id,
                            CallingListEntry.contact_id == found.contact.id,
                        )
                        .values(done=True)
                    )
        # Open the list again for the next clock.
        async with sessions.begin() as session:
            await session.execute(
                update(CallingListEntry)
                .where(CallingListEntry.campaign_id == world.campaign_id)
                .values(done=False)
            )
    assert answers > 40


async def test_the_empty_reasons_keep_their_messages(sessions: Sessions) -> None:
    world = await list_world(sessions, random.Random(7), size=12)
    lists = world.lists()
    world.now = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    reasons = set()
    for _ in range(60):
        found = await lists.next_contact(world.volunteer_id, world.campaign_id)
        if found.contact is not None:
            async with sessions.begin() as session:
                await session.execute(
                    update(CallingListEntry)
                    .where(CallingListEntry.contact_id == found.contact.id)
                    .values(done=True)
                )
            continue
        expected = await reference_next_contact(
            world, world.volunteer_id, world.campaign_id, world.volunteer_id
        )
        assert answer(found) == answer(expected)
        reasons.add(found.empty_reason)
        if found.available_at is None:
            assert found.message == "every contact on this list is done"
            break
        at = f"{found.available_at:%H:%M} UTC"
        assert found.message in {
            f"all remaining contacts are outside calling hours until {at}",
            f"all remaining contacts are waiting for a retry or call-back until {at}",
        }
        # Past that time, the list opens again or says what comes next.
        world.now = found.available_at + timedelta(minutes=1)
    assert "all_done" in reasons and len(reasons) >= 2
