"""Writes ``contacts``, ``contact_phones`` and ``contact_notes``; nothing else does.

A contact is added with its numbers (``add_contact``), or many at once by an
import (``insert_contacts``, ``insert_phones``: one executemany each; the bulk
import's ``insert_contacts_from``, ``insert_phones_from``: one INSERT ... SELECT
each, from its staging tables, ``dialer.store.bulk_contacts``); its
fields change one contact at a time (``update_contact``), or for all the
contacts a batch merged into (``update_contacts``, one flush).  A number is
added to a contact (``add_phones``), changed (``update_phone``) or removed
(``remove_phone``), and a
contact with its numbers leaves the do-not-call list (``clear_do_not_call``).
Notes are added (``add_note``).  Callers own the transaction; every function
here sends its SQL before it returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.selectable import TextualSelect

from dialer.domain.vocabulary import PhoneType
from dialer.store.models import Contact, ContactNote, ContactPhone


async def add_contact(session: AsyncSession, contact: Contact) -> None:
    """Insert a new contact and the numbers it holds."""
    session.add(contact)
    await session.flush()


async def insert_contacts(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert one contact per row, every column given; their ids, in the rows' order."""
    # The table, not the ORM entity: an ORM bulk insert leaves out the None
    # values, so rows with different empty fields became one statement each
    # (a 2,000-row import batch took 0.75 s, growing with the square of its size).
    table = cast(Table, Contact.__table__)
    result = await session.execute(
        insert(table).returning(table.c.id, sort_by_parameter_order=True), rows
    )
    return list(result.scalars())


async def insert_contacts_from(
    session: AsyncSession, columns: Sequence[str], rows: TextualSelect
) -> None:
    """Insert the contacts a query gives, its columns named by ``columns``, in one statement."""
    await session.execute(insert(Contact).from_select(list(columns), rows, include_defaults=False))


async def update_contact(session: AsyncSession, contact: Contact, **values: Any) -> None:
    for name, value in values.items():
        setattr(contact, name, value)
    await session.flush()


async def update_contacts(
    session: AsyncSession, changes: Iterable[tuple[Contact, Mapping[str, Any]]]
) -> None:
    """Set each contact's new values, then flush them all together.

    One flush lets the unit of work send the rows that change the same
    columns as one executemany.
    """
    for contact, values in changes:
        for name, value in values.items():
            setattr(contact, name, value)
    await session.flush()


async def clear_do_not_call(session: AsyncSession, contact: Contact) -> None:
    """Take a contact loaded with its phones, and each of its numbers, off the list."""
    contact.do_not_call = False
    contact.dnc_at = None
    contact.dnc_reason = None
    for phone in contact.phones:
        phone.do_not_call = False
    await session.flush()


async def add_phones(
    session: AsyncSession, contact: Contact, phones: Iterable[ContactPhone]
) -> None:
    """Add numbers to a contact loaded with its phones."""
    contact.phones.extend(phones)
    await session.flush()


async def add_phones_unless_on_file(
    session: AsyncSession,
    contact: Contact,
    phones: Sequence[tuple[str, PhoneType]],
    created_at: datetime,
) -> list[str]:
    """Add numbers to a contact, leaving out any already on file (on any contact).

    Returns the numbers added, and reloads the contact's phones when any was.
    The unique index decides (ON CONFLICT), so two outcomes giving the same
    number at once cannot make each other fail.
    """
    if not phones:
        return []
    added = await session.scalars(
        pg_insert(ContactPhone)
        .values(
            [
                {
                    "contact_id": contact.id,
                    "e164": e164,
                    "phone_type": kind,
                    "created_at": created_at,
                }
                for e164, kind in phones
            ]
        )
        .on_conflict_do_nothing(constraint="uq_contact_phones_e164")
        .returning(ContactPhone.e164)
    )
    numbers = list(added)
    if numbers:
        await session.refresh(contact, ["phones"])
    return numbers


async def insert_phones(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert one number per row, every column given, in one executemany."""
    await session.execute(insert(ContactPhone), rows)


async def insert_phones_from(
    session: AsyncSession, columns: Sequence[str], rows: TextualSelect
) -> None:
    """Insert the numbers a query gives, its columns named by ``columns``, in one statement."""
    await session.execute(
        insert(ContactPhone).from_select(list(columns), rows, include_defaults=False)
    )


async def update_phone(session: AsyncSession, phone: ContactPhone, **values: Any) -> None:
    for name, value in values.items():
        setattr(phone, name, value)
    await session.flush()


async def remove_phone(session: AsyncSession, contact: Contact, phone: ContactPhone) -> None:
    """Delete a number of a contact loaded with its phones (its past calls keep
    the number they dialed; their link to it is cleared by the foreign key)."""
    contact.phones.remove(phone)
    await session.flush()


async def add_note(session: AsyncSession, note: ContactNote) -> None:
    session.add(note)
    await session.flush()
