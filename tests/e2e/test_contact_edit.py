"""The editable contact record (issue 17): the Details tab's form, its field
errors, the team walls, duplicate numbers, the do-not-call rules, and one
audit entry per save with each field's old and new value.

The world: Ada is on Montreal's campaign (alice, bob, olivia); Alan on
Quebec's (carol, oscar); adam administers both.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import unescape
from html.parser import HTMLParser
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from dialer.domain.vocabulary import PhoneType
from dialer.store.models import AuditEntry, Contact, ContactPhone
from tests.e2e.conftest import Browser, ClientFactory
from tests.e2e.webworld import CONTACTS, WebWorld


async def _contact(world: WebWorld, key: str) -> Contact:
    async with world.sessions() as session:
        found = await session.get(
            Contact, world.contacts[key], options=[selectinload(Contact.phones)]
        )
    assert found is not None
    return found


async def _edits(world: WebWorld, key: str) -> list[AuditEntry]:
    return await _audit(world, key, "contact.edit")


async def _audit(world: WebWorld, key: str, action: str) -> list[AuditEntry]:
    async with world.sessions() as session:
        return list(
            await session.scalars(
                select(AuditEntry)
                .where(
                    AuditEntry.action == action,
                    AuditEntry.entity_id == str(world.contacts[key]),
                )
                .order_by(AuditEntry.id)
            )
        )


def _form_of(contact: Contact, **changes: Any) -> list[tuple[str, str]]:
    """The form as the Details tab fills it for ``contact``, with ``changes``
    (opened on the record as it is: its ``orig-`` fields are ``contact``'s)."""
    values = _fields_of(contact)
    opened = [(f"orig-{key}", value) for key, value in values.items()]
    values.update(changes)
    fields = [(key, str(value)) for key, value in values.items() if value is not None]
    fields += [(key, str(value)) for key, value in opened if value is not None]
    fields += [("phone_id", str(phone.id)) for phone in contact.phones]
    return fields


def _fields_of(contact: Contact) -> dict[str, Any]:
    values: dict[str, Any] = {
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "email": contact.email or "",
        "language": contact.language or "",
        "support_score": str(contact.support_score or ""),
        "tags": ", ".join(contact.tags),
        "notes": contact.notes,
        "address": contact.address or "",
        "area": contact.area or "",
        "timezone": contact.timezone or "",
        "dnc_reason": contact.dnc_reason or "",
        "new_number": "",
        "new_number_type": "mobile",
    }
    if contact.do_not_call:
        values["do_not_call"] = "1"
    for phone in contact.phones:
        values[f"phone-{phone.id}-type"] = phone.phone_type.value
        if phone.wrong_number:
            values[f"phone-{phone.id}-wrong"] = "1"
        if phone.do_not_call:
            values[f"phone-{phone.id}-dnc"] = "1"
    return values


async def _save(
    browser: Browser, world: WebWorld, key: str, **changes: Any
) -> tuple[int, str, str]:
    """Post the form; (status, Location, page text unescaped)."""
    contact = await _contact(world, key)
    response = await browser.form(f"/contacts/{contact.id}/edit", _form_of(contact, **changes))
    async with response:
        return (
            response.status,
            response.headers.get("Location", ""),
            unescape(await response.text()),
        )


async def test_a_volunteer_edits_every_field_and_one_audit_entry_says_old_and_new(
    client: ClientFactory, world: WebWorld
) -> None:
    alice = await client("alice")
    ada = await _contact(world, "ada")
    phone = ada.phones[0]
    _, html = await alice.page(f"/contacts/{ada.id}?tab=details")
    assert 'id="contact-edit-form"' in html and f'action="/contacts/{ada.id}/edit"' in html

    status, location, _ = await _save(
        alice,
        world,
        "ada",
        first_name="Augusta Ada",
        last_name="King",
        email="ada@example.org",
        language="FR",
        support_score="2",
        tags="voter, donor, voter",
        notes="Prefers evenings.",
        address="12 rue Analytique",
        area="Plateau",
        timezone="America/Toronto",
        **{f"phone-{phone.id}-type": "landline"},
        new_number="514 555 0121",
        new_number_type="work",
    )
    assert status == 303 and location == f"/contacts/{ada.id}?tab=details&saved=1"
    ada = await _contact(world, "ada")
    assert (ada.first_name, ada.last_name, ada.email) == ("Augusta Ada", "King", "ada@example.org")
    assert (ada.language, ada.support_score, ada.tags) == ("fr", 2, ["voter", "donor"])
    assert (ada.notes, ada.address, ada.area) == (
        "Prefers evenings.",
        "12 rue Analytique",
        "Plateau",
    )
    assert ada.timezone == "America/Toronto"
    numbers = {p.e164: p.phone_type for p in ada.phones}
    assert numbers == {CONTACTS["ada"][2]: PhoneType.LANDLINE, "+15145550121": PhoneType.WORK}

    [entry] = await _edits(world, "ada")
    assert entry.actor_id == world.users["alice"]
    changes = entry.changes
    assert changes["first_name"] == {"old": "Ada", "new": "Augusta Ada"}
    assert changes["email"] == {"old": None, "new": "ada@example.org"}
    assert changes["language"] == {"old": "en", "new": "fr"}
    assert changes["support_score"] == {"old": 4, "new": 2}
    assert changes["tags"] == {"old": ["voter"], "new": ["voter", "donor"]}
    assert changes["timezone"]["new"] == "America/Toronto"
    assert changes[f"phone:{CONTACTS['ada'][2]}"]["old"]["type"] == "other"
    assert changes[f"phone:{CONTACTS['ada'][2]}"]["new"]["type"] == "landline"
    assert changes["phone:+15145550121"] == {
        "old": None,
        "new": {"type": "work", "wrong_number": False, "do_not_call": False},
    }
    assert "do_not_call" not in changes and "notes" in changes

    _, html = await alice.page(f"/contacts/{ada.id}?tab=details&saved=1")
    assert "The record was saved." in html and "12 rue Analytique" in html

    # Saving again unchanged writes nothing and audits nothing.
    status, _, _ = await _save(alice, world, "ada")
    assert status == 303
    assert len(await _edits(world, "ada")) == 1

    # A wrong number is marked, then deleted.
    added = next(p for p in ada.phones if p.e164 == "+15145550121")
    status, _, _ = await _save(alice, world, "ada", **{f"phone-{added.id}-wrong": "1"})
    assert status == 303
    assert next(p for p in (await _contact(world, "ada")).phones if p.id == added.id).wrong_number
    status, _, _ = await _save(alice, world, "ada", **{f"phone-{added.id}-remove": "1"})
    assert status == 303
    assert [p.e164 for p in (await _contact(world, "ada")).phones] == [CONTACTS["ada"][2]]
    last = (await _edits(world, "ada"))[-1]
    assert last.changes["phone:+15145550121"]["new"] is None


async def test_invalid_values_are_refused_beside_their_fields_in_both_languages(
    client: ClientFactory, world: WebWorld
) -> None:
    alice = await client("alice")
    before = await _contact(world, "ada")
    status, _, html = await _save(
        alice,
        world,
        "ada",
        first_name="Changed",
        email="not-an-email",
        language="english please",
        timezone="Mars/Olympus",
        support_score="9",
        new_number="514-555-CALL",
    )
    assert status == 422
    assert "Nothing was saved" in html
    assert "This is not a valid email address." in html
    assert "Use a language code such as fr or en." in html
    assert "Use a time zone name such as America/Toronto" in html
    assert "Enter a number from 1 to 5." in html
    # The typed values come back for correcting.
    assert 'value="not-an-email"' in html and 'value="Changed"' in html

    status, _, html = await _save(alice, world, "ada", new_number="+1 900 555 0100")
    assert status == 422 and "The dialing policy does not allow calls to this number." in html
    status, _, html = await _save(alice, world, "ada", new_number="+44 20 7946 0958")
    assert status == 422 and "The dialing policy does not allow calls to this number." in html
    status, _, html = await _save(alice, world, "ada", new_number="514 555")
    assert status == 422 and "This is not a valid phone number" in html

    bob = await client("bob", language="fr")  # bob reads French
    status, _, html = await _save(bob, world, "ada", email="nope", new_number="514-555-CALL")
    assert status == 422
    assert "Ce n'est pas une adresse courriel valide." in html
    assert "Ce n'est pas un numéro de téléphone valide" in html
    assert "Rien n'a été enregistré" in html

    after = await _contact(world, "ada")
    assert (after.first_name, after.email, len(after.phones)) == (
        before.first_name,
        before.email,
        1,
    )
    assert await _edits(world, "ada") == []


async def test_a_number_on_another_contact_is_refused_without_saying_whose(
    client: ClientFactory, world: WebWorld
) -> None:
    alice = await client("alice")
    # Marie is Montreal's too; Alan is Quebec's, out of Alice's sight.
    for other in ("marie", "alan"):
        number = CONTACTS[other][2]
        status, _, html = await _save(alice, world, "ada", new_number=number)
        assert status == 422
        assert "This number is already on another contact's record." in html
        first, last = CONTACTS[other][0], CONTACTS[other][1]
        assert first not in html and last not in html
    status, _, html = await _save(alice, world, "ada", new_number=CONTACTS["ada"][2])
    assert status == 422 and "This contact already has this number." in html
    assert len((await _contact(world, "ada")).phones) == 1


async def test_only_people_who_see_the_contact_edit_it(
    client: ClientFactory, world: WebWorld
) -> None:
    for username in ("carol", "oscar"):
        other_team = await client(username)
        status, _ = await other_team.page(f"/contacts/{world.contacts['ada']}/edit")
        assert status == 404
        status, _, _ = await _save(other_team, world, "ada", first_name="Hacked")
        assert status == 404
    assert (await _contact(world, "ada")).first_name == "Ada"
    anonymous = await client()
    status, location, _ = await _save(anonymous, world, "ada", first_name="Hacked")
    assert status == 303 and location.startswith("/login")
    # The organizer of the team and an administrator may.
    for username, name in (("olivia", "Ada O"), ("adam", "Ada A")):
        status, _, _ = await _save(await client(username), world, "ada", first_name=name)
        assert status == 303
    assert (await _contact(world, "ada")).first_name == "Ada A"
    # Without the CSRF token, nothing.
    alice = await client("alice")
    ada = await _contact(world, "ada")
    response = await alice.form(f"/contacts/{ada.id}/edit", _form_of(ada), token=False)
    response.release()
    assert response.status == 403


async def test_volunteers_put_on_do_not_call_and_only_staff_take_off(
    client: ClientFactory, world: WebWorld
) -> None:
    alice = await client("alice")
    ada = await _contact(world, "ada")
    phone = ada.phones[0]
    status, _, _ = await _save(
        alice, world, "ada", do_not_call="1", dnc_reason="Asked on the phone"
    )
    assert status == 303
    ada = await _contact(world, "ada")
    assert ada.do_not_call and ada.dnc_reason == "Asked on the phone" and ada.dnc_at is not None
    [entry] = await _edits(world, "ada")
    assert entry.changes["do_not_call"] == {"old": False, "new": True}
    assert entry.changes["dnc_reason"] == {"old": None, "new": "Asked on the phone"}

    # The form shows it locked to a volunteer; a forged form cannot lift it.
    _, html = await alice.page(f"/contacts/{ada.id}?tab=details")
    assert 'name="do_not_call" value="1">' in html  # the hidden input keeping it
    status, _, html = await _save(alice, world, "ada", do_not_call=None)
    assert status == 422
    assert "Only an organizer can take a contact off the do-not-call list." in html
    assert (await _contact(world, "ada")).do_not_call

    # Per number: a volunteer marks it, cannot unmark or delete it.
    status, _, _ = await _save(alice, world, "ada", **{f"phone-{phone.id}-dnc": "1"})
    assert status == 303
    status, _, html = await _save(alice, world, "ada", **{f"phone-{phone.id}-dnc": None})
    assert status == 422 and "Only an organizer can take a number off" in html
    status, _, html = await _save(alice, world, "ada", **{f"phone-{phone.id}-remove": "1"})
    assert status == 422 and "Only an organizer can delete a number" in html
    bob = await client("bob", language="fr")
    status, _, html = await _save(bob, world, "ada", do_not_call=None)
    assert status == 422
    assert "Seul un organisateur peut retirer un contact de la liste" in html

    # The team's organizer lifts it, as the do-not-call list's page does: the
    # contact and each of its numbers, under the list's own audit action.
    olivia = await client("olivia")
    edits_before = len(await _edits(world, "ada"))
    status, _, _ = await _save(olivia, world, "ada", do_not_call=None)
    assert status == 303
    ada = await _contact(world, "ada")
    assert not ada.do_not_call and ada.dnc_at is None and ada.dnc_reason is None
    assert not ada.phones[0].do_not_call  # left ticked in the form, lifted with the contact
    [lifted] = await _audit(world, "ada", "dnc.remove")
    assert lifted.actor_id == world.users["olivia"]
    assert len(await _edits(world, "ada")) == edits_before  # no contact.edit of its own


class _FormFields(HTMLParser):
    """The fields the edit form would post as the page shows it (its hidden
    ``orig-`` fields included), as a browser would submit it untouched."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self._inside = False
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and a.get("id") == "contact-edit-form":
            self._inside = True
        if not self._inside or "disabled" in a:
            return
        name = a.get("name") or ""
        if tag == "input" and name and name not in ("csrf_token", "phone_id"):
            if a.get("type") != "checkbox" or "checked" in a:
                self.fields[name] = a.get("value") or ""
        elif tag == "select":
            self._select = name
        elif (
            tag == "option"
            and self._select
            and ("selected" in a or self._select not in self.fields)
        ):
            self.fields[self._select] = a.get("value") or ""
        elif tag == "textarea":
            self._textarea = name
            self.fields[name] = ""

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.fields[self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def _rendered(html: str) -> dict[str, str]:
    parser = _FormFields()
    parser.feed(html)
    assert "orig-first_name" in parser.fields, "the form carries the record as opened"
    return parser.fields


async def _open(browser: Browser, world: WebWorld, key: str) -> dict[str, str]:
    status, html = await browser.page(f"/contacts/{world.contacts[key]}/edit")
    assert status == 200
    return _rendered(html)


async def _submit(
    browser: Browser, world: WebWorld, key: str, fields: dict[str, str], **changes: str | None
) -> tuple[int, str]:
    """Post a form as opened earlier, with ``changes``; (status, page unescaped)."""
    posted = {**fields, **changes}
    data = [(name, value) for name, value in posted.items() if value is not None]
    ids = {name.split("-")[2] for name in fields if name.startswith("orig-phone-")}
    data += [("phone_id", phone_id) for phone_id in sorted(ids)]
    response = await browser.form(f"/contacts/{world.contacts[key]}/edit", data)
    async with response:
        return response.status, unescape(await response.text())


async def test_a_save_writes_only_what_the_form_changed_and_keeps_the_rest(
    client: ClientFactory, world: WebWorld
) -> None:
    """An outcome's email and score, an import's address and number, a
    colleague's mark on a number: all arrive after Alice opened the form,
    and her name change leaves them as they are."""
    alice = await client("alice")
    form = await _open(alice, world, "ada")
    async with world.sessions.begin() as session:
        ada = await session.get(
            Contact, world.contacts["ada"], options=[selectinload(Contact.phones)]
        )
        assert ada is not None
        ada.email, ada.support_score, ada.address = "ada@outcome.org", 1, "1 Import Road"
        ada.phones[0].wrong_number = True
        ada.phones.append(ContactPhone(e164="+15145550122"))
    status, _ = await _submit(alice, world, "ada", form, first_name="Augusta")
    assert status == 303
    ada = await _contact(world, "ada")
    assert ada.first_name == "Augusta"
    assert (ada.email, ada.support_score, ada.address) == ("ada@outcome.org", 1, "1 Import Road")
    assert sorted(p.e164 for p in ada.phones) == sorted([CONTACTS["ada"][2], "+15145550122"])
    assert next(p for p in ada.phones if p.e164 == CONTACTS["ada"][2]).wrong_number
    [entry] = await _edits(world, "ada")
    assert entry.changes == {"first_name": {"old": "Ada", "new": "Augusta"}}


async def test_a_field_changed_on_both_sides_is_refused_with_its_current_value(
    client: ClientFactory, world: WebWorld
) -> None:
    alice = await client("alice")
    bob = await client("bob", language="fr")
    form = await _open(alice, world, "ada")
    form_fr = await _open(bob, world, "ada")
    async with world.sessions.begin() as session:
        ada = await session.get(Contact, world.contacts["ada"])
        assert ada is not None
        ada.email = "ada@outcome.org"
    status, html = await _submit(
        alice, world, "ada", form, first_name="Augusta", email="ada@mine.org"
    )
    assert status == 409
    assert "Someone else changed this record since you opened the form" in html
    assert "Email was changed by someone else since you opened this form" in html
    assert "it is now: ada@outcome.org" in html
    status, html = await _submit(bob, world, "ada", form_fr, email="ada@bob.org")
    assert status == 409
    assert "Le champ « Courriel » a été modifié par quelqu'un d'autre" in html
    assert "il vaut maintenant : ada@outcome.org" in html
    ada = await _contact(world, "ada")
    assert (ada.first_name, ada.email) == ("Ada", "ada@outcome.org")
    assert await _edits(world, "ada") == []

    # The refusal's form has seen the current value: saving it again writes hers.
    status, html = await _submit(alice, world, "ada", await _form_from_refusal(alice, world, form))
    assert status == 303, html
    ada = await _contact(world, "ada")
    assert (ada.first_name, ada.email) == ("Augusta", "ada@mine.org")


async def _form_from_refusal(
    browser: Browser, world: WebWorld, form: dict[str, str]
) -> dict[str, str]:
    status, html = await _submit(
        browser, world, "ada", form, first_name="Augusta", email="ada@mine.org"
    )
    assert status == 409
    shown = _rendered(html)
    assert shown["email"] == "ada@mine.org" and shown["orig-email"] == "ada@outcome.org"
    return shown


async def test_a_number_changed_or_deleted_since_the_form_opened_is_refused(
    client: ClientFactory, world: WebWorld
) -> None:
    olivia = await client("olivia")
    form = await _open(olivia, world, "ada")
    phone_id = next(name.split("-")[2] for name in form if name.startswith("orig-phone-"))
    async with world.sessions.begin() as session:
        phone = await session.get(ContactPhone, int(phone_id))
        assert phone is not None
        phone.phone_type = PhoneType.WORK
    status, html = await _submit(
        olivia, world, "ada", form, first_name="Augusta", **{f"phone-{phone_id}-type": "landline"}
    )
    assert status == 409
    assert "The number +1 514" in html and "it is now: Work" in html
    assert (await _contact(world, "ada")).first_name == "Ada"
    async with world.sessions.begin() as session:
        phone = await session.get(ContactPhone, int(phone_id))
        assert phone is not None
        await session.delete(phone)
    status, html = await _submit(olivia, world, "ada", form, **{f"phone-{phone_id}-wrong": "1"})
    assert status == 409 and "A number you changed was deleted by someone else" in html
    # Untouched, a number deleted meanwhile is no obstacle.
    status, _ = await _submit(olivia, world, "ada", form, first_name="Augusta")
    assert status == 303
    assert (await _contact(world, "ada")).first_name == "Augusta"


async def test_lifting_do_not_call_from_the_form_is_the_lists_own_lifting(
    client: ClientFactory, world: WebWorld
) -> None:
    """Same effect and same audit action as /ops/dnc/<id>/remove: the contact
    and every number off the list, one dnc.remove entry; never by a volunteer."""
    async with world.sessions.begin() as session:
        ada = await session.get(
            Contact, world.contacts["ada"], options=[selectinload(Contact.phones)]
        )
        assert ada is not None
        ada.do_not_call, ada.dnc_reason, ada.dnc_at = True, "Asked twice", datetime.now(UTC)
        for phone in ada.phones:
            phone.do_not_call = True
    olivia = await client("olivia")
    form = await _open(olivia, world, "ada")
    status, _ = await _submit(
        olivia, world, "ada", form, do_not_call=None, notes="Changed her mind."
    )
    assert status == 303
    ada = await _contact(world, "ada")
    assert not ada.do_not_call and ada.dnc_reason is None and ada.dnc_at is None
    assert not any(phone.do_not_call for phone in ada.phones)
    [lifted] = await _audit(world, "ada", "dnc.remove")
    assert lifted.actor_id == world.users["olivia"]
    [entry] = await _edits(world, "ada")
    assert set(entry.changes) == {"notes"}
