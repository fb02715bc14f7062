"""Contacts for the web pages: search and filters, the record, notes, do-not-call.

Visibility follows :func:`dialer.services.access.can_access_contact`: staff see every
contact; a volunteer sees the contacts on the calling lists of their teams'
campaigns and nothing else.  Every query here applies that rule itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, and_, exists, false, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from dialer.domain.numbers import to_e164
from dialer.domain.vocabulary import DispositionOutcome, PhoneType
from dialer.services.access import can_access_campaign, can_access_contact
from dialer.services.call_history import live_call_between
from dialer.services.caller_ids import CallerIds
from dialer.services.campaigns import colleagues, visible_campaigns
from dialer.services.tasks import open_tasks_for
from dialer.store import audit
from dialer.store import contacts as contact_rows
from dialer.store.access import STAFF_ROLES, team_ids
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


async def _visible_team_ids(session: AsyncSession, user: User) -> set[int] | None:
    """None: everything is visible (staff)."""
    if user.role in STAFF_ROLES:
        return None
    return await team_ids(session, user.id)


def _visibility(teams: set[int] | None, campaign_id: int | None) -> ColumnElement[bool] | None:
    if teams is None and campaign_id is None:
        return None
    conditions: list[ColumnElement[bool]] = [
        CallingListEntry.contact_id == Contact.id,
        CallingListEntry.campaign_id == Campaign.id,
    ]
    if teams is not None:
        if not teams:
            return false()
        conditions.append(Campaign.team_id.in_(teams))
    if campaign_id is not None:
        conditions.append(Campaign.id == campaign_id)
    return exists().where(*conditions)


def _has_tag(dialect: str, tag: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        return text("jsonb_exists(CAST(contacts.tags AS JSONB), :tag)").bindparams(tag=tag)  # type: ignore[return-value]
    return text(  # type: ignore[return-value]
        "EXISTS (SELECT 1 FROM json_each(contacts.tags) WHERE json_each.value = :tag)"
    ).bindparams(tag=tag)


async def search(
    session: AsyncSession, user: User, wanted: ContactFilter, *, now: datetime
) -> SearchResult:
    teams = await _visible_team_ids(session, user)
    statement = select(Contact)
    visible = _visibility(teams, wanted.campaign_id)
    if visible is not None:
        statement = statement.where(visible)
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
    if wanted.never_called:
        statement = statement.where(~exists().where(CallAttempt.contact_id == Contact.id))
    if wanted.callback_due:
        due = [
            CallingListEntry.contact_id == Contact.id,
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
            .where(Disposition.contact_id == Contact.id)
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
            .where(Disposition.contact_id.in_(ids))
            .order_by(Disposition.created_at, Disposition.id)
        ):
            last_outcomes[contact_id] = outcome
        for contact_id, at in await session.execute(
            select(CallAttempt.contact_id, func.max(CallAttempt.requested_at))
            .where(CallAttempt.contact_id.in_(ids))
            .group_by(CallAttempt.contact_id)
        ):
            last_calls[contact_id] = at
        for contact_id, due_at in await session.execute(
            select(CallingListEntry.contact_id, func.min(CallingListEntry.callback_at))
            .where(
                CallingListEntry.contact_id.in_(ids),
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
    teams = await _visible_team_ids(session, user)
    statement = select(Contact.tags).limit(sample)
    visible = _visibility(teams, None)
    if visible is not None:
        statement = statement.where(visible)
    tags: set[str] = set()
    for row in await session.scalars(statement):
        tags.update(tag for tag in row or () if isinstance(tag, str))
    return sorted(tags, key=str.lower)[:200]


async def known_languages(session: AsyncSession) -> list[str]:
    rows = await session.scalars(
        select(Contact.language).where(Contact.language.is_not(None)).distinct().limit(100)
    )
    return sorted({(value or "").split("-")[0] for value in rows if value})


async def contact_record(session: AsyncSession, contact_id: int) -> ContactRecord | None:
    contact = await session.get(Contact, contact_id, options=[selectinload(Contact.phones)])
    if contact is None:
        return None
    names = {
        user_id: display or username
        for user_id, display, username in (
            await session.execute(select(User.id, User.display_name, User.username))
        )
    }
    history: list[HistoryItem] = []
    for call in await session.scalars(
        select(CallAttempt).where(CallAttempt.contact_id == contact_id)
    ):
        history.append(
            HistoryItem(
                call.requested_at, "call", call=call, author=names.get(call.volunteer_id, "")
            )
        )
    for disposition in await session.scalars(
        select(Disposition).where(Disposition.contact_id == contact_id)
    ):
        history.append(
            HistoryItem(
                disposition.created_at,
                "outcome",
                disposition=disposition,
                author=names.get(disposition.volunteer_id or 0, ""),
            )
        )
    for note in await session.scalars(
        select(ContactNote).where(ContactNote.contact_id == contact_id)
    ):
        history.append(
            HistoryItem(
                note.created_at, "note", note=note, author=names.get(note.author_id or 0, "")
            )
        )
    for task in await session.scalars(
        select(FollowUpTask).where(FollowUpTask.contact_id == contact_id)
    ):
        history.append(
            HistoryItem(
                task.created_at, "task", task=task, author=names.get(task.assignee_id or 0, "")
            )
        )
    history.sort(key=lambda item: item.at, reverse=True)
    campaigns = [
        (campaign, entry)
        for entry, campaign in (
            await session.execute(
                select(CallingListEntry, Campaign)
                .join(Campaign, Campaign.id == CallingListEntry.campaign_id)
                .where(CallingListEntry.contact_id == contact_id)
            )
        )
    ]
    return ContactRecord(contact, history[:200], campaigns)


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


async def dnc_list(session: AsyncSession, *, query: str = "", limit: int = 200) -> list[Contact]:
    statement = (
        select(Contact)
        .options(selectinload(Contact.phones))
        .where(
            or_(
                Contact.do_not_call.is_(True),
                exists().where(
                    and_(ContactPhone.contact_id == Contact.id, ContactPhone.do_not_call.is_(True))
                ),
            )
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
        dnc_reason=reason[:500] or contact.dnc_reason,
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


async def remove_from_dnc(session: AsyncSession, *, contact_id: int, actor_id: int) -> bool:
    contact = await session.get(Contact, contact_id, options=[selectinload(Contact.phones)])
    if contact is None:
        return False
    await contact_rows.clear_do_not_call(session, contact)
    await audit.record(
        session,
        action="dnc.remove",
        entity_type="contact",
        entity_id=contact.id,
        changes={},
        actor_id=actor_id,
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
            record = await contact_record(session, contact_id)
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

    async def open_tasks(self, user_id: int) -> list[tuple[FollowUpTask, Contact]]:
        async with self._sessions() as session:
            return await open_tasks_for(session, user_id)

    async def dnc_list(self, *, query: str = "") -> list[Contact]:
        async with self._sessions() as session:
            return await dnc_list(session, query=query)

    async def add_number_to_dnc(
        self, *, number: str, region: str, reason: str, actor_id: int
    ) -> Contact:
        """Raises InvalidPhoneNumber (nothing is written then)."""
        async with self._sessions.begin() as session:
            return await add_number_to_dnc(
                session, number=number, region=region, reason=reason, actor_id=actor_id
            )

    async def remove_from_dnc(self, *, contact_id: int, actor_id: int) -> bool:
        """False when there is no such contact."""
        async with self._sessions.begin() as session:
            return await remove_from_dnc(session, contact_id=contact_id, actor_id=actor_id)
