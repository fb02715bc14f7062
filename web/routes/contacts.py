"""Editing a contact's record: the Details tab's form, and its page when a
value is refused (422, each error beside its field) or when someone else
changed a field the form changed since it was opened (409).

The form carries the record as it was opened (hidden ``orig-`` fields), so
that the service writes only what the person changed there.

Who may change what is the service's rule (dialer.services.contact_edits);
this module reads the form, within each column's length, and renders.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from dialer.domain.numbers import display as display_number
from dialer.domain.vocabulary import PhoneType
from dialer.services.contact_edits import (
    MAX_NOTES,
    ContactEdit,
    ContactEditRejected,
    PhoneEdit,
    split_tags,
)
from dialer.store.models import Contact
from web.deps import deps_key, templates_key
from web.forms import Reader, parse_id, read_form
from web.security import not_found, require_user
from web.templating import render

routes = web.RouteTableDef()

# Column widths (dialer.store.models.Contact).
TEXT_FIELDS: dict[str, int] = {
    "first_name": 200,
    "last_name": 200,
    "email": 320,
    "language": 16,
    "address": 500,
    "area": 200,
    "timezone": 64,
    "dnc_reason": 500,
    "tags": 6000,
    "notes": MAX_NOTES,
    "new_number": 40,
}
CHECKS = ("wrong", "dnc", "remove")


def _phone_type(raw: str) -> PhoneType:
    return PhoneType(raw) if raw in PhoneType._value2member_map_ else PhoneType.OTHER


OPENED = "orig-"


def values_of(contact: Contact) -> dict[str, Any]:
    """The form's values for the record as stored (shown, and as opened)."""
    values = _stored(contact)
    values["opened"] = _stored(contact)
    return values


def _stored(contact: Contact) -> dict[str, Any]:
    return {
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "email": contact.email or "",
        "language": contact.language or "",
        "support_score": str(contact.support_score or ""),
        "tags": ", ".join(contact.tags or ()),
        "notes": contact.notes or "",
        "address": contact.address or "",
        "area": contact.area or "",
        "timezone": contact.timezone or "",
        "do_not_call": contact.do_not_call,
        "dnc_reason": contact.dnc_reason or "",
        "new_number": "",
        "new_number_type": PhoneType.MOBILE.value,
        "phones": {
            phone.id: {
                "type": phone.phone_type.value,
                "wrong": phone.wrong_number,
                "dnc": phone.do_not_call,
                "remove": False,
            }
            for phone in contact.phones
        },
    }


def _typed(form: MultiDictProxy[Any], phone_ids: list[int], prefix: str = "") -> dict[str, Any]:
    """The form's values as typed (or, with the prefix, as it was opened)."""

    def raw(name: str) -> str:
        value = form.get(prefix + name, "")
        return value if isinstance(value, str) else ""

    values: dict[str, Any] = {name: raw(name) for name in TEXT_FIELDS}
    values["support_score"] = raw("support_score")
    values["do_not_call"] = raw("do_not_call") == "1"
    values["new_number_type"] = _phone_type(raw("new_number_type")).value
    values["phones"] = {
        phone_id: {
            "type": _phone_type(raw(f"phone-{phone_id}-type")).value,
            **{check: raw(f"phone-{phone_id}-{check}") == "1" for check in CHECKS},
        }
        for phone_id in phone_ids
    }
    return values


def _values_of_form(
    form: MultiDictProxy[Any], phone_ids: list[int], contact: Contact, conflicts: frozenset[str]
) -> dict[str, Any]:
    """The form to show again beside its errors: what was typed, except that
    a field left as it was opened shows the record as it is now; the form is
    then as opened now for the fields in conflict (the person has seen their
    current value) and for those it shows anew, as opened before for the others."""
    typed, opened, stored = (
        _typed(form, phone_ids),
        _typed(form, phone_ids, OPENED),
        _stored(contact),
    )
    values: dict[str, Any] = {"new_number": typed["new_number"]}
    values["new_number_type"] = typed["new_number_type"]
    first: dict[str, Any] = {}
    for name in (*TEXT_FIELDS, "support_score", "do_not_call"):
        if name == "new_number":
            continue
        if typed[name] == opened[name]:
            values[name] = first[name] = stored[name]
        else:
            values[name] = typed[name]
            first[name] = stored[name] if name in conflicts else opened[name]
    values["phones"], first["phones"] = {}, {}
    for phone_id, now in stored["phones"].items():
        mine, was = typed["phones"].get(phone_id), opened["phones"].get(phone_id)
        if mine is None or was is None or mine == was:
            values["phones"][phone_id] = first["phones"][phone_id] = now
        else:
            values["phones"][phone_id] = mine
            first["phones"][phone_id] = now if f"phone-{phone_id}" in conflicts else was
    values["opened"] = first
    return values


def read_edit(reader: Reader, prefix: str = "") -> tuple[ContactEdit, list[int]]:
    """The edit the form asks for (with ``prefix``: the record as the form was
    opened), and the ids of the numbers it shows; problems are left in
    ``reader.errors``."""
    text = {
        name: reader.text(prefix + name, max_length=limit) for name, limit in TEXT_FIELDS.items()
    }
    score = reader.integer(prefix + "support_score", low=1, high=5)
    phone_ids = [
        phone_id
        for phone_id in (parse_id(value) for value in reader.form.getall("phone_id", []))
        if phone_id is not None
    ][:100]
    phones = tuple(
        PhoneEdit(
            phone_id=phone_id,
            phone_type=_phone_type(reader.raw(f"{prefix}phone-{phone_id}-type")),
            wrong_number=reader.flag(f"{prefix}phone-{phone_id}-wrong"),
            do_not_call=reader.flag(f"{prefix}phone-{phone_id}-dnc"),
            remove=reader.flag(f"{prefix}phone-{phone_id}-remove"),
        )
        for phone_id in phone_ids
    )
    edit = ContactEdit(
        first_name=text["first_name"],
        last_name=text["last_name"],
        email=text["email"] or None,
        language=text["language"].lower().replace("_", "-") or None,
        support_score=score,
        tags=split_tags(text["tags"]),
        notes=text["notes"],
        address=text["address"] or None,
        area=text["area"] or None,
        timezone=text["timezone"] or None,
        do_not_call=reader.flag(prefix + "do_not_call"),
        dnc_reason=text["dnc_reason"] or None,
        phones=phones,
        new_number=text["new_number"],
        new_number_type=_phone_type(reader.raw(prefix + "new_number_type")),
    )
    return edit, phone_ids


def _back(contact_id: int, campaign_id: int | None, suffix: str = "") -> str:
    campaign = f"&campaign={campaign_id}" if campaign_id is not None else ""
    return f"/contacts/{contact_id}?tab=details{campaign}{suffix}"


def _edit_page(
    request: web.Request,
    contact: Contact,
    *,
    values: dict[str, Any],
    errors: dict[str, str],
    campaign_id: int | None,
    conflicts: list[str] | None = None,
    status: int = 200,
) -> web.Response:
    return render(
        request,
        request.app[templates_key],
        "contact_edit.html",
        {
            "contact": contact,
            "edit_values": values,
            "edit_errors": errors,
            "edit_conflicts": conflicts or [],
            "phone_types": list(PhoneType),
            "display_number": display_number,
            "campaign_id": campaign_id,
            "back": _back(contact.id, campaign_id),
        },
        status=status,
    )


@routes.get("/contacts/{contact_id:\\d{1,9}}/edit")
async def contact_edit_page(request: web.Request) -> web.Response:
    user = require_user(request)
    contact = await request.app[deps_key].contacts.editable_contact(
        user, int(request.match_info["contact_id"])
    )
    if contact is None:
        raise not_found(request)
    return _edit_page(
        request,
        contact,
        values=values_of(contact),
        errors={},
        campaign_id=parse_id(request.query.get("campaign", "")),
    )


@routes.post("/contacts/{contact_id:\\d{1,9}}/edit")
async def contact_edit_save(request: web.Request) -> web.StreamResponse:
    user = require_user(request)
    contact_id = int(request.match_info["contact_id"])
    deps = request.app[deps_key]
    form = await read_form(request)
    reader = Reader(form)
    campaign_id = parse_id(reader.raw("campaign"))
    edit, phone_ids = read_edit(reader)
    # The values the form was opened with came from the record, not from
    # typing: what a separate reader finds wrong in them is nobody's to fix.
    opened, _shown_ids = read_edit(Reader(form), OPENED)
    conflicts: frozenset[str] = frozenset()
    try:
        # What the reader refused goes along, so that every error shows at once.
        changes = await deps.contacts.edit_contact(
            user,
            contact_id,
            edit,
            region=deps.default_region,
            policy=deps.service.policy,
            opened=opened,
            known_errors=reader.errors,
        )
    except ContactEditRejected as rejected:
        errors, conflicts = rejected.errors, rejected.conflicts
    else:
        if changes is None:
            raise not_found(request)
        raise web.HTTPSeeOther(_back(contact_id, campaign_id, "&saved=1"))
    contact = await deps.contacts.editable_contact(user, contact_id)
    if contact is None:
        raise not_found(request)
    return _edit_page(
        request,
        contact,
        values=_values_of_form(form, phone_ids, contact, conflicts),
        errors=errors,
        campaign_id=campaign_id,
        conflicts=[errors[key] for key in sorted(conflicts) if key in errors],
        status=409 if conflicts else 422,
    )
