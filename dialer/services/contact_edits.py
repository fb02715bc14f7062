"""Editing a contact's record by hand: names, email, language, score, tags,
notes, address, time zone, numbers and do-not-call.

Who may edit: anyone who may see the contact (:func:`can_access_contact`:
a volunteer or organizer of a team whose campaign lists them, or an
administrator).  Callers are the ones who hear that a name is misspelt or a
number has changed, so a volunteer may fix the record as Démocratik lets its
callers do.  What lets people be called again is staff-only: taking the
contact or one of its numbers off the do-not-call list, and deleting a
number that is on it (a deleted number could come back with the next
import, unblocked).  Putting someone *on* the list stays open to everyone.

A new number is checked like an imported one (:func:`to_e164` in the
default region) and against the dialing policy; a number already on another
contact is refused without saying whose it is.  Every save that changes
something is one ``contact.edit`` audit entry listing each changed field
with its old and new value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from dialer.domain.compliance import DialingPolicy
from dialer.domain.i18n import _, pgettext
from dialer.domain.numbers import InvalidPhoneNumber, to_e164
from dialer.domain.vocabulary import PhoneType
from dialer.services.access import can_access_contact
from dialer.store import audit
from dialer.store import contacts as contact_rows
from dialer.store.access import STAFF_ROLES
from dialer.store.models import Contact, ContactPhone, User

MAX_NOTES = 10_000
MAX_TAGS = 50
MAX_TAG = 100
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+\Z")
LANGUAGE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]{2,8})?\Z")
# The fields of the contact row a form edits, in the audit entry's order.
CONTACT_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "language",
    "support_score",
    "tags",
    "notes",
    "address",
    "area",
    "timezone",
    "do_not_call",
    "dnc_reason",
)


@dataclass(frozen=True, slots=True)
class PhoneEdit:
    """One existing number as the form leaves it."""

    phone_id: int
    phone_type: PhoneType
    wrong_number: bool
    do_not_call: bool
    remove: bool = False


@dataclass(frozen=True, slots=True)
class ContactEdit:
    """The whole record as the form leaves it (text already trimmed and cut
    to its column by the web layer; empty optional text is None)."""

    first_name: str
    last_name: str
    email: str | None
    language: str | None
    support_score: int | None
    tags: tuple[str, ...]
    notes: str
    address: str | None
    area: str | None
    timezone: str | None
    do_not_call: bool
    dnc_reason: str | None
    phones: tuple[PhoneEdit, ...] = ()
    new_number: str = ""
    new_number_type: PhoneType = PhoneType.OTHER


class ContactEditRejected(Exception):
    """Field errors, in the current language, keyed by the form's field names."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{key}: {value}" for key, value in errors.items()))
        self.errors = errors


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def split_tags(raw: str) -> tuple[str, ...]:
    """Comma-separated tags, trimmed, without empties or repeats, in order."""
    seen: dict[str, None] = {}
    for part in raw.split(","):
        tag = part.strip()
        if tag:
            seen.setdefault(tag, None)
    return tuple(seen)


def _phone_state(phone: ContactPhone) -> dict[str, Any]:
    return {
        "type": phone.phone_type.value,
        "wrong_number": phone.wrong_number,
        "do_not_call": phone.do_not_call,
    }


def _number_problem(reason: str) -> str:
    reasons = {
        "empty": pgettext("phone number", "empty"),
        "too long": pgettext("phone number", "too long"),
        "too short": pgettext("phone number", "too short"),
        "unknown country code": pgettext("phone number", "unknown country code"),
        "not a phone number": pgettext("phone number", "not a phone number"),
        "wrong number of digits": pgettext("phone number", "wrong number of digits"),
        "not a valid number in its country": pgettext(
            "phone number", "not a valid number in its country"
        ),
        "extensions cannot be dialed": pgettext("phone number", "extensions cannot be dialed"),
        "contains letters": pgettext("phone number", "contains letters"),
    }
    return _("This is not a valid phone number: %(reason)s.", reason=reasons.get(reason, reason))


def _check_fields(edit: ContactEdit, errors: dict[str, str]) -> None:
    if edit.email is not None and not EMAIL.match(edit.email):
        errors["email"] = _("This is not a valid email address.")
    if edit.language is not None and not LANGUAGE.match(edit.language):
        errors["language"] = _("Use a language code such as fr or en.")
    if edit.support_score is not None and not 1 <= edit.support_score <= 5:
        errors["support_score"] = _("Enter a number from %(low)s to %(high)s.", low=1, high=5)
    if len(edit.tags) > MAX_TAGS:
        errors["tags"] = _("At most %(count)s tags.", count=MAX_TAGS)
    elif any(len(tag) > MAX_TAG for tag in edit.tags):
        errors["tags"] = _("A tag has at most %(count)s characters.", count=MAX_TAG)
    if len(edit.notes) > MAX_NOTES:
        errors["notes"] = _("At most %(count)s characters.", count=MAX_NOTES)
    if edit.timezone is not None and edit.timezone not in _zones():
        errors["timezone"] = _("Use a time zone name such as America/Toronto or Europe/Paris.")


async def edit_contact(
    session: AsyncSession,
    actor: User,
    contact_id: int,
    edit: ContactEdit,
    *,
    region: str,
    policy: DialingPolicy,
    now: datetime,
    known_errors: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """Apply ``edit``; the audit entry's changes ({} when nothing changed), or
    None when ``actor`` may not see the contact.  Raises
    :class:`ContactEditRejected` before writing anything, with every error
    at once: ``known_errors`` (what the form reader refused) and these checks'."""
    if not await can_access_contact(session, actor, contact_id):
        return None
    contact = await session.get(Contact, contact_id, options=[selectinload(Contact.phones)])
    if contact is None:
        return None
    staff = actor.role in STAFF_ROLES
    errors: dict[str, str] = dict(known_errors or {})
    _check_fields(edit, errors)

    # -- the contact's own fields ------------------------------------------------
    wanted: dict[str, Any] = {
        "first_name": edit.first_name,
        "last_name": edit.last_name,
        "email": edit.email,
        "language": edit.language,
        "support_score": edit.support_score,
        "tags": list(edit.tags),
        "notes": edit.notes,
        "address": edit.address,
        "area": edit.area,
        "timezone": edit.timezone,
        "do_not_call": edit.do_not_call,
        "dnc_reason": edit.dnc_reason if edit.do_not_call else None,
    }
    if contact.do_not_call and not edit.do_not_call and not staff:
        errors["do_not_call"] = _("Only an organizer can take a contact off the do-not-call list.")
    values = {name: value for name, value in wanted.items() if getattr(contact, name) != value}
    if "do_not_call" in values:
        values["dnc_at"] = now if edit.do_not_call else None

    # -- its numbers -------------------------------------------------------------
    by_id = {phone.id: phone for phone in contact.phones}
    phone_updates: list[tuple[ContactPhone, dict[str, Any]]] = []
    removals: list[ContactPhone] = []
    changes: dict[str, Any] = {}
    for item in edit.phones:
        phone = by_id.get(item.phone_id)
        if phone is None:
            # Removed meanwhile (another tab, another person): nothing to apply.
            continue
        field = f"phone-{phone.id}"
        if item.remove:
            if phone.do_not_call and not staff:
                errors[field] = _("Only an organizer can delete a number on the do-not-call list.")
            removals.append(phone)
            changes[f"phone:{phone.e164}"] = {"old": _phone_state(phone), "new": None}
            continue
        if phone.do_not_call and not item.do_not_call and not staff:
            errors[field] = _("Only an organizer can take a number off the do-not-call list.")
        update = {
            name: value
            for name, value in (
                ("phone_type", item.phone_type),
                ("wrong_number", item.wrong_number),
                ("do_not_call", item.do_not_call),
            )
            if getattr(phone, name) != value
        }
        if update:
            phone_updates.append((phone, update))
            new_state = _phone_state(phone) | {
                "type": item.phone_type.value,
                "wrong_number": item.wrong_number,
                "do_not_call": item.do_not_call,
            }
            changes[f"phone:{phone.e164}"] = {"old": _phone_state(phone), "new": new_state}

    added: ContactPhone | None = None
    if edit.new_number.strip():
        try:
            e164 = to_e164(edit.new_number, region)
        except InvalidPhoneNumber as invalid:
            errors["new_number"] = _number_problem(invalid.reason)
        else:
            owner = await session.scalar(
                select(ContactPhone.contact_id).where(ContactPhone.e164 == e164)
            )
            if owner == contact.id:
                errors["new_number"] = _("This contact already has this number.")
            elif owner is not None:
                # Whose it is stays unsaid: that contact may be another team's.
                errors["new_number"] = _("This number is already on another contact's record.")
            elif policy.check(e164) is not None:
                errors["new_number"] = _("The dialing policy does not allow calls to this number.")
            else:
                added = ContactPhone(
                    e164=e164,
                    phone_type=edit.new_number_type,
                    wrong_number=False,
                    do_not_call=False,
                    created_at=now,
                )
                changes[f"phone:{e164}"] = {"old": None, "new": _phone_state(added)}
    if errors:
        # The reader's message first: it says why a value could not be read.
        raise ContactEditRejected(errors | dict(known_errors or {}))

    for name in CONTACT_FIELDS:
        if name in values:
            changes[name] = {"old": getattr(contact, name), "new": values[name]}
    if not changes:
        return {}
    # Only the store writes (it flushes at each call); nothing is set here.
    if values:
        await contact_rows.update_contact(session, contact, **values)
    for phone, update in phone_updates:
        await contact_rows.update_phone(session, phone, **update)
    for phone in removals:
        await contact_rows.remove_phone(session, contact, phone)
    if added is not None:
        await contact_rows.add_phones(session, contact, [added])
    await audit.record(
        session,
        action="contact.edit",
        entity_type="contact",
        entity_id=contact.id,
        changes=changes,
        actor_id=actor.id,
    )
    return changes


def duplicate_number() -> ContactEditRejected:
    """The refusal of a number another contact got at the same moment (the
    unique index decided, after the check above had passed)."""
    return ContactEditRejected(
        {"new_number": _("This number is already on another contact's record.")}
    )


async def editable_contact(session: AsyncSession, actor: User, contact_id: int) -> Contact | None:
    """The contact with its numbers, when ``actor`` may see (and so edit) it."""
    if not await can_access_contact(session, actor, contact_id):
        return None
    return await session.get(Contact, contact_id, options=[selectinload(Contact.phones)])
