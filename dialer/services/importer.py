"""CSV contact import: map headers by name, normalise numbers, merge duplicates.

One bad row never aborts the file: it is reported with its line number and
the reason, and every other row goes in.  Rows are written in batches, one
transaction per batch, so a 100,000-row file takes seconds and a failure
half-way loses only the batch in progress (re-importing is idempotent).

Reasons, file errors and the summary go through gettext (:mod:`dialer.domain.i18n`):
they come out in the language of the context that runs the import, the
viewer's on the web and the environment's on the command line.
"""

from __future__ import annotations

import asyncio
import csv
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain.i18n import _, ngettext, pgettext
from dialer.domain.numbers import InvalidPhoneNumber, to_e164
from dialer.domain.vocabulary import PhoneType
from dialer.store import audit, contacts, lists
from dialer.store.models import CallingListEntry, Campaign, Contact, ContactPhone, User

BATCH_SIZE = 2000
MAX_FIELD_LENGTHS = {
    "first_name": 200,
    "last_name": 200,
    "email": 320,
    "address": 500,
    "area": 200,
    "dnc_reason": 500,
    "notes": 10_000,
}

# Accepted headers, compared after lower-casing, removing accents and
# turning spaces and dashes into underscores.  French names are accepted
# because many of the organisations using this work in French.
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "first_name": ("first_name", "firstname", "first", "given_name", "prenom"),
    "last_name": (
        "last_name",
        "lastname",
        "last",
        "surname",
        "family_name",
        "nom",
        "nom_de_famille",
    ),
    "full_name": ("name", "full_name", "nom_complet"),
    "email": ("email", "e_mail", "mail", "courriel"),
    "language": ("language", "lang", "langue"),
    "address": ("address", "adresse", "street", "rue"),
    "area": (
        "area",
        "city",
        "ville",
        "district",
        "riding",
        "circonscription",
        "quartier",
        "secteur",
        "region",
    ),
    "tags": ("tags", "tag", "labels", "etiquettes"),
    "support_score": ("support_score", "support", "score", "pointage"),
    "do_not_call": ("do_not_call", "dnc", "ne_pas_appeler"),
    "dnc_reason": ("dnc_reason", "do_not_call_reason"),
    "notes": ("notes", "note", "comments", "commentaires"),
    "timezone": ("timezone", "time_zone", "tz", "fuseau_horaire"),
}
PHONE_ALIASES: dict[PhoneType, tuple[str, ...]] = {
    PhoneType.OTHER: (
        "phone",
        "phone_number",
        "telephone",
        "tel",
        "number",
        "numero",
        "phone2",
        "phone_2",
        "other_phone",
        "autre_telephone",
    ),
    PhoneType.MOBILE: (
        "mobile",
        "mobile_phone",
        "cell",
        "cellphone",
        "cell_phone",
        "portable",
        "cellulaire",
    ),
    PhoneType.LANDLINE: ("landline", "home_phone", "home", "fixe", "domicile", "telephone_fixe"),
    PhoneType.WORK: ("work_phone", "work", "office", "bureau", "travail"),
}
_HEADER_TO_FIELD = {alias: name for name, aliases in FIELD_ALIASES.items() for alias in aliases}
_HEADER_TO_PHONE = {alias: kind for kind, aliases in PHONE_ALIASES.items() for alias in aliases}
_TRUE = {"1", "yes", "y", "true", "x", "oui", "o", "vrai"}
_FALSE = {"", "0", "no", "n", "false", "non", "faux"}
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})?\Z")
_SPLIT_LIST = re.compile(r"[;|,]")
_SPLIT_PHONES = re.compile(r"[;|/]")


class ImportFileError(Exception):
    """The file as a whole cannot be imported (nothing was written)."""


def phone_reason(reason: str) -> str:
    """:class:`~dialer.domain.numbers.InvalidPhoneNumber`'s reason in the current language."""
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
    }
    return reasons.get(reason, reason)


def csv_problem(error: csv.Error) -> str:
    """The csv module's complaint in the current language (the ones a person can cause)."""
    text = str(error)
    if text == "unexpected end of data":
        return pgettext("csv", "unexpected end of data")
    if text == "line contains NUL":
        return pgettext("csv", "line contains NUL")
    return text


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    reason: str

    def __str__(self) -> str:
        return _("line %(line)s: %(reason)s", line=self.line, reason=self.reason)


@dataclass(slots=True)
class ImportReport:
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    added_to_list: int = 0
    errors: list[RowError] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.imported + self.updated + self.unchanged + self.rejected

    def summary(self) -> str:
        text = _(
            "%(imported)s, %(updated)s, %(unchanged)s, %(rejected)s",
            imported=ngettext("%(num)s imported", "%(num)s imported", self.imported),
            updated=ngettext("%(num)s updated", "%(num)s updated", self.updated),
            unchanged=ngettext("%(num)s unchanged", "%(num)s unchanged", self.unchanged),
            rejected=ngettext("%(num)s rejected", "%(num)s rejected", self.rejected),
        )
        if self.added_to_list:
            text = _(
                "%(counts)s; %(added)s",
                counts=text,
                added=ngettext(
                    "%(num)s added to the calling list",
                    "%(num)s added to the calling list",
                    self.added_to_list,
                ),
            )
        return text


@dataclass(slots=True)
class ParsedRow:
    line: int
    values: dict[str, Any]
    phones: list[tuple[str, PhoneType]]


def normalise_header(header: str) -> str:
    stripped = unicodedata.normalize("NFKD", header.strip().lstrip("\ufeff"))
    ascii_only = "".join(char for char in stripped if not unicodedata.combining(char))
    return re.sub(r"[\s\-.]+", "_", ascii_only.lower()).strip("_")


@dataclass(frozen=True, slots=True)
class ColumnMap:
    fields: dict[int, str]
    phones: dict[int, PhoneType]
    ignored: list[str]
    width: int

    @classmethod
    def from_header(cls, header: Sequence[str]) -> ColumnMap:
        fields: dict[int, str] = {}
        phones: dict[int, PhoneType] = {}
        ignored: list[str] = []
        seen: set[str] = set()
        for index, raw in enumerate(header):
            name = normalise_header(raw)
            if name in _HEADER_TO_PHONE:
                phones[index] = _HEADER_TO_PHONE[name]
            elif name in _HEADER_TO_FIELD:
                target = _HEADER_TO_FIELD[name]
                if target in seen:
                    raise ImportFileError(
                        _(
                            "columns %(column)s and another both map to %(field)s; "
                            "keep one of them",
                            column=repr(raw),
                            field=target,
                        )
                    )
                seen.add(target)
                fields[index] = target
            elif raw.strip():
                ignored.append(raw.strip())
        if not phones:
            accepted = ", ".join(sorted(_HEADER_TO_PHONE))
            raise ImportFileError(
                _("no phone column in the header; accepted names: %(names)s", names=accepted)
            )
        return cls(fields, phones, ignored, len(header))


class _Lines:
    """Decodes the file line by line, remembering which lines were not text."""

    def __init__(self, data: bytes, encoding: str) -> None:
        self._data = data
        self._encoding = encoding
        self.undecodable: dict[int, str] = {}

    def __iter__(self) -> Iterator[str]:
        for number, raw in enumerate(self._data.splitlines(keepends=True), start=1):
            try:
                yield raw.decode(self._encoding)
            except UnicodeDecodeError as error:
                bad = raw[error.start : error.start + 1].hex()
                self.undecodable[number] = _(
                    "not valid %(encoding)s text (byte 0x%(byte)s at column %(column)s); "
                    "save the file as UTF-8 or pass --encoding (e.g. latin-1)",
                    encoding=self._encoding,
                    byte=bad,
                    column=error.start + 1,
                )
                yield raw.decode(self._encoding, errors="replace")


def parse_rows(
    data: bytes, *, region: str, encoding: str = "utf-8"
) -> tuple[ColumnMap, Iterator[ParsedRow | RowError]]:
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"  # Excel writes a byte-order mark
    if not data.strip():
        raise ImportFileError(_("the file is empty"))
    lines = _Lines(data, encoding)
    reader = csv.reader(iter(lines), strict=True)
    try:
        header = next(reader)
    except csv.Error as error:
        raise ImportFileError(
            _("cannot read the header line: %(error)s", error=csv_problem(error))
        ) from None
    if 1 in lines.undecodable:
        raise ImportFileError(_("header line: %(reason)s", reason=lines.undecodable[1]))
    columns = ColumnMap.from_header(header)

    def rows() -> Iterator[ParsedRow | RowError]:
        start = reader.line_num + 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                yield RowError(start, _("malformed CSV: %(error)s", error=csv_problem(error)))
                start = reader.line_num + 1
                continue
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            bad = next(
                (lines.undecodable[n] for n in range(line, start) if n in lines.undecodable), None
            )
            if bad is not None:
                yield RowError(line, bad)
                continue
            yield _parse_cells(line, cells, columns, region)

    return columns, rows()


def _parse_cells(
    line: int, cells: list[str], columns: ColumnMap, region: str
) -> ParsedRow | RowError:
    if len(cells) > columns.width:
        return RowError(
            line,
            _(
                "%(count)s fields but the header has %(width)s (an unquoted comma?)",
                count=len(cells),
                width=columns.width,
            ),
        )
    values: dict[str, Any] = {}
    for index, name in columns.fields.items():
        cell = cells[index].strip() if index < len(cells) else ""
        if "\x00" in cell:
            return RowError(line, _("%(field)s: contains a NUL character", field=name))
        if cell:
            values[name] = cell
    try:
        _validate(values)
    except ValueError as error:
        return RowError(line, str(error))
    phones: list[tuple[str, PhoneType]] = []
    for index, kind in columns.phones.items():
        cell = cells[index].strip() if index < len(cells) else ""
        for raw in filter(None, (part.strip() for part in _SPLIT_PHONES.split(cell))):
            try:
                e164 = to_e164(raw, region)
            except InvalidPhoneNumber as error:
                return RowError(
                    line,
                    _(
                        "%(reason)s: %(number)s",
                        reason=phone_reason(error.reason),
                        number=repr(raw),
                    ),
                )
            if all(e164 != known for known, _kind in phones):
                phones.append((e164, kind))
    if not phones:
        return RowError(line, _("no phone number"))
    return ParsedRow(line, values, phones)


def _validate(values: dict[str, Any]) -> None:
    full_name = values.pop("full_name", None)
    if full_name and "first_name" not in values and "last_name" not in values:
        first, _space, last = full_name.partition(" ")
        values["first_name"], values["last_name"] = first, last.strip()
    for name, limit in MAX_FIELD_LENGTHS.items():
        if len(values.get(name, "")) > limit:
            raise ValueError(
                _("%(field)s is longer than %(limit)s characters", field=name, limit=limit)
            )
    if "email" in values:
        values["email"] = values["email"].lower()
        if not _EMAIL.match(values["email"]):
            raise ValueError(_("invalid email address %(value)s", value=repr(values["email"])))
    if "language" in values:
        if not _LANGUAGE.match(values["language"]):
            raise ValueError(
                _(
                    "invalid language %(value)s (use a code like fr or en)",
                    value=repr(values["language"]),
                )
            )
        values["language"] = values["language"].lower().replace("_", "-")
    if "support_score" in values:
        raw = values["support_score"]
        if not raw.isdigit() or not 1 <= int(raw) <= 5:
            raise ValueError(
                _(
                    "support score must be a whole number from 1 to 5, not %(value)s",
                    value=repr(raw),
                )
            )
        values["support_score"] = int(raw)
    if "do_not_call" in values:
        flag = values["do_not_call"].lower()
        if flag not in _TRUE | _FALSE:
            raise ValueError(
                _("do_not_call must be yes or no, not %(value)s", value=repr(values["do_not_call"]))
            )
        values["do_not_call"] = flag in _TRUE
    if "tags" in values:
        tags = [tag.strip() for tag in _SPLIT_LIST.split(values["tags"])]
        values["tags"] = sorted({tag for tag in tags if tag})
    if "timezone" in values:
        try:
            ZoneInfo(values["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                _(
                    "unknown time zone %(value)s (use an IANA name like America/Toronto)",
                    value=repr(values["timezone"]),
                )
            ) from None


@dataclass(slots=True)
class _Target:
    """Options that apply to every row: where imported contacts go."""

    campaign_id: int | None
    volunteer_ids: list[int]
    next_volunteer: int = 0

    def pick_volunteer(self) -> int | None:
        if not self.volunteer_ids:
            return None
        chosen = self.volunteer_ids[self.next_volunteer % len(self.volunteer_ids)]
        self.next_volunteer += 1
        return chosen


async def _resolve_target(
    session: AsyncSession, campaign_id: int | None, assign_to: Sequence[str]
) -> _Target:
    if assign_to and campaign_id is None:
        raise ImportFileError(_("--assign-to needs --campaign: lists belong to a campaign"))
    if campaign_id is not None and await session.get(Campaign, campaign_id) is None:
        raise ImportFileError(_("no campaign with id %(id)s", id=campaign_id))
    volunteer_ids: list[int] = []
    if assign_to:
        rows = (
            await session.execute(
                select(User.username, User.id, User.role).where(User.username.in_(assign_to))
            )
        ).all()
        found = {row.username: row for row in rows}
        missing = [name for name in assign_to if name not in found]
        if missing:
            raise ImportFileError(
                ngettext(
                    "unknown user(s) for --assign-to: %(names)s",
                    "unknown user(s) for --assign-to: %(names)s",
                    len(missing),
                    names=", ".join(missing),
                )
            )
        volunteer_ids = [found[name].id for name in assign_to]
    return _Target(campaign_id, volunteer_ids)


async def import_contacts(
    sessions: async_sessionmaker[AsyncSession],
    path: Path,
    *,
    region: str,
    campaign_id: int | None = None,
    assign_to: Sequence[str] = (),
    encoding: str = "utf-8",
    actor_label: str = "cli",
    actor_id: int | None = None,
    progress: Callable[[int], None] | None = None,
    data: bytes | None = None,
) -> ImportReport:
    """Import ``path`` (or ``data`` when given, e.g. an upload named ``path``)."""
    content = await asyncio.to_thread(path.read_bytes) if data is None else data
    columns, rows = parse_rows(content, region=region, encoding=encoding)
    report = ImportReport(ignored_columns=list(columns.ignored))
    async with sessions() as session:
        target = await _resolve_target(session, campaign_id, assign_to)
    batch: list[ParsedRow] = []
    for item in rows:
        if isinstance(item, RowError):
            report.rejected += 1
            report.errors.append(item)
        else:
            batch.append(item)
        if len(batch) >= BATCH_SIZE:
            await _write_batch_with_retry(sessions, batch, target, report)
            if progress:
                progress(len(batch))
            batch = []
    if batch:
        await _write_batch_with_retry(sessions, batch, target, report)
        if progress:
            progress(len(batch))
    async with sessions.begin() as session:
        await audit.record(
            session,
            action="contacts.import",
            entity_type="import",
            entity_id=path.name,
            changes={
                "imported": report.imported,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "rejected": report.rejected,
                "campaign_id": campaign_id,
                "added_to_list": report.added_to_list,
            },
            actor_id=actor_id,
            actor_label=actor_label,
        )
    report.errors.sort(key=lambda error: error.line)
    return report


async def _write_batch_with_retry(
    sessions: async_sessionmaker[AsyncSession],
    batch: list[ParsedRow],
    target: _Target,
    report: ImportReport,
) -> None:
    # A concurrent import may insert the same number between our lookup and
    # our insert; the second attempt sees it and merges instead.
    for attempt in range(2):
        partial = ImportReport()
        try:
            async with sessions.begin() as session:
                await _write_batch(session, batch, target, partial)
        except IntegrityError:
            if attempt == 1:
                raise
            continue
        report.imported += partial.imported
        report.updated += partial.updated
        report.unchanged += partial.unchanged
        report.rejected += partial.rejected
        report.added_to_list += partial.added_to_list
        report.errors.extend(partial.errors)
        return


_MERGE_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "language",
    "address",
    "area",
    "support_score",
    "timezone",
    "dnc_reason",
)


async def _write_batch(
    session: AsyncSession, batch: list[ParsedRow], target: _Target, report: ImportReport
) -> None:
    numbers = {e164 for row in batch for e164, _kind in row.phones}
    found = await session.execute(
        select(ContactPhone.e164, ContactPhone.contact_id).where(ContactPhone.e164.in_(numbers))
    )
    owner: dict[str, int] = {e164: contact_id for e164, contact_id in found}
    existing: dict[int, Contact] = {}
    if owner:
        loaded = await session.scalars(select(Contact).where(Contact.id.in_(set(owner.values()))))
        existing = {contact.id: contact for contact in loaded}

    # Rows that are new people; several rows may share a number within the
    # batch, and then they are one person: merged into the first such row.
    new_people: list[ParsedRow] = []
    pending_owner: dict[str, ParsedRow] = {}
    new_phones: list[dict[str, Any]] = []
    # What the batch's rows change in each existing contact, written together.
    merges: dict[int, tuple[Contact, dict[str, Any]]] = {}
    contact_ids_in_batch: list[int] = []
    now = datetime.now(UTC)

    for row in batch:
        owners = {owner[e164] for e164, _kind in row.phones if e164 in owner}
        pending = {
            id(pending_owner[e164]): pending_owner[e164]
            for e164, _kind in row.phones
            if e164 in pending_owner
        }
        if len(owners) + len(pending) > 1:
            names = ", ".join(f"#{contact_id}" for contact_id in sorted(owners))
            report.rejected += 1
            report.errors.append(
                RowError(
                    row.line,
                    _(
                        "its numbers belong to different contacts (%(contacts)s); "
                        "fix the row or merge the contacts first",
                        contacts=names,
                    )
                    if names
                    else _(
                        "its numbers belong to different contacts; "
                        "fix the row or merge the contacts first"
                    ),
                )
            )
            continue
        if owners:
            contact = existing[owners.pop()]
            _contact, changes = merges.setdefault(contact.id, (contact, {}))
            changed = _merge_into_contact(contact, changes, row.values, now)
            for e164, kind in row.phones:
                if e164 not in owner:
                    new_phones.append({"contact_id": contact.id, "e164": e164, "phone_type": kind})
                    owner[e164] = contact.id
                    changed = True
            if changed:
                report.updated += 1
            else:
                report.unchanged += 1
            contact_ids_in_batch.append(contact.id)
        elif pending:
            first = next(iter(pending.values()))
            _merge_values(first.values, row.values)
            for e164, kind in row.phones:
                if e164 not in pending_owner:
                    first.phones.append((e164, kind))
                    pending_owner[e164] = first
            report.updated += 1
        else:
            new_people.append(row)
            for e164, _kind in row.phones:
                pending_owner[e164] = row

    changed_contacts = [(contact, changes) for contact, changes in merges.values() if changes]
    if changed_contacts:
        await contacts.update_contacts(session, changed_contacts)
    if new_people:
        ids = await contacts.insert_contacts(
            session, [_new_contact_values(row.values, now) for row in new_people]
        )
        for row, contact_id in zip(new_people, ids, strict=True):
            contact_ids_in_batch.append(contact_id)
            for e164, kind in row.phones:
                new_phones.append({"contact_id": contact_id, "e164": e164, "phone_type": kind})
        report.imported += len(new_people)
    if new_phones:
        for phone in new_phones:
            phone.setdefault("created_at", now)
            phone.setdefault("wrong_number", False)
            phone.setdefault("do_not_call", False)
        await contacts.insert_phones(session, new_phones)
    if target.campaign_id is not None and contact_ids_in_batch:
        report.added_to_list += await _add_to_list(session, target, contact_ids_in_batch, now)


def _merge_values(into: dict[str, Any], values: dict[str, Any]) -> None:
    for name, value in values.items():
        if name == "tags":
            into["tags"] = sorted(set(into.get("tags", [])) | set(value))
        elif name == "notes" and into.get("notes") and value not in into["notes"]:
            into["notes"] = f"{into['notes']}\n{value}"
        elif name == "do_not_call":
            into["do_not_call"] = into.get("do_not_call", False) or value
        else:
            into[name] = value


def _merge_into_contact(
    contact: Contact, changes: dict[str, Any], values: dict[str, Any], now: datetime
) -> bool:
    """Add a row to the ``changes`` of an existing contact; returns whether it changed anything.

    ``changes`` holds what earlier rows of the batch did to the contact, and
    the row applies on top of them.  Non-empty cells win; empty cells never
    erase.  Imports never clear a do-not-call flag and never drop notes a
    volunteer wrote.
    """

    def current(name: str) -> Any:
        return changes[name] if name in changes else getattr(contact, name)

    changed = False
    for name in _MERGE_FIELDS:
        if name in values and current(name) != values[name]:
            changes[name] = values[name]
            changed = True
    if "tags" in values:
        tags = current("tags") or []
        merged = sorted(set(tags) | set(values["tags"]))
        if merged != sorted(tags):
            changes["tags"] = merged
            changed = True
    notes = current("notes")
    if values.get("notes") and values["notes"] not in (notes or ""):
        changes["notes"] = f"{notes}\n{values['notes']}" if notes else values["notes"]
        changed = True
    if values.get("do_not_call") and not current("do_not_call"):
        changes["do_not_call"] = True
        changes["dnc_at"] = now
        changes["dnc_reason"] = values.get("dnc_reason") or "imported as do-not-call"
        changed = True
    return changed


def _new_contact_values(values: dict[str, Any], now: datetime) -> dict[str, Any]:
    do_not_call = bool(values.get("do_not_call", False))
    return {
        "first_name": values.get("first_name", ""),
        "last_name": values.get("last_name", ""),
        "email": values.get("email"),
        "language": values.get("language"),
        "address": values.get("address"),
        "area": values.get("area"),
        "timezone": values.get("timezone"),
        "tags": values.get("tags", []),
        "support_score": values.get("support_score"),
        "do_not_call": do_not_call,
        "dnc_reason": (values.get("dnc_reason") or "imported as do-not-call")
        if do_not_call
        else None,
        "dnc_at": now if do_not_call else None,
        "notes": values.get("notes", ""),
        "created_at": now,
        "updated_at": now,
    }


async def _add_to_list(
    session: AsyncSession, target: _Target, contact_ids: list[int], now: datetime
) -> int:
    assert target.campaign_id is not None
    unique_ids = list(dict.fromkeys(contact_ids))
    already = set(
        (
            await session.scalars(
                select(CallingListEntry.contact_id).where(
                    CallingListEntry.campaign_id == target.campaign_id,
                    CallingListEntry.contact_id.in_(unique_ids),
                )
            )
        ).all()
    )
    entries = [
        {
            "campaign_id": target.campaign_id,
            "contact_id": contact_id,
            "volunteer_id": target.pick_volunteer(),
            "attempts": 0,
            "done": False,
            "assigned_at": now,
        }
        for contact_id in unique_ids
        if contact_id not in already
    ]
    if entries:
        await lists.add_entries(session, entries)
    return len(entries)


class ImportService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def import_contacts(
        self,
        path: Path,
        *,
        region: str,
        campaign_id: int | None = None,
        assign_to: Sequence[str] = (),
        encoding: str = "utf-8",
        actor_label: str = "cli",
        actor_id: int | None = None,
        data: bytes | None = None,
    ) -> ImportReport:
        """See :func:`import_contacts`: one transaction per batch, raises ImportFileError."""
        return await import_contacts(
            self._sessions,
            path,
            region=region,
            campaign_id=campaign_id,
            assign_to=assign_to,
            encoding=encoding,
            actor_label=actor_label,
            actor_id=actor_id,
            data=data,
        )
