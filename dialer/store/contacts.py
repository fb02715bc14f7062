"""Writes ``contacts``, ``contact_phones`` and ``contact_notes``; nothing else does.

Callers own the transaction; every function here sends its SQL before it
returns.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from dialer.store.models import Contact, ContactPhone


async def update_contact(session: AsyncSession, contact: Contact, **values: Any) -> None:
    for name, value in values.items():
        setattr(contact, name, value)
    await session.flush()


async def add_phones(
    session: AsyncSession, contact: Contact, phones: Iterable[ContactPhone]
) -> None:
    """Add numbers to a contact loaded with its phones."""
    contact.phones.extend(phones)
    await session.flush()


async def update_phone(session: AsyncSession, phone: ContactPhone, **values: Any) -> None:
    for name, value in values.items():
        setattr(phone, name, value)
    await session.flush()
