"""Contacts for the web pages: search and filters, the record, notes, do-not-call.

Visibility follows :mod:`dialer.services.access`: an administrator sees every
contact; organizers and volunteers see the contacts on the calling lists of
their teams' campaigns, and of a contact's history only what their teams did.
Every query here applies that rule itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

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
    offset: int = 0


@dataclass(frozen=True, slots=True)
class ContactRow:
    contact: Contact
    last_outcome: DispositionOutcome | None
    last_called_at: datetime | None
    callback_at: datetime | None


@dataclass(slots=True)
class SearchResult:
    rows: list[ContactRow] = field(default_factory=list)
    total: int = 0


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


def _has_tag(dialect: str, tag: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        return text("jsonb_exists(CAST(contacts.tags AS JSONB), :tag)").bindparams(tag=tag)  # type: ignore[return-value]
    return text(  # type: ignore[return-value]
        "EXISTS (SELECT 1 FROM json_each(contacts.tags) WHERE json_each.value = :tag)"
    ).bindparams(tag=tag)


async def search(
    session: AsyncSession, user: User, wanted: ContactFilter, *, now: datetime
) -> SearchResult:
    scope = await scope_of(session, user)
    statement = select(Contact).where(scope.contact_filter(wanted.campaign_id))
    if not wanted.include_do_not_call:
        statement = statement.where(Contact.do_not_call.is_(False))
    term = wanted.query.strip()
    if term:
        like = f"%{_escape_like(term)}%"
        digits = "".join(ch for ch in term if ch.isdigit())
        name_match = or_(
            Contact.first_name.ilike(like, escape="\\"),
            Contact.last_name.ilike(like, escape="\\"),
            (Contact.first_name + " " + Contact.last_name).ilike(like, escape="\\"),
            Contact.email.ilike(like, escape="\\"),
        )
        if len(digits) >= 3:
            name_match = or_(
                name_match,
                exists().where(
                    ContactPhone.contact_id == Contact.id,
                    ContactPhone.e164.like(f"%{digits}%"),
                ),
            )
        statement = statement.where(name_match)
    dialect = session.get_bind().dialect.name
    if wanted.tags:
        statement = statement.where(or_(*(_has_tag(dialect, tag) for tag in wanted.tags)))
    if wanted.support_scores:
        statement = statement.where(Contact.support_score.in_(wanted.support_scores))
    if wanted.language:
        statement = statement.where(
            or_(
                Contact.language == wanted.language.lower(),
                Contact.language.like(f"{_escape_like(wanted.language.lower())}-%", escape="\\"),
            )
        )
    # Other teams' calls and outcomes of a shared contact are theirs: they
    # neither show nor filter here.
    their_calls = scope.work_filter(CallAttempt.campaign_id, CallAttempt.volunteer_id)
    their_outcomes = scope.work_filter(Disposition.campaign_id, Disposition.volunteer_id)
    if wanted.never_called:
        statement = statement.where(
            ~exists().where(CallAttempt.contact_id == Contact.id, their_calls)
        )
    if wanted.callback_due:
        due = [
            CallingListEntry.contact_id == Contact.id,
            CallingListEntry.campaign_id.in_(select(Campaign.id).where(scope.campaign_filter())),
            CallingListEntry.done.is_(False),
            CallingListEntry.callback_at.is_not(None),
            CallingListEntry.callback_at <= now,
        ]
        if wanted.campaign_id is not None:
            due.append(CallingListEntry.campaign_id == wanted.campaign_id)
        statement = statement.where(exists().where(*due))
    if wanted.outcome is not None:
        latest = (
            select(Disposition.outcome)
            .where(Disposition.contact_id == Contact.id, their_outcomes)
            .order_by(Disposition.created_at.desc(), Disposition.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        statement = statement.where(latest == wanted.outcome)
    total = await session.scalar(select(func.count()).select_from(statement.subquery()))
    contacts = list(
        await session.scalars(
            statement.options(selectinload(Contact.phones))
            .order_by(Contact.last_name, Contact.first_name, Contact.id)
            .limit(max(1, min(wanted.limit, 200)))
            .offset(max(0, wanted.offset))
        )
    )
    result = SearchResult(total=int(total or 0))
    ids = [contact.id for contact in contacts]
    last_outcomes: dict[int, DispositionOutcome] = {}
    last_calls: dict[int, datetime] = {}
    callbacks: dict[int, datetime] = {}
    if ids:
        for contact_id, outcome in await session.execute(
            select(Disposition.contact_id, Disposition.outcome)
            .where(Disposition.contact_id.in_(ids), their_outcomes)
            .order_by(Disposition.created_at, Disposition.id)
        ):
            last_outcomes[contact_id] = outcome
        for contact_id, at in await session.execute(
            select(CallAttempt.contact_id, func.max(CallAttempt.requested_at))
            .where(CallAttempt.contact_id.in_(ids), their_calls)
            .group_by(CallAttempt.contact_id)
        ):
            last_calls[contact_id] = at
        for contact_id, due_at in await session.execute(
            select(CallingListEntry.contact_id, func.min(CallingListEntry.callback_at))
            .where(
                CallingListEntry.contact_id.in_(ids),
                CallingListEntry.campaign_id.in_(
                    select(Campaign.id).where(scope.campaign_filter())
                ),
                CallingListEntry.done.is_(False),
                CallingListEntry.callback_at.is_not(None),
            )
            .group_by(CallingListEntry.contact_id)
        ):
            if due_at is not None:
                callbacks[contact_id] = due_at
    result.rows = [
        ContactRow(
            contact,
            last_outcomes.get(contact.id),
            last_calls.get(contact.id),
            callbacks.get(contact.id),
        )
        for contact in contacts
    ]
    return result


async def known_tags(session: AsyncSession, user: User, *, sample: int = 5000) -> list[str]:
    scope = await scope_of(session, user)
    statement = select(Contact.tags).where(scope.contact_filter()).limit(sample)
    tags: set[str] = set()
    for row in await session.scalars(statement):
        tags.update(tag for tag in row or () if isinstance(tag, str))
    return sorted(tags, key=str.lower)[:200]


async def known_languages(session: AsyncSession) -> list[str]:
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
                    ContactPhone.contact_id == Contact.id, ContactPhone.e164.like(f"%{digits}%")
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
