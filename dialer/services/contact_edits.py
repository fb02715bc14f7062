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

The form posts the whole record, but also the record as it was when the
form was opened; only what the person changed there is written, so an
outcome, an import or a colleague's save in the meantime is not undone.
When a field they changed was also changed by someone else since, nothing
is written and the refusal says the field's current value.  Taking the
contact off the do-not-call list goes through the do-not-call list's own
:func:`~dialer.services.contacts.remove_from_dnc` (its rules, its
``dnc.remove`` audit entry, its numbers cleared too), as on the list's page.
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
from dialer.domain.i18n import _
from dialer.domain.number_reasons import phone_reason
from dialer.domain.numbers import InvalidPhoneNumber, display, to_e164
from dialer.domain.vocabulary import PhoneType
from dialer.services.access import can_access_contact
from dialer.store import audit
from dialer.store import contacts as contact_rows
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
    """Field errors, in the current language, keyed by the form's field names;
    ``conflicts`` are those where someone else changed the same field since
    the form was opened (a subset of ``errors``)."""

    def __init__(self, errors: dict[str, str], conflicts: frozenset[str] = frozenset()) -> None:
        super().__init__("; ".join(f"{key}: {value}" for key, value in errors.items()))
        self.errors = errors
        self.conflicts = conflicts


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
    return _("This is not a valid phone number: %(reason)s.", reason=phone_reason(reason))


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


def _label(name: str) -> str:
    """A field's name as the form labels it, in the current language."""
    labels = {
        "first_name": _("First name"),
        "last_name": _("Last name"),
        "email": _("Email"),
        "language": _("Language"),
        "support_score": _("Support score"),
        "tags": _("Tags"),
        "notes": _("Notes"),
        "address": _("Address"),
        "area": _("Area"),
        "timezone": _("Time zone"),
        "do_not_call": _("Do not call"),
        "dnc_reason": _("Reason"),
    }
    return labels.get(name, name)


def _shown(value: Any) -> str:
    """A stored value as the conflict message quotes it."""
    if value is None or value == "" or value == []:
        return _("(empty)")
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value)
    return str(value)


def _phone_shown(phone: ContactPhone) -> str:
    kinds = {
        PhoneType.MOBILE: _("Mobile"),
        PhoneType.LANDLINE: _("Landline"),
        PhoneType.WORK: _("Work"),
        PhoneType.OTHER: _("Phone"),
    }
    parts = [kinds.get(phone.phone_type, phone.phone_type.value)]
    if phone.wrong_number:
        parts.append(_("wrong number"))
    if phone.do_not_call:
        parts.append(_("do not call"))
    return ", ".join(parts)


def _same(left: Any, right: Any) -> bool:
    """Equal as the form shows them: no value and empty text are one, text is
    trimmed, a list of tags is a tuple."""

    def form_like(value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
        if isinstance(value, list):
            value = tuple(value)
        return None if value in ("", ()) else value

    return bool(form_like(left) == form_like(right))


def _record(edit: ContactEdit) -> dict[str, Any]:
    """The contact's own fields as ``edit`` leaves them (a reason only on the list)."""
    return {
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


PHONE_FIELDS = ("phone_type", "wrong_number", "do_not_call")


def _phone_values(item: PhoneEdit) -> dict[str, Any]:
    return {
        "phone_type": item.phone_type,
        "wrong_number": item.wrong_number,
        "do_not_call": item.do_not_call,
    }


def _phone_values_of(phone: ContactPhone) -> dict[str, Any]:
    return {name: getattr(phone, name) for name in PHONE_FIELDS}


async def edit_contact(
    session: AsyncSession,
    actor: User,
    contact_id: int,
    edit: ContactEdit,
    *,
    opened: ContactEdit,
    region: str,
    policy: DialingPolicy,
    now: datetime,
    known_errors: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """Apply what changed from ``opened`` (the record as the form showed it)
    to ``edit``; the audit entry's changes ({} when nothing changed), or
    None when ``actor`` may not see the contact.  Raises
    :class:`ContactEditRejected` before writing anything, with every error
    at once: ``known_errors`` (what the form reader refused), these checks',
    and each field changed both in the form and by someone else since."""
    # Imported here: dialer.services.contacts imports this module for its
    # ContactService; lifting the do-not-call is its function, not a copy.
    from dialer.services.contacts import may_lift_dnc, remove_from_dnc

    if not await can_access_contact(session, actor, contact_id):
        return None
    contact = await session.get(Contact, contact_id, options=[selectinload(Contact.phones)])
    if contact is None:
        return None
    staff = may_lift_dnc(actor)
    errors: dict[str, str] = dict(known_errors or {})
    conflicts: set[str] = set()
    _check_fields(edit, errors)

    def conflict(field: str, message: str) -> None:
        errors[field] = message
        conflicts.add(field)

    # -- the contact's own fields ------------------------------------------------
    # Only what the form changed is written: a field left as it was opened
    # keeps whatever the database holds now, even if that changed meanwhile.
    wanted, was = _record(edit), _record(opened)
    values: dict[str, Any] = {}
    for name in CONTACT_FIELDS:
        stored = getattr(contact, name)
        if _same(wanted[name], was[name]) or _same(wanted[name], stored):
            continue
        if not _same(stored, was[name]):
            conflict(
                name,
                _(
                    "%(field)s was changed by someone else since you opened this form; "
                    "it is now: %(value)s. Check it, then save again.",
                    field=_label(name),
                    value=_shown(stored),
                ),
            )
            continue
        values[name] = wanted[name]
    # (A yes/no never conflicts: changed both ways, it is already as wanted.)
    lift = values.get("do_not_call") is False
    if lift:
        # The list's own lifting clears the reason and the date with the flag.
        del values["do_not_call"]
        values.pop("dnc_reason", None)
        if not staff:
            errors["do_not_call"] = _(
                "Only an organizer can take a contact off the do-not-call list."
            )
    elif values.get("do_not_call") is True:
        values["dnc_at"] = now

    # -- its numbers -------------------------------------------------------------
    by_id = {phone.id: phone for phone in contact.phones}
    opened_phones = {item.phone_id: item for item in opened.phones}
    phone_updates: list[tuple[ContactPhone, dict[str, Any]]] = []
    removals: list[ContactPhone] = []
    before: dict[int, dict[str, Any]] = {}
    for item in edit.phones:
        field = f"phone-{item.phone_id}"
        first = opened_phones.get(item.phone_id)
        phone = by_id.get(item.phone_id)
        if phone is None:
            if item.remove or (first is not None and item == first):
                continue  # gone meanwhile, and this form asked nothing of it
            conflict(
                field,
                _(
                    "A number you changed was deleted by someone else since you opened "
                    "this form. Check the numbers, then save again."
                ),
            )
            continue
        mine = _phone_values(item)
        was_phone = _phone_values(first) if first is not None else _phone_values_of(phone)
        if item.remove:
            if phone.do_not_call and not staff:
                errors[field] = _("Only an organizer can delete a number on the do-not-call list.")
            removals.append(phone)
            before[phone.id] = _phone_state(phone)
            continue
        changed = {
            name: value
            for name, value in mine.items()
            if value != was_phone[name] and value != getattr(phone, name)
        }
        if any(getattr(phone, name) != was_phone[name] for name in changed):
            conflict(
                field,
                _(
                    "The number %(number)s was changed by someone else since you opened "
                    "this form; it is now: %(value)s. Check it, then save again.",
                    number=display(phone.e164),
                    value=_phone_shown(phone),
                ),
            )
            continue
        if changed.get("do_not_call") is False and not staff:
            errors[field] = _("Only an organizer can take a number off the do-not-call list.")
        if changed:
            phone_updates.append((phone, changed))
            before[phone.id] = _phone_state(phone)

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
    if errors:
        # The reader's message first: it says why a value could not be read.
        raise ContactEditRejected(errors | dict(known_errors or {}), frozenset(conflicts))

    changes: dict[str, Any] = {
        name: {"old": getattr(contact, name), "new": values[name]}
        for name in CONTACT_FIELDS
        if name in values
    }
    # Only the store writes (it flushes at each call); nothing is set here.
    if lift and not await remove_from_dnc(session, contact_id=contact.id, actor=actor):
        # Not expected after the checks above; the transaction is rolled back.
        raise ContactEditRejected(
            {"do_not_call": _("Only an organizer can take a contact off the do-not-call list.")}
        )
    if values:
        await contact_rows.update_contact(session, contact, **values)
    for phone, update in phone_updates:
        await contact_rows.update_phone(session, phone, **update)
    for phone in removals:
        changes[f"phone:{phone.e164}"] = {"old": before[phone.id], "new": None}
        await contact_rows.remove_phone(session, contact, phone)
    for phone, _update in phone_updates:
        changes[f"phone:{phone.e164}"] = {"old": before[phone.id], "new": _phone_state(phone)}
    if added is not None:
        await contact_rows.add_phones(session, contact, [added])
        changes[f"phone:{added.e164}"] = {"old": None, "new": _phone_state(added)}
    if changes:
        await audit.record(
            session,
            action="contact.edit",
            entity_type="contact",
            entity_id=contact.id,
            changes=changes,
            actor_id=actor.id,
        )
    # The lift is in what is returned, though its audit entry is the list's own.
    return ({"do_not_call": {"old": True, "new": False}} if lift else {}) | changes


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
