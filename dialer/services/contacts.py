"""Contacts for the web pages: search and filters, the record, notes, do-not-call.

Visibility follows :mod:`dialer.services.access`: an administrator sees every
contact; organizers and volunteers see the contacts on the calling lists of
their teams' campaigns, and of a contact's history only what their teams did.
Every query here applies that rule itself.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    true,
    tuple_,
    union,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute, selectinload

from dialer.domain.compliance import DialingPolicy
from dialer.domain.numbers import to_e164
from dialer.domain.vocabulary import DispositionOutcome, PhoneType
from dialer.services import contact_edits
from dialer.services.access import (
    Scope,
    can_access_campaign,
    can_access_contact,
    scope_of,
)
from dialer.services.call_history import live_call_between
from dialer.services.caller_ids import CallerIds
from dialer.services.campaigns import colleagues, visible_campaigns
from dialer.store import audit
from dialer.store import contacts as contact_rows
from dialer.store.access import STAFF_ROLES, teams_of_users
from dialer.store.models import (
    CallAttempt,
    CallingListEntry,
    Campaign,
    Contact,
    ContactNote,
    ContactPhone,
    Disposition,
    FollowUpTask,
    User,
    utcnow,
)

MAX_NOTE = 10_000


# The list counts its matches up to here and then says "more than": counting
# every one of two million matches would read them all, on every page.
COUNT_CAP = 1000
MAX_PAGE = 200


@dataclass(frozen=True, slots=True)
class ContactFilter:
    query: str = ""
    tags: tuple[str, ...] = ()
    support_scores: tuple[int, ...] = ()
    language: str = ""
    never_called: bool = False
    callback_due: bool = False
    outcome: DispositionOutcome | None = None
    campaign_id: int | None = None
    include_do_not_call: bool = False
    limit: int = 50
    # Keyset pages: the contacts after (or before) the place a cursor of a
    # previous page points at (SearchResult.next_cursor, .previous_cursor);
    # neither, or one not made by us: the first page.
    after: str = ""
    before: str = ""


@dataclass(frozen=True, slots=True)
class ContactRow:
    contact: Contact
    last_outcome: DispositionOutcome | None
    last_called_at: datetime | None
    callback_at: datetime | None


@dataclass(slots=True)
class SearchResult:
    rows: list[ContactRow] = field(default_factory=list)
    # How many contacts match, counted up to COUNT_CAP; ``total_capped``: more.
    total: int = 0
    total_capped: bool = False
    next_cursor: str | None = None
    previous_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class ListPlace:
    """Where a contact stands in the list's order: last name, first name, id.

    A page's link carries it as an opaque cursor; it only says where the
    next page starts, the filters and the team walls apply to it as to any
    page.
    """

    last_name: str
    first_name: str
    contact_id: int

    def key(self) -> tuple[str, str, int]:
        return (self.last_name, self.first_name, self.contact_id)

    def cursor(self) -> str:
        raw = json.dumps([self.last_name, self.first_name, self.contact_id], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def from_cursor(cls, cursor: str) -> ListPlace | None:
        """None for anything :meth:`cursor` did not make (a link edited by hand)."""
        if not cursor or len(cursor) > 2000:
            return None
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            last_name, first_name, contact_id = json.loads(raw)
        except (ValueError, TypeError):
            return None
        if not (
            isinstance(last_name, str)
            and isinstance(first_name, str)
            and type(contact_id) is int
            and 0 < contact_id < 2**63
            and len(last_name) <= 200
            and len(first_name) <= 200
            # PostgreSQL refuses NUL in text: it would be an error, not a page.
            and "\x00" not in last_name + first_name
        ):
            return None
        return cls(last_name, first_name, contact_id)


@dataclass(slots=True)
class HistoryItem:
    at: datetime
    kind: str  # "call", "outcome", "note", "task"
    call: CallAttempt | None = None
    disposition: Disposition | None = None
    note: ContactNote | None = None
    task: FollowUpTask | None = None
    author: str = ""


@dataclass(slots=True)
class ContactRecord:
    contact: Contact
    history: list[HistoryItem]
    campaigns: list[tuple[Campaign, CallingListEntry]]


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# Written as the trigram index ix_contacts_full_name_trgm is: a literal space,
# not a parameter, or the query would not match the index's expression.
FULL_NAME = Contact.first_name.concat(literal_column("' '")).concat(Contact.last_name)
LIST_ORDER = (Contact.last_name, Contact.first_name, Contact.id)
# A number's digits, written as the trigram index ix_contact_phones_digits_trgm is.
NUMBER_DIGITS = func.substr(ContactPhone.e164, literal_column("2"))


def _has_any_tag(dialect: str, tags: tuple[str, ...]) -> ColumnElement[bool]:
    if dialect == "postgresql":
        # ?| is what the GIN index on CAST(tags AS JSONB) answers (jsonb_exists() is not).
        found: ColumnElement[bool] = cast(Contact.tags, JSONB).has_any(
            cast(list(tags), ARRAY(Text))
        )
        return found
    return or_(
        *(
            text(
                "EXISTS (SELECT 1 FROM json_each(contacts.tags) WHERE json_each.value = :tag)"
            ).bindparams(bindparam("tag", tag, unique=True))
            for tag in tags
        )
    )


def _matches_term(term: str, dialect: str) -> ColumnElement[bool]:
    """A name, an email or, with three digits or more, a number containing ``term``.

    Any part of the first name or the last name is a part of "first last":
    one trigram index serves all three.
    """
    like = f"%{_escape_like(term)}%"
    by_name = FULL_NAME.ilike(like, escape="\\")
    # What ILIKE would do, less its lowering the lowered email again and the
    # pattern on every row: half the cost of testing a contact.
    by_email = func.lower(Contact.email).like(func.lower(like), escape="\\")
    digits = "".join(ch for ch in term if ch.isdigit())
    if len(digits) < 3:
        return or_(by_name, by_email)
    by_number = NUMBER_DIGITS.like(f"%{digits}%")
    if len(digits) == 3:
        # Three digits (an area code) are in a good share of all numbers:
        # walking the list and testing each contact finds a page soonest.
        return or_(
            by_name, by_email, exists().where(ContactPhone.contact_id == Contact.id, by_number)
        )
    # Four digits or more are in few numbers.  OR-ing an EXISTS on them would
    # test it on every contact; the ids each index finds, united, stay index
    # lookups.
    found = union(
        select(Contact.id).where(by_name),
        select(Contact.id).where(by_email),
        select(ContactPhone.contact_id).where(by_number),
    )
    if dialect != "postgresql":
        return Contact.id.in_(found)
    # As an array, read once, the ids are looked up in the contacts' primary
    # key.  As IN, PostgreSQL took the trigram index's guess (tens of
    # thousands of numbers for "4998", where a few hundred have it), hashed
    # the ids and read all 2 M contacts to find them: 450-650 ms against 5-9.
    return Contact.id == any_(func.array(found.scalar_subquery()))


@dataclass(frozen=True, slots=True)
class _Lists:
    """The calling lists a search sees: of the campaigns in ``scope`` (None:
    all of them, for an administrator), and of those the lists it searches.

    This is Scope.contact_filter's team wall with the campaigns read first:
    a list of ids lets PostgreSQL estimate how many contacts are behind the
    wall and check each contact on ix_calling_list_contact_campaign alone,
    where joining campaigns on every check made the walled pages two to
    three times slower at two million contacts.
    """

    in_view: tuple[int, ...] | None
    searched: tuple[int, ...] | None

    @classmethod
    async def of(cls, session: AsyncSession, scope: Scope, campaign_id: int | None) -> _Lists:
        in_view = None
        if not scope.everything:
            in_view = tuple(
                await session.scalars(select(Campaign.id).where(scope.campaign_filter()))
            )
        searched = in_view
        if campaign_id is not None:
            searched = tuple(
                await session.scalars(
                    select(Campaign.id).where(Campaign.id == campaign_id, scope.campaign_filter())
                )
            )
        return cls(in_view, searched)

    def wall(self, *, by_contact: bool = False) -> ColumnElement[bool]:
        """A WHERE clause on :class:`Contact`: on one of the lists searched.

        ``by_contact``: looked up for each contact that passed the other
        conditions, never joined.  PostgreSQL over-estimates how many
        contacts a name's trigrams find (ten times, often), and for that many
        it hashes every entry of the lists in view (236,000 for the statewide
        campaign's team, 60 ms) where a look-up for each of the 2,000 found
        takes 5 ms.  The OFFSET keeps the subquery from becoming a join.
        """
        if self.searched is None:
            return true()
        on_list = (
            CallingListEntry.contact_id == Contact.id,
            CallingListEntry.campaign_id.in_(self.searched),
        )
        if by_contact:
            return select(CallingListEntry.id).where(*on_list).offset(0).exists()
        return exists().where(*on_list)


def _filters(
    scope: Scope,
    lists: _Lists,
    wanted: ContactFilter,
    dialect: str,
    now: datetime,
    *,
    wall_by_contact: bool = False,
) -> list[ColumnElement[bool]]:
    conditions = [lists.wall(by_contact=wall_by_contact)]
    if not wanted.include_do_not_call:
        conditions.append(Contact.do_not_call.is_(False))
    term = wanted.query.strip()
    if term:
        conditions.append(_matches_term(term, dialect))
    if wanted.tags:
        conditions.append(_has_any_tag(dialect, wanted.tags))
    if wanted.support_scores:
        conditions.append(Contact.support_score.in_(wanted.support_scores))
    if wanted.language:
        conditions.append(
            or_(
                Contact.language == wanted.language.lower(),
                Contact.language.like(f"{_escape_like(wanted.language.lower())}-%", escape="\\"),
            )
        )
    # Other teams' calls and outcomes of a shared contact are theirs: they
    # neither show nor filter here.
    if wanted.never_called:
        conditions.append(
            ~exists().where(CallAttempt.contact_id == Contact.id, _their_calls(scope))
        )
    if wanted.callback_due:
        due: list[ColumnElement[bool]] = [
            CallingListEntry.contact_id == Contact.id,
            ~CallingListEntry.done,
            CallingListEntry.callback_at.is_not(None),
            CallingListEntry.callback_at <= now,
        ]
        if lists.searched is not None:
            due.append(CallingListEntry.campaign_id.in_(lists.searched))
        conditions.append(exists().where(*due))
    if wanted.outcome is not None:
        latest = (
            select(Disposition.outcome)
            .where(Disposition.contact_id == Contact.id, _their_outcomes(scope))
            .order_by(Disposition.created_at.desc(), Disposition.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        conditions.append(latest == wanted.outcome)
    return conditions


def _their_calls(scope: Scope) -> ColumnElement[bool]:
    return scope.work_filter(CallAttempt.campaign_id, CallAttempt.volunteer_id)


def _their_outcomes(scope: Scope) -> ColumnElement[bool]:
    return scope.work_filter(Disposition.campaign_id, Disposition.volunteer_id)


async def search(
    session: AsyncSession, user: User, wanted: ContactFilter, *, now: datetime
) -> SearchResult:
    """A page of the contacts ``user`` sees that match ``wanted``, in the
    list's order (last name, first name, id), and how many match (up to COUNT_CAP).

    Pages are keyset pages: a cursor says where one starts, so the hundredth
    page costs what the first does.
    """
    scope = await scope_of(session, user)
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        # The plan depends on what is searched (a rare name is found through
        # its trigrams, a common filter by walking the list in order): a
        # prepared statement's generic plan, made once for any value, could
        # walk two million contacts for a name no one has.  JIT compiling
        # costs these queries more (100-200 ms) than it ever saves them.
        await session.execute(
            text(
                "SELECT set_config('plan_cache_mode', 'force_custom_plan', true),"
                " set_config('jit', 'off', true)"
            )
        )
    lists = await _Lists.of(session, scope, wanted.campaign_id)
    size = max(1, min(wanted.limit, MAX_PAGE))
    after = ListPlace.from_cursor(wanted.after)
    before = ListPlace.from_cursor(wanted.before) if after is None else None
    pages: _Pages
    if _by_trigrams(wanted.query):
        pages = await _SampledPages.read(
            session,
            _filters(scope, lists, wanted, dialect, now, wall_by_contact=True),
            _filters(scope, lists, wanted, dialect, now),
            after or before,
            backwards=before is not None,
            need=size + 1,
        )
    else:
        pages = await _WalkedPages.read(session, _filters(scope, lists, wanted, dialect, now))
    result = SearchResult(
        total=min(pages.counted, COUNT_CAP), total_capped=pages.counted > COUNT_CAP
    )
    places: list[ListPlace] = []
    if before is not None:
        places = await pages.page(size + 1, _Stretch(before, backwards=True))
        if len(places) > size:
            places = places[:size]
            result.previous_cursor = places[-1].cursor()
            result.next_cursor = places[0].cursor()
            places.reverse()
        else:
            # Back at the start of the list: the first page, full.
            before = None
    if before is None:
        places = await pages.page(size + 1, _Stretch(after))
        if len(places) > size:
            places = places[:size]
            result.next_cursor = places[-1].cursor()
        if after is not None and places:
            result.previous_cursor = places[0].cursor()
    contacts = {
        contact.id: contact
        for contact in await session.scalars(
            select(Contact)
            .where(Contact.id.in_([place.contact_id for place in places]))
            .options(selectinload(Contact.phones))
        )
    }
    # A contact deleted since its place was read is left out.
    found = [contacts[place.contact_id] for place in places if place.contact_id in contacts]
    result.rows = await _rows(session, scope, lists, found)
    return result


def _by_trigrams(query: str) -> bool:
    """Whether the term searched is a name or email part its trigrams find (see _SampledPages)."""
    term = query.strip()
    return len(term) >= 3 and sum(ch.isdigit() for ch in term) < 3


# How many places of the list a name search walks, testing each contact,
# before it rather gathers the matches through their trigrams and sorts them.
WALK_BUDGET = 4_000


@dataclass(frozen=True, slots=True)
class _Stretch:
    """The part of the list after ``start`` (before it, ``backwards``), up to ``end`` included."""

    start: ListPlace | None
    end: ListPlace | None = None
    backwards: bool = False

    def bounds(
        self, columns: Sequence[ColumnElement[Any] | InstrumentedAttribute[Any]] = LIST_ORDER
    ) -> list[ColumnElement[bool]]:
        key = tuple_(*columns)
        bounds: list[ColumnElement[bool]] = []
        if self.start is not None:
            start = tuple_(*self.start.key())
            bounds.append(key < start if self.backwards else key > start)
        if self.end is not None:
            end = tuple_(*self.end.key())
            bounds.append(key >= end if self.backwards else key <= end)
        return bounds

    def order(
        self, columns: Sequence[ColumnElement[Any] | InstrumentedAttribute[Any]]
    ) -> list[ColumnElement[Any] | InstrumentedAttribute[Any]]:
        return [column.desc() for column in columns] if self.backwards else list(columns)

    def up_to(self, end: ListPlace) -> _Stretch:
        return _Stretch(self.start, end, self.backwards)


class _Pages(Protocol):
    """The pages of one search."""

    @property
    def counted(self) -> int:
        """How many contacts match, counted up to COUNT_CAP + 1."""

    async def page(self, limit: int, stretch: _Stretch) -> list[ListPlace]:
        """The places of the first ``limit`` matching contacts of ``stretch``, in its order."""


@dataclass(frozen=True, slots=True)
class _WalkedPages:
    """The pages of the filters, of a number's digits and of a term too short
    for its trigrams: their matches are spread over the alphabet, so a page is
    found walking the list in its order (ix_contacts_name_order) and testing
    each contact; the planner may instead gather the matches and sort them."""

    session: AsyncSession
    conditions: list[ColumnElement[bool]]
    counted: int

    @classmethod
    async def read(
        cls, session: AsyncSession, conditions: list[ColumnElement[bool]]
    ) -> _WalkedPages:
        counted = await session.scalar(
            select(func.count()).select_from(
                select(Contact.id).where(*conditions).limit(COUNT_CAP + 1).subquery()
            )
        )
        return cls(session, conditions, int(counted or 0))

    async def page(self, limit: int, stretch: _Stretch) -> list[ListPlace]:
        return await _places(self.session, self.conditions, limit, stretch, gather=False)


@dataclass(frozen=True, slots=True)
class _SampledPages:
    """A name or email part's pages.  Their matches may lie anywhere: every
    "Tremblay" sits at T, and walking there from A reads most of the list; a
    first name is everywhere, and gathering its 30,000 matches through their
    trigrams to sort them reads most of the table.

    So the count keeps what it reads: up to COUNT_CAP + 1 matches, found in
    no order, put in the list's order.  When that is all of them, a page is
    read off them.  Otherwise they are a sample of where the matches lie:
    between the cursor and the ``limit``-th of them past it lie at least
    ``limit`` matches, so the page ends there at the latest.  The page is
    walked to for WALK_BUDGET places, testing each contact (a fragment of
    many names fills it there), and on as far as the matches walked to
    promise the rest; what it still lacks is gathered through the trigrams
    up to the sample's bound.  With too few of the sample past the cursor to
    bound the page (the last pages), the rest of the list is gathered.

    ``by_contact`` are the conditions with the wall looked up contact by
    contact, for the count, the walks and a gather among near matches;
    ``joined`` with the planner's join, for a gather that may test every
    match, as one far down the list does.
    """

    session: AsyncSession
    by_contact: list[ColumnElement[bool]]
    joined: list[ColumnElement[bool]]
    counted: int
    # What a page may need of the sample, in the list's order: each place,
    # whether it is among the first ``need`` of the sample, and whether among
    # the ``need`` nearest past the cursor it was read for (before it,
    # backwards).  The rest stays in the database: 1,000 rows cost 5 ms here.
    sample: list[tuple[ListPlace, bool, bool]]
    need: int
    cursor: ListPlace | None
    backwards: bool

    @classmethod
    async def read(
        cls,
        session: AsyncSession,
        by_contact: list[ColumnElement[bool]],
        joined: list[ColumnElement[bool]],
        cursor: ListPlace | None,
        *,
        backwards: bool,
        need: int,
    ) -> _SampledPages:
        found = select(*LIST_ORDER).where(*by_contact).limit(COUNT_CAP + 1).subquery()
        key = (found.c.last_name, found.c.first_name, found.c.id)
        # Compared by the database, as its collation orders names.
        beyond: ColumnElement[bool] = true()
        if cursor is not None:
            start = tuple_(*cursor.key())
            beyond = tuple_(*key) < start if backwards else tuple_(*key) > start
        ranked = select(
            *key,
            beyond.label("beyond"),
            func.count().over().label("counted"),
            func.row_number().over(order_by=key).label("nth"),
            func.row_number()
            .over(partition_by=beyond, order_by=[k.desc() for k in key] if backwards else key)
            .label("nth_beyond"),
        ).subquery()
        first = ranked.c.nth <= need
        near = and_(ranked.c.beyond, ranked.c.nth_beyond <= need)
        rows = await session.execute(
            select(
                ranked.c.last_name,
                ranked.c.first_name,
                ranked.c.id,
                first,
                near,
                ranked.c.counted,
            )
            .where(or_(first, near))
            .order_by(ranked.c.last_name, ranked.c.first_name, ranked.c.id)
        )
        found_rows = rows.all()
        sample = [
            (ListPlace(last_name, first_name, contact_id), bool(is_first), bool(is_near))
            for last_name, first_name, contact_id, is_first, is_near, _counted in found_rows
        ]
        # Every row carries the count; none: nothing matched.
        counted = int(found_rows[0][5]) if found_rows else 0
        return cls(session, by_contact, joined, counted, sample, need, cursor, backwards)

    def _sampled(self, stretch: _Stretch) -> list[ListPlace]:
        """The sample's first ``need`` places in ``stretch``, in its order."""
        if stretch.start is None and not stretch.backwards:
            return [place for place, first, _near in self.sample if first]
        assert (stretch.start, stretch.backwards) == (self.cursor, self.backwards)
        near = [place for place, _first, near in self.sample if near]
        return near[::-1] if stretch.backwards else near

    async def page(self, limit: int, stretch: _Stretch) -> list[ListPlace]:
        assert limit <= self.need
        sampled = self._sampled(stretch)
        if self.counted <= COUNT_CAP:
            return sampled[:limit]
        # Where the page ends at the latest: the whole stretch when too few
        # of the sample lie in it to say.
        end = stretch.up_to(sampled[limit - 1]) if len(sampled) >= limit else stretch
        walk_end = await self.session.execute(
            select(*LIST_ORDER)
            .where(*stretch.bounds())
            .order_by(*stretch.order(LIST_ORDER))
            .offset(WALK_BUDGET)
            .limit(1)
        )
        last = walk_end.first()
        if last is None:
            return await _places(self.session, self.by_contact, limit, end, gather=False)
        walk_to = ListPlace(*last)
        walked = await _places(
            self.session,
            [*self.by_contact, *end.bounds()],
            limit,
            stretch.up_to(walk_to),
            gather=False,
        )
        if len(walked) == limit:
            return walked
        # Walked to walk_to short of the page, so the page ends past it.
        rest = _Stretch(walk_to, end.end, stretch.backwards)
        wanted = limit - len(walked)
        if end.end is not None and wanted <= 4 * len(walked):
            # As dense further on, the rest lies within four more such walks:
            # nearer than every match up to the sample's bound, which may be
            # 100,000 places away when the matches are many ("ier": one name
            # in six).
            return walked + await _places(self.session, self.by_contact, wanted, rest, gather=False)
        gathered = await _places(
            self.session,
            # Walked to none: the wall may be tested on every match.
            self.by_contact if walked else self.joined,
            wanted,
            rest,
            gather=True,
            # A gather may read the places up to the sample's bound off
            # ix_contacts_name_order and visit only the matches among them.
            # That pays when the matches are spread, as those walked to show;
            # when none were, they may lie bunched far on (every "Chempson"
            # past the 300,000 places from A to C, 100 ms to read), and
            # visiting each of their few thousand matches costs less.
            narrowed=bool(walked),
        )
        return walked + gathered


async def _places(
    session: AsyncSession,
    conditions: list[ColumnElement[bool]],
    limit: int,
    stretch: _Stretch,
    *,
    gather: bool,
    narrowed: bool = True,
) -> list[ListPlace]:
    """``narrowed``: when gathering, PostgreSQL may read the stretch's places
    off ix_contacts_name_order and visit only the matches among them; else
    it visits every match past the stretch's start, and its end only sorts
    fewer."""
    if not gather:
        ordered = select(*LIST_ORDER).where(*conditions, *stretch.bounds())
        ordered = ordered.order_by(*stretch.order(LIST_ORDER))
        return [ListPlace(*row) for row in await session.execute(ordered.limit(limit))]
    inside = stretch if narrowed else _Stretch(stretch.start, None, stretch.backwards)
    # OFFSET 0 keeps PostgreSQL from merging the subquery into the sort
    # and walking the list's order anyway: the matches are found first.
    found = select(*LIST_ORDER).where(*conditions, *inside.bounds()).offset(0).subquery()
    key = [found.c.last_name, found.c.first_name, found.c.id]
    ordered = select(*key).where(*stretch.bounds(key)).order_by(*stretch.order(key))
    return [ListPlace(*row) for row in await session.execute(ordered.limit(limit))]


async def _rows(
    session: AsyncSession, scope: Scope, lists: _Lists, contacts: list[Contact]
) -> list[ContactRow]:
    """Each contact with its last outcome, last call and call-back, as ``scope`` sees them."""
    ids = [contact.id for contact in contacts]
    last_outcomes: dict[int, DispositionOutcome] = {}
    last_calls: dict[int, datetime] = {}
    callbacks: dict[int, datetime] = {}
    if ids:
        for contact_id, outcome in await session.execute(
            select(Disposition.contact_id, Disposition.outcome)
            .where(Disposition.contact_id.in_(ids), _their_outcomes(scope))
            .order_by(Disposition.created_at, Disposition.id)
        ):
            last_outcomes[contact_id] = outcome
        for contact_id, at in await session.execute(
            select(CallAttempt.contact_id, func.max(CallAttempt.requested_at))
            .where(CallAttempt.contact_id.in_(ids), _their_calls(scope))
            .group_by(CallAttempt.contact_id)
        ):
            last_calls[contact_id] = at
        due: list[ColumnElement[bool]] = [
            CallingListEntry.contact_id.in_(ids),
            ~CallingListEntry.done,
            CallingListEntry.callback_at.is_not(None),
        ]
        if lists.in_view is not None:
            due.append(CallingListEntry.campaign_id.in_(lists.in_view))
        for contact_id, due_at in await session.execute(
            select(CallingListEntry.contact_id, func.min(CallingListEntry.callback_at))
            .where(*due)
            .group_by(CallingListEntry.contact_id)
        ):
            if due_at is not None:
                callbacks[contact_id] = due_at
    return [
        ContactRow(
            contact,
            last_outcomes.get(contact.id),
            last_calls.get(contact.id),
            callbacks.get(contact.id),
        )
        for contact in contacts
    ]


async def known_tags(session: AsyncSession, user: User, *, sample: int = 5000) -> list[str]:
    scope = await scope_of(session, user)
    sampled = select(Contact.tags).limit(sample)
    if not scope.everything:
        # The sample's contacts read off their lists' entries, then fetched:
        # testing contacts for the team wall one by one until 5,000 pass
        # tested 40,000 for a volunteer of the statewide campaign (230 ms).
        entries = (
            select(CallingListEntry.contact_id)
            .where(
                CallingListEntry.campaign_id.in_(select(Campaign.id).where(scope.campaign_filter()))
            )
            .limit(sample)
        )
        sampled = select(Contact.tags).where(Contact.id.in_(entries))
    # Contacts share a few dozen sets of tags: decoding each set once rather
    # than 5,000 of them spares the page 20 ms of JSON.
    found = sampled.subquery()
    tags: set[str] = set()
    for raw in await session.scalars(select(cast(found.c.tags, Text)).distinct()):
        row = json.loads(raw) if raw else None
        tags.update(tag for tag in row or () if isinstance(tag, str))
    return sorted(tags, key=str.lower)[:200]


# The languages in use, read off ix_contacts_language a value at a time (a
# "loose index scan"): SELECT DISTINCT would read every contact.
_LANGUAGES_POSTGRESQL = text(
    """
    WITH RECURSIVE found(language) AS (
        (SELECT language FROM contacts WHERE language IS NOT NULL
         ORDER BY language USING ~<~ LIMIT 1)
        UNION ALL
        SELECT (SELECT language FROM contacts WHERE language ~>~ found.language
                ORDER BY language USING ~<~ LIMIT 1)
        FROM found WHERE found.language IS NOT NULL
    )
    SELECT language FROM found WHERE language IS NOT NULL LIMIT 100
    """
)


async def known_languages(session: AsyncSession) -> list[str]:
    if session.get_bind().dialect.name == "postgresql":
        rows = await session.scalars(_LANGUAGES_POSTGRESQL)
    else:
        rows = await session.scalars(
            select(Contact.language).where(Contact.language.is_not(None)).distinct().limit(100)
        )
    return sorted({(value or "").split("-")[0] for value in rows if value})


async def contact_record(
    session: AsyncSession, viewer: User, contact_id: int
) -> ContactRecord | None:
    """The contact and what ``viewer``'s teams did with them.

    A contact on two teams' lists is one record, but each team's calls,
    outcomes, comments, notes and tasks, and who made them, stay with that
    team: work for a campaign belongs to its team, anything else to its
    author's teams.
    """
    contact = await session.get(Contact, contact_id, options=[selectinload(Contact.phones)])
    if contact is None:
        return None
    scope = await scope_of(session, viewer)
    calls = list(
        await session.scalars(select(CallAttempt).where(CallAttempt.contact_id == contact_id))
    )
    dispositions = list(
        await session.scalars(select(Disposition).where(Disposition.contact_id == contact_id))
    )
    notes = list(
        await session.scalars(select(ContactNote).where(ContactNote.contact_id == contact_id))
    )
    tasks = list(
        await session.scalars(select(FollowUpTask).where(FollowUpTask.contact_id == contact_id))
    )
    campaigns = [
        (campaign, entry)
        for entry, campaign in (
            await session.execute(
                select(CallingListEntry, Campaign)
                .join(Campaign, Campaign.id == CallingListEntry.campaign_id)
                .where(CallingListEntry.contact_id == contact_id)
            )
        )
        if scope.covers(campaign.team_id)
    ]
    in_view = await _history_filter(session, scope, calls, dispositions, notes, tasks)
    names = {
        user_id: display or username
        for user_id, display, username in (
            await session.execute(select(User.id, User.display_name, User.username))
        )
    }
    history: list[HistoryItem] = []
    for call in calls:
        if in_view(call.campaign_id, call.volunteer_id):
            history.append(
                HistoryItem(
                    call.requested_at, "call", call=call, author=names.get(call.volunteer_id, "")
                )
            )
    for disposition in dispositions:
        if in_view(disposition.campaign_id, disposition.volunteer_id):
            history.append(
                HistoryItem(
                    disposition.created_at,
                    "outcome",
                    disposition=disposition,
                    author=names.get(disposition.volunteer_id or 0, ""),
                )
            )
    call_campaigns = {call.call_id: call.campaign_id for call in calls}
    for note in notes:
        if in_view(call_campaigns.get(note.call_id or ""), note.author_id):
            history.append(
                HistoryItem(
                    note.created_at, "note", note=note, author=names.get(note.author_id or 0, "")
                )
            )
    for task in tasks:
        if in_view(task.campaign_id, task.created_by_id):
            history.append(
                HistoryItem(
                    task.created_at, "task", task=task, author=names.get(task.assignee_id or 0, "")
                )
            )
    history.sort(key=lambda item: item.at, reverse=True)
    return ContactRecord(contact, history[:200], campaigns)


async def _history_filter(
    session: AsyncSession,
    scope: Scope,
    calls: list[CallAttempt],
    dispositions: list[Disposition],
    notes: list[ContactNote],
    tasks: list[FollowUpTask],
) -> Callable[[int | None, int | None], bool]:
    """Whether an item of a contact's history, by campaign and author, is in ``scope``."""
    if scope.everything:
        return lambda _campaign_id, _author_id: True
    campaign_ids = {
        campaign_id
        for campaign_id in (
            *(call.campaign_id for call in calls),
            *(item.campaign_id for item in dispositions),
            *(task.campaign_id for task in tasks),
        )
        if campaign_id is not None
    }
    campaign_teams: dict[int, int | None] = {}
    if campaign_ids:
        campaign_teams = {
            campaign_id: team_id
            for campaign_id, team_id in await session.execute(
                select(Campaign.id, Campaign.team_id).where(Campaign.id.in_(campaign_ids))
            )
        }
    authors = {call.volunteer_id for call in calls} | {
        author
        for author in (
            *(item.volunteer_id for item in dispositions),
            *(note.author_id for note in notes),
            *(task.created_by_id for task in tasks),
        )
        if author is not None
    }
    author_teams = await teams_of_users(session, authors)

    def in_view(campaign_id: int | None, author_id: int | None) -> bool:
        if campaign_id is not None:
            return scope.covers(campaign_teams.get(campaign_id))
        if author_id is None:
            return False
        return author_id == scope.user_id or scope.covers_any(author_teams.get(author_id, ()))

    return in_view


async def add_note(
    session: AsyncSession,
    *,
    contact_id: int,
    author_id: int,
    body: str,
    call_id: str | None = None,
    now: datetime | None = None,
) -> ContactNote:
    note = ContactNote(
        contact_id=contact_id,
        author_id=author_id,
        body=body[:MAX_NOTE],
        call_id=call_id,
        created_at=now or utcnow(),
    )
    await contact_rows.add_note(session, note)
    await audit.record(
        session,
        action="contact.note",
        entity_type="contact",
        entity_id=contact_id,
        changes={"note_id": note.id, "call_id": call_id},
        actor_id=author_id,
    )
    return note


# -- do-not-call -----------------------------------------------------------------


def _dnc_scope(scope: Scope) -> ColumnElement[bool]:
    """The do-not-call entries a user sees: their teams' contacts, and numbers
    on no list at all (added by hand), which belong to no team."""
    return or_(scope.contact_filter(), ~exists().where(CallingListEntry.contact_id == Contact.id))


async def dnc_list(
    session: AsyncSession, viewer: User, *, query: str = "", limit: int = 200
) -> list[Contact]:
    statement = (
        select(Contact)
        .options(selectinload(Contact.phones))
        .where(
            or_(
                Contact.do_not_call.is_(True),
                exists().where(
                    and_(ContactPhone.contact_id == Contact.id, ContactPhone.do_not_call.is_(True))
                ),
            ),
            _dnc_scope(await scope_of(session, viewer)),
        )
    )
    term = query.strip()
    if term:
        like = f"%{_escape_like(term)}%"
        digits = "".join(ch for ch in term if ch.isdigit())
        match = or_(
            Contact.first_name.ilike(like, escape="\\"),
            Contact.last_name.ilike(like, escape="\\"),
        )
        if digits:
            match = or_(
                match,
                exists().where(
                    ContactPhone.contact_id == Contact.id, NUMBER_DIGITS.like(f"%{digits}%")
                ),
            )
        statement = statement.where(match)
    return list(
        await session.scalars(statement.order_by(Contact.dnc_at.desc(), Contact.id).limit(limit))
    )


async def add_number_to_dnc(
    session: AsyncSession, *, number: str, region: str, reason: str, actor_id: int
) -> Contact:
    """Put a number on the do-not-call list; raises InvalidPhoneNumber.

    A known number flags its contact; an unknown one is kept as a contact
    with no name, so a later import of that number stays blocked.
    """
    e164 = to_e164(number, region)
    now = utcnow()
    phone = await session.scalar(select(ContactPhone).where(ContactPhone.e164 == e164))
    if phone is None:
        contact = Contact(first_name="", last_name="", created_at=now, updated_at=now)
        contact.phones = [ContactPhone(e164=e164, phone_type=PhoneType.OTHER, created_at=now)]
        await contact_rows.add_contact(session, contact)
    else:
        found = await session.get(Contact, phone.contact_id, options=[selectinload(Contact.phones)])
        assert found is not None
        contact = found
    await contact_rows.update_contact(
        session,
        contact,
        do_not_call=True,
        dnc_at=contact.dnc_at or now,
        # A reason already given stays: another team's request must not erase it.
        dnc_reason=contact.dnc_reason or reason[:500] or None,
    )
    await audit.record(
        session,
        action="dnc.add",
        entity_type="contact",
        entity_id=contact.id,
        changes={"number": e164, "reason": reason[:500]},
        actor_id=actor_id,
    )
    return contact


def may_lift_dnc(actor: User) -> bool:
    """Whether ``actor``'s role may take people off the do-not-call list (the
    contacts in their view only: :func:`remove_from_dnc`)."""
    return actor.role in STAFF_ROLES


async def remove_from_dnc(session: AsyncSession, *, contact_id: int, actor: User) -> bool:
    """False when there is no such contact in ``actor``'s view, or ``actor``
    may not lift a do-not-call.

    Lifting a do-not-call lets people be called again: only staff; an
    organizer lifts only their teams' contacts; a number on no list, which
    any team may have added, only an administrator.  The do-not-call list's
    page and the contact's edit form both lift through here.
    """
    if not may_lift_dnc(actor):
        return False
    contact = await session.scalar(
        select(Contact)
        .options(selectinload(Contact.phones))
        .where(Contact.id == contact_id, (await scope_of(session, actor)).contact_filter())
    )
    if contact is None:
        return False
    await contact_rows.clear_do_not_call(session, contact)
    await audit.record(
        session,
        action="dnc.remove",
        entity_type="contact",
        entity_id=contact.id,
        changes={},
        actor_id=actor.id,
    )
    return True


@dataclass(frozen=True, slots=True)
class ContactsPage:
    """A page of the contact search, and the choices its filters offer."""

    result: SearchResult
    tags: list[str]
    languages: list[str]
    campaigns: list[Campaign]


@dataclass(frozen=True, slots=True)
class CallScreen:
    """What the call screen shows of one contact, as one user sees it."""

    record: ContactRecord
    # The campaign the contact is called for, when one was asked for.
    campaign: Campaign | None
    caller_ids: list[str]
    # Who a follow-up task can go to.
    people: list[User]
    # The user's call to this contact still in progress, or "".
    live_call_id: str


class ContactService:
    """Contacts as the pages show them; each call is one transaction."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], caller_ids: CallerIds) -> None:
        self._sessions = sessions
        self._caller_ids = caller_ids

    async def search_page(
        self, user: User, wanted: ContactFilter, *, now: datetime
    ) -> ContactsPage:
        async with self._sessions() as session:
            result = await search(session, user, wanted, now=now)
            tags = await known_tags(session, user)
            languages = await known_languages(session)
            campaigns = await visible_campaigns(session, user)
        return ContactsPage(result, tags, languages, campaigns)

    async def call_screen(
        self, user: User, contact_id: int, campaign_id: int | None
    ) -> CallScreen | None:
        """None when the contact (or the campaign asked for) is not there for ``user``.

        A campaign must be one ``user`` may see and the contact must be on its list.
        """
        async with self._sessions() as session:
            if not await can_access_contact(session, user, contact_id):
                return None
            record = await contact_record(session, user, contact_id)
            if record is None:
                return None
            campaign: Campaign | None = None
            if campaign_id is not None:
                campaign = await session.get(Campaign, campaign_id)
                if campaign is None or not await can_access_campaign(session, user, campaign):
                    return None
                if not any(
                    entry_campaign.id == campaign.id for entry_campaign, _entry in record.campaigns
                ):
                    return None
            caller_ids = await self._caller_ids.allowed(session, user, campaign)
            people = await colleagues(session, user)
            live_call = await live_call_between(
                session, volunteer_id=user.id, contact_id=contact_id
            )
        return CallScreen(
            record, campaign, caller_ids, people, live_call.call_id if live_call else ""
        )

    async def add_note(
        self, user: User, contact_id: int, *, body: str, call_id: str | None
    ) -> ContactNote | None:
        """None when ``user`` may not see the contact or it does not exist."""
        async with self._sessions.begin() as session:
            if not await can_access_contact(session, user, contact_id):
                return None
            if await session.get(Contact, contact_id) is None:
                return None
            return await add_note(
                session, contact_id=contact_id, author_id=user.id, body=body, call_id=call_id
            )

    async def dnc_list(self, viewer: User, *, query: str = "") -> list[Contact]:
        async with self._sessions() as session:
            return await dnc_list(session, viewer, query=query)

    async def add_number_to_dnc(
        self, *, number: str, region: str, reason: str, actor_id: int
    ) -> Contact:
        """Raises InvalidPhoneNumber (nothing is written then)."""
        async with self._sessions.begin() as session:
            return await add_number_to_dnc(
                session, number=number, region=region, reason=reason, actor_id=actor_id
            )

    async def remove_from_dnc(self, *, contact_id: int, actor: User) -> bool:
        """False when there is no such contact in ``actor``'s view."""
        async with self._sessions.begin() as session:
            return await remove_from_dnc(session, contact_id=contact_id, actor=actor)

    # -- editing the record by hand (dialer.services.contact_edits) ------------------

    async def editable_contact(self, user: User, contact_id: int) -> Contact | None:
        """None when ``user`` may not see the contact or it does not exist."""
        async with self._sessions() as session:
            return await contact_edits.editable_contact(session, user, contact_id)

    async def edit_contact(
        self,
        user: User,
        contact_id: int,
        edit: contact_edits.ContactEdit,
        *,
        region: str,
        policy: DialingPolicy,
        opened: contact_edits.ContactEdit,
        known_errors: dict[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """The audited changes, or None when the contact is not in ``user``'s view;
        raises :class:`~dialer.services.contact_edits.ContactEditRejected`.
        ``opened`` is the record as the form showed it: only what differs from it is written."""
        try:
            async with self._sessions.begin() as session:
                return await contact_edits.edit_contact(
                    session,
                    user,
                    contact_id,
                    edit,
                    opened=opened,
                    region=region,
                    policy=policy,
                    now=utcnow(),
                    known_errors=known_errors,
                )
        except IntegrityError as error:
            if "e164" not in str(error.orig):
                raise
            raise contact_edits.duplicate_number() from None
