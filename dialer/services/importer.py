"""CSV contact import: map headers by name, normalise numbers, merge duplicates.

One bad row never aborts the file: it is reported with its line number and
the reason, and every other row goes in.  Rows are written in batches, one
transaction per batch, so a 100,000-row file takes seconds and a failure
half-way loses only the batch in progress (re-importing is idempotent).

The file is read a chunk at a time, and its rows are parsed in a thread one
batch ahead of the writes (:func:`import_stream`).  The web starts imports
in the background (:meth:`ImportService.start_import`): in a child process
on PostgreSQL, so that a million rows never hold up the event loop, with
their progress and report kept in ``import_jobs`` for the page to follow.

Reasons, file errors and the summary go through gettext (:mod:`dialer.domain.i18n`):
they come out in the language of the context that runs the import, the
importer's on the web and the environment's on the command line.  The
field-level changes are kept as data and worded when shown, in the
reader's language.

A row whose number is already on file merges into that contact by the rule
of :func:`dialer.domain.contact_merge.decide_merge`: empty fields are filled,
a different value on file is kept and reported as a conflict, unless the
import was asked to overwrite (then every replaced value is reported and
audited).  A number the dialing policy refuses (+1 900...) does not reject
its row: the contact is imported, so the file's data is kept, and the row
is flagged in the report; the calling list and the call service apply the
same policy, so the number is never dialed.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import itertools
import json
import logging
import os
import re
import sys
import tempfile
import time
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dialer.domain.compliance import DialingPolicy, PolicyRule, Refusal
from dialer.domain.contact_merge import (
    DEFAULT_DNC_REASON,
    ChangeKind,
    FieldChange,
    decide_merge,
)
from dialer.domain.dial_rules import NanpReason
from dialer.domain.i18n import _, ngettext, pgettext
from dialer.domain.i18n import current as current_locale
from dialer.domain.number_reasons import phone_reason
from dialer.domain.numbers import CheckedNumber, InvalidPhoneNumber, check_number
from dialer.domain.numbers import display as display_number
from dialer.domain.vocabulary import PhoneType
from dialer.services import notifications
from dialer.services.access import Scope, scope_of
from dialer.services.export import spreadsheet_safe
from dialer.store import audit, contacts, imports, lists
from dialer.store.models import (
    CallingListEntry,
    Campaign,
    Contact,
    ContactPhone,
    ImportJob,
    ImportJobRow,
    TeamMember,
    User,
)

BATCH_SIZE = 2000
# Files this large or larger take the bulk path on PostgreSQL unless told otherwise
# (import_stream's ``bulk``); the setting import_bulk_min_bytes passes its own.
BULK_MIN_BYTES = 1024 * 1024
MAX_FIELD_LENGTHS = {
    "first_name": 200,
    "last_name": 200,
    "email": 320,
    "address": 500,
    "area": 200,
    "dnc_reason": 500,
    "notes": 10_000,
}
_SHORTEST_LIMIT = min(MAX_FIELD_LENGTHS.values())

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
_BOOLEANS = _TRUE | _FALSE
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})?\Z")
_SPLIT_LIST = re.compile(r"[;|,]")
_SPLIT_PHONES = re.compile(r"[;|/]")


class ImportFileError(Exception):
    """The file as a whole cannot be imported (nothing was written)."""


_CSV_EXPECTED = re.compile(r"'(.)' expected after '(.)'\Z", re.DOTALL)
_CSV_FIELD_LIMIT = re.compile(r"field larger than field limit \((\d+)\)\Z")


def csv_problem(error: csv.Error) -> str:
    """The csv module's complaint in the current language; never its English text."""
    text = str(error)
    if text == "unexpected end of data":
        return pgettext("csv", "unexpected end of data")
    if text == "line contains NUL":
        return pgettext("csv", "line contains NUL")
    if _CSV_EXPECTED.match(text):
        # Strict mode: a quote closed in the middle of a field, as in "Ada "the" Lovelace".
        return pgettext(
            "csv",
            "a quoted field goes on after its closing quote; "
            "double the quotes inside a quoted field",
        )
    if match := _CSV_FIELD_LIMIT.match(text):
        return pgettext("csv", "a field is longer than %(limit)s characters", limit=match.group(1))
    if text.startswith("new-line character seen in unquoted field"):
        return pgettext("csv", "a line break inside a field that is not quoted")
    # Anything else the csv module may say is for programmers: say it plainly.
    return pgettext("csv", "this line is not valid CSV")


def field_label(name: str) -> str:
    """A contact field's name as people read it, in the current language."""
    labels = {
        "name": pgettext("contact field", "name"),
        "first_name": pgettext("contact field", "first name"),
        "last_name": pgettext("contact field", "last name"),
        "email": pgettext("contact field", "email"),
        "language": pgettext("contact field", "language"),
        "address": pgettext("contact field", "address"),
        "area": pgettext("contact field", "area"),
        "support_score": pgettext("contact field", "support score"),
        "timezone": pgettext("contact field", "time zone"),
        "dnc_reason": pgettext("contact field", "do-not-call reason"),
        "do_not_call": pgettext("contact field", "do-not-call"),
        "tags": pgettext("contact field", "tags"),
        "notes": pgettext("contact field", "notes"),
        "phone": pgettext("contact field", "phone number"),
    }
    return labels.get(name, name)


def policy_reason(refusal: Refusal) -> str:
    """Why the dialing policy refuses a number, in the current language."""
    if refusal.rule is PolicyRule.BLOCKED_PREFIX:
        return _(
            "the dialing policy refuses numbers starting with %(prefix)s", prefix=refusal.subject
        )
    if refusal.rule is PolicyRule.PREMIUM_TYPE:
        return _("premium-rate and shared-cost numbers are never dialed")
    if refusal.rule is PolicyRule.NANP:
        nanp = {
            NanpReason.PREMIUM_RATE: lambda: _("premium-rate numbers are never dialed"),
            NanpReason.DIRECTORY_ASSISTANCE: lambda: _("directory assistance is billed per call"),
            NanpReason.SERVICE_CODE: lambda: _("N11 service codes are not area codes"),
            NanpReason.NON_GEOGRAPHIC: lambda: _(
                "non-geographic numbers are billed at the carrier's discretion"
            ),
            NanpReason.INTERNATIONAL_RATE: lambda: _(
                "this +1 country is billed at international rates"
            ),
        }
        make = nanp.get(NanpReason(refusal.subject)) if refusal.subject in set(NanpReason) else None
        if make is not None:
            return make()
    if refusal.rule is PolicyRule.DESTINATION:
        return _(
            "the dialing policy does not allow calls to %(destination)s",
            destination=refusal.subject,
        )
    return _("the dialing policy does not allow calls to this number")


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    reason: str
    # The row's cells as read (none when the line was not even valid CSV),
    # for the rejected-rows download.
    cells: tuple[str, ...] = field(default=(), compare=False)

    def __str__(self) -> str:
        return _("line %(line)s: %(reason)s", line=self.line, reason=self.reason)


@dataclass(frozen=True, slots=True)
class RowChange:
    """A field-level decision an imported row made about a contact."""

    line: int
    # None for a person new in this file (several rows sharing a number).
    contact_id: int | None
    contact: str  # the contact's name, as it was before the row
    change: FieldChange

    def describe(self) -> str:
        """What happened, in the current language: "kept 'Ada Lovelace', the file says ..."."""
        old, new = self.change.old, self.change.new
        if self.change.field == "phone":
            new = _shown_number(new)
        kind = self.change.kind
        if kind is ChangeKind.KEPT:
            return _("kept '%(old)s', the file says '%(new)s'", old=old, new=new)
        if kind is ChangeKind.REPLACED or (kind is ChangeKind.FILLED and old):
            return _("changed '%(old)s' to '%(new)s'", old=old, new=new)
        if kind is ChangeKind.FILLED:
            return _("filled in '%(new)s'", new=new)
        return _("added '%(new)s'", new=new)

    def kind_label(self) -> str:
        labels = {
            ChangeKind.KEPT: pgettext("import change", "conflict, kept"),
            ChangeKind.REPLACED: pgettext("import change", "overwritten"),
            ChangeKind.FILLED: pgettext("import change", "filled in"),
            ChangeKind.ADDED: pgettext("import change", "added"),
        }
        return labels[self.change.kind]

    def __str__(self) -> str:
        who = self.contact or (f"#{self.contact_id}" if self.contact_id else "")
        return _(
            "line %(line)s: %(contact)s, %(field)s: %(what)s",
            line=self.line,
            contact=who,
            field=field_label(self.change.field),
            what=self.describe(),
        )

    def to_json(self) -> list[Any]:
        change = self.change
        return [
            self.line,
            self.contact_id,
            self.contact,
            change.field,
            change.kind.value,
            change.old,
            change.new,
        ]

    @classmethod
    def from_json(cls, data: Sequence[Any]) -> RowChange:
        line, contact_id, contact, name, kind, old, new = data
        return cls(
            int(line),
            None if contact_id is None else int(contact_id),
            str(contact),
            FieldChange(str(name), ChangeKind(kind), str(old), str(new)),
        )


@dataclass(frozen=True, slots=True)
class RowFlag:
    """An imported row with a number the dialing policy refuses: kept, never dialed."""

    line: int
    number: str  # E.164
    reason: str  # in the language the import ran in

    @property
    def shown_number(self) -> str:
        return _shown_number(self.number)

    def __str__(self) -> str:
        return _(
            "line %(line)s: %(number)s will not be dialed: %(reason)s",
            line=self.line,
            number=self.shown_number,
            reason=self.reason,
        )


def _shown_number(e164: str) -> str:
    try:
        return display_number(e164)
    except Exception:  # phonenumbers refuses it: show it as stored
        return e164


@dataclass(slots=True)
class ImportReport:
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    added_to_list: int = 0
    # Rows that differed from a contact on file where the contact's value was kept.
    conflicts: int = 0
    # Rows imported with a number the dialing policy refuses.
    flagged: int = 0
    errors: list[RowError] = field(default_factory=list)
    changes: list[RowChange] = field(default_factory=list)
    flags: list[RowFlag] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    # The file's header line, for the rejected rows' download.
    header: list[str] = field(default_factory=list)
    overwrite: bool = False

    @property
    def rows(self) -> int:
        return self.imported + self.updated + self.unchanged + self.rejected

    def absorb(self, other: ImportReport) -> None:
        """Add another (a batch's) counts and lines to this report."""
        self.imported += other.imported
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rejected += other.rejected
        self.added_to_list += other.added_to_list
        self.conflicts += other.conflicts
        self.flagged += other.flagged
        self.errors.extend(other.errors)
        self.changes.extend(other.changes)
        self.flags.extend(other.flags)

    def keep_first_errors(self, limit: int) -> None:
        """Keep only the ``limit`` rejected rows, changes and flags of lowest line
        numbers; the counts stay exact."""
        # Trimmed only once twice the limit is reached, so sorting stays cheap.
        for lines in (self.errors, self.changes, self.flags):
            if len(lines) > 2 * limit:
                lines.sort(key=lambda item: item.line)
                del lines[limit:]

    def sort(self) -> None:
        self.errors.sort(key=lambda error: error.line)
        self.changes.sort(key=lambda change: change.line)
        self.flags.sort(key=lambda flag: flag.line)

    def trim(self, limit: int) -> None:
        self.sort()
        del self.errors[limit:]
        del self.changes[limit:]
        del self.flags[limit:]

    def to_json(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "added_to_list": self.added_to_list,
            "conflicts": self.conflicts,
            "flagged": self.flagged,
            "overwrite": self.overwrite,
            "ignored_columns": list(self.ignored_columns),
            "header": list(self.header),
            "errors": [[error.line, error.reason] for error in self.errors],
            "changes": [change.to_json() for change in self.changes],
            "flags": [[flag.line, flag.number, flag.reason] for flag in self.flags],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImportReport:
        return cls(
            imported=int(data.get("imported", 0)),
            updated=int(data.get("updated", 0)),
            unchanged=int(data.get("unchanged", 0)),
            rejected=int(data.get("rejected", 0)),
            added_to_list=int(data.get("added_to_list", 0)),
            conflicts=int(data.get("conflicts", 0)),
            flagged=int(data.get("flagged", 0)),
            overwrite=bool(data.get("overwrite", False)),
            errors=[RowError(int(line), str(reason)) for line, reason in data.get("errors", [])],
            changes=[RowChange.from_json(item) for item in data.get("changes", [])],
            flags=[
                RowFlag(int(line), str(number), str(reason))
                for line, number, reason in data.get("flags", [])
            ],
            ignored_columns=[str(name) for name in data.get("ignored_columns", [])],
            header=[str(name) for name in data.get("header", [])],
        )

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
        if self.conflicts:
            text = _(
                "%(counts)s; %(conflicts)s",
                counts=text,
                conflicts=ngettext(
                    "%(num)s row differed from the contact on file, which was kept",
                    "%(num)s rows differed from the contacts on file, which were kept",
                    self.conflicts,
                ),
            )
        if self.flagged:
            text = _(
                "%(counts)s; %(flagged)s",
                counts=text,
                flagged=ngettext(
                    "%(num)s row has a number that will not be dialed",
                    "%(num)s rows have a number that will not be dialed",
                    self.flagged,
                ),
            )
        return text


@dataclass(slots=True)
class ParsedRow:
    line: int
    values: dict[str, Any]
    phones: list[tuple[str, PhoneType]]
    cells: tuple[str, ...] = ()
    # The numbers the dialing policy refuses, with the reason.
    flags: list[tuple[str, str]] = field(default_factory=list)


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
    header: tuple[str, ...] = ()

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
                            field=field_label(target),
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
        return cls(fields, phones, ignored, len(header), tuple(header))


_READ_CHUNK = 1 << 20


class _Lines:
    """Decodes the file line by line, remembering which lines were not text.

    The file is read a chunk at a time, never whole: an upload of many
    megabytes costs one chunk of memory.  Lines end where ``bytes.splitlines``
    ends them (LF, CRLF or a lone CR), so the line numbers in the report are
    those a spreadsheet shows.
    """

    def __init__(self, stream: BinaryIO, encoding: str, *, web: bool = False) -> None:
        self._stream = stream
        self._encoding = encoding
        # On the web the fix is the form's encoding menu, not a command-line option.
        self._web = web
        self.undecodable: dict[int, str] = {}
        # How far into the file the lines handed out so far reach.
        self.bytes_read = 0

    def _raw_lines(self) -> Iterator[bytes]:
        pending = b""
        while chunk := self._stream.read(_READ_CHUNK):
            pieces = (pending + chunk).splitlines(keepends=True)
            # The chunk may cut the last line, even between its CR and LF.
            pending = pieces.pop()
            yield from pieces
        if pending:
            yield pending

    def __iter__(self) -> Iterator[str]:
        for number, raw in enumerate(self._raw_lines(), start=1):
            self.bytes_read += len(raw)
            try:
                yield raw.decode(self._encoding)
            except UnicodeDecodeError as error:
                bad = raw[error.start : error.start + 1].hex()
                if self._web:
                    self.undecodable[number] = _(
                        "this line is not %(encoding)s text (column %(column)s); save the "
                        "file as UTF-8, or choose its encoding (such as Latin-1) when you "
                        "import it",
                        encoding=_encoding_name(self._encoding),
                        column=error.start + 1,
                    )
                else:
                    self.undecodable[number] = _(
                        "not valid %(encoding)s text (byte 0x%(byte)s at column %(column)s); "
                        "save the file as UTF-8 or pass --encoding (e.g. latin-1)",
                        encoding=self._encoding,
                        byte=bad,
                        column=error.start + 1,
                    )
                yield raw.decode(self._encoding, errors="replace")


def _encoding_name(encoding: str) -> str:
    names = {"utf-8-sig": "UTF-8", "latin-1": "Latin-1", "cp1252": "Windows-1252"}
    return names.get(encoding, encoding)


def _is_blank(stream: BinaryIO) -> bool:
    """Whether the file holds only white space; rewinds it to its start."""
    try:
        while chunk := stream.read(_READ_CHUNK):
            if chunk.strip():
                return False
        return True
    finally:
        stream.seek(0)


# A row as the CSV reader gives it: its line and its cells, not yet checked.
RawRow = tuple[int, list[str]]


@dataclass(slots=True)
class ParsedFile:
    """A file whose header was read: its columns, and its rows, parsed as they are taken.

    ``raw`` is the same rows before :func:`parse_row` (the bulk path parses
    them in worker processes); take from ``rows`` or from ``raw``, not both.
    """

    columns: ColumnMap
    rows: Iterator[ParsedRow | RowError]
    lines: _Lines
    raw: Iterator[RawRow | RowError]

    def take(self, count: int) -> tuple[list[ParsedRow | RowError], int]:
        """Parse up to ``count`` more rows, and say how far into the file they reach (bytes).

        CPU-bound (the CSV reader, phone number parsing): run it off the event loop.
        """
        taken = list(itertools.islice(self.rows, count))
        return taken, self.lines.bytes_read


def parse_stream(
    stream: BinaryIO,
    *,
    region: str,
    encoding: str = "utf-8",
    policy: DialingPolicy | None = None,
    web: bool = False,
) -> ParsedFile:
    """Read the header of a seekable binary file; nothing else is read yet.

    With a ``policy``, each row's numbers it refuses are flagged (the rows
    are parsed in a thread: the check costs no event-loop time).
    """
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"  # Excel writes a byte-order mark
    if _is_blank(stream):
        raise ImportFileError(_("the file is empty"))
    lines = _Lines(stream, encoding, web=web)
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

    def raw() -> Iterator[RawRow | RowError]:
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
                yield RowError(line, bad, tuple(cells))
                continue
            yield line, cells

    raw_rows = raw()
    rows = (
        item if isinstance(item, RowError) else parse_row(*item, columns, region, policy)
        for item in raw_rows
    )
    return ParsedFile(columns, rows, lines, raw_rows)


def parse_row(
    line: int, cells: list[str], columns: ColumnMap, region: str, policy: DialingPolicy | None
) -> ParsedRow | RowError:
    """Check and normalise one row the CSV reader gave; the one row rule of every path.

    With a ``policy``, the numbers it refuses are flagged on the row.
    """
    parsed = _parse_cells(line, cells, columns, region, policy)
    if isinstance(parsed, RowError):
        return RowError(parsed.line, parsed.reason, tuple(cells))
    parsed.cells = tuple(cells)
    return parsed


def parse_rows(
    data: bytes, *, region: str, encoding: str = "utf-8"
) -> tuple[ColumnMap, Iterator[ParsedRow | RowError]]:
    """:func:`parse_stream` over bytes already in memory."""
    parsed = parse_stream(io.BytesIO(data), region=region, encoding=encoding)
    return parsed.columns, parsed.rows


def _parse_cells(
    line: int, cells: list[str], columns: ColumnMap, region: str, policy: DialingPolicy | None
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
    width = len(cells)
    values: dict[str, Any] = {}
    for index, name in columns.fields.items():
        cell = cells[index].strip() if index < width else ""
        if "\x00" in cell:
            return RowError(line, _("%(field)s: contains a NUL character", field=field_label(name)))
        if cell:
            values[name] = cell
    try:
        _validate(values)
    except ValueError as error:
        return RowError(line, str(error))
    phones: list[tuple[str, PhoneType]] = []
    # The numbers of ``phones``, as checked: the policy takes them without parsing them again.
    checked: list[CheckedNumber] = []
    for index, kind in columns.phones.items():
        cell = cells[index].strip() if index < width else ""
        for raw in filter(None, map(str.strip, _SPLIT_PHONES.split(cell))):
            try:
                number = check_number(raw, region)
            except InvalidPhoneNumber as error:
                return RowError(
                    line,
                    _(
                        "%(reason)s: %(number)s",
                        reason=phone_reason(error.reason),
                        number=repr(raw),
                    ),
                )
            e164 = number.e164
            if not checked or all(e164 != known.e164 for known in checked):
                phones.append((e164, kind))
                checked.append(number)
    if not phones:
        return RowError(line, _("no phone number"))
    flags: list[tuple[str, str]] = []
    if policy is not None:
        for number in checked:
            refusal = policy.check_number(number)
            if refusal is not None:
                flags.append((number.e164, policy_reason(refusal)))
    return ParsedRow(line, values, phones, flags=flags)


def _validate(values: dict[str, Any]) -> None:
    full_name = values.pop("full_name", None)
    if full_name and "first_name" not in values and "last_name" not in values:
        first, _space, last = full_name.partition(" ")
        values["first_name"], values["last_name"] = first, last.strip()
    # Each limit in turn only when a value is longer than the shortest of them.
    if values and max(map(len, values.values())) > _SHORTEST_LIMIT:
        _check_lengths(values)
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
        score = int(raw) if raw.isdecimal() else 0
        if not 1 <= score <= 5:
            raise ValueError(
                _(
                    "support score must be a whole number from 1 to 5, not %(value)s",
                    value=repr(raw),
                )
            )
        values["support_score"] = score
    if "do_not_call" in values:
        flag = values["do_not_call"].lower()
        if flag not in _BOOLEANS:
            raise ValueError(
                _("do_not_call must be yes or no, not %(value)s", value=repr(values["do_not_call"]))
            )
        values["do_not_call"] = flag in _TRUE
    if "tags" in values:
        tags = set(map(str.strip, _SPLIT_LIST.split(values["tags"])))
        tags.discard("")
        values["tags"] = sorted(tags)
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


def _check_lengths(values: dict[str, Any]) -> None:
    for name, limit in MAX_FIELD_LENGTHS.items():
        if len(values.get(name, "")) > limit:
            raise ValueError(
                _(
                    "%(field)s is longer than %(limit)s characters",
                    field=field_label(name),
                    limit=limit,
                )
            )


@dataclass(slots=True)
class _Target:
    """Options that apply to every row: where imported contacts go, and who imports them."""

    campaign_id: int | None
    volunteer_ids: list[int]
    # The contacts the importing user may see; None when they see everything
    # (an administrator, or an operator on the command line).
    scope: Scope | None = None
    next_volunteer: int = 0
    # The file wins over the contacts on file (each replaced value is audited).
    overwrite: bool = False
    file_name: str = ""
    actor_id: int | None = None
    actor_label: str = ""
    # Contacts handed to each volunteer by this import: each gets one notification.
    assigned: dict[int | None, int] = field(default_factory=dict)

    def pick_volunteer(self) -> int | None:
        if not self.volunteer_ids:
            return None
        chosen = self.volunteer_ids[self.next_volunteer % len(self.volunteer_ids)]
        self.next_volunteer += 1
        return chosen


async def _actor_scope(session: AsyncSession, actor_id: int | None) -> Scope | None:
    """What the importing user may see; None for everything.

    No actor is the command line, run by whoever holds the database's keys.
    An actor who no longer exists sees nothing, so every number already on
    file is refused rather than merged.
    """
    if actor_id is None:
        return None
    actor = await session.get(User, actor_id)
    if actor is None:
        return Scope(actor_id, frozenset())
    scope = await scope_of(session, actor)
    return None if scope.everything else scope


async def _resolve_target(
    session: AsyncSession,
    campaign_id: int | None,
    assign_to: Sequence[str],
    actor_id: int | None = None,
    *,
    web: bool = False,
) -> _Target:
    if assign_to and campaign_id is None:
        raise ImportFileError(_("--assign-to needs --campaign: lists belong to a campaign"))
    campaign = None if campaign_id is None else await session.get(Campaign, campaign_id)
    if campaign_id is not None and campaign is None:
        raise ImportFileError(_("no campaign with id %(id)s", id=campaign_id))
    volunteer_ids: list[int] = []
    if assign_to:
        assert campaign is not None
        # Only the campaign's own active team members may be handed its
        # contacts.  Anyone else is reported exactly as an unknown name, so
        # the form cannot be used to learn which usernames exist elsewhere.
        rows = (
            await session.execute(
                select(User.username, User.id)
                .join(TeamMember, TeamMember.user_id == User.id)
                .where(
                    TeamMember.team_id == campaign.team_id,
                    User.is_active.is_(True),
                    User.username.in_(assign_to),
                )
            )
        ).all()
        found = {row.username: row for row in rows}
        missing = [name for name in assign_to if name not in found]
        if missing and web:
            raise ImportFileError(
                ngettext(
                    "unknown user to share the contacts among: %(names)s",
                    "unknown users to share the contacts among: %(names)s",
                    len(missing),
                    names=", ".join(missing),
                )
            )
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
    return _Target(campaign_id, volunteer_ids, await _actor_scope(session, actor_id))


@dataclass(frozen=True, slots=True)
class ImportProgress:
    """How far an import has gone: rows handled, and bytes of the file read for them."""

    rows_done: int
    bytes_done: int


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
    overwrite: bool = False,
    policy: DialingPolicy | None = None,
    bulk: bool | None = None,
    bulk_min_bytes: int = BULK_MIN_BYTES,
) -> ImportReport:
    """Import ``path``; ``progress`` is called with the number of rows handled
    since its last call.  See :func:`import_stream` for the rest."""
    stream: BinaryIO = await asyncio.to_thread(_open, path)
    try:
        return await import_stream(
            sessions,
            stream,
            name=path.name,
            region=region,
            campaign_id=campaign_id,
            assign_to=assign_to,
            encoding=encoding,
            actor_label=actor_label,
            actor_id=actor_id,
            progress=progress,
            overwrite=overwrite,
            policy=policy,
            bulk=bulk,
            bulk_min_bytes=bulk_min_bytes,
        )
    finally:
        stream.close()


def _open(path: Path) -> BinaryIO:
    return path.open("rb")


async def check_file(
    sessions: async_sessionmaker[AsyncSession],
    stream: BinaryIO,
    *,
    region: str,
    campaign_id: int | None = None,
    assign_to: Sequence[str] = (),
    encoding: str = "utf-8",
    actor_id: int | None = None,
    web: bool = False,
) -> None:
    """Raise :class:`ImportFileError` if the file as a whole would be refused; writes nothing.

    Reads only the header, then rewinds the file.
    """
    try:
        await asyncio.to_thread(parse_stream, stream, region=region, encoding=encoding, web=web)
    finally:
        stream.seek(0)
    async with sessions() as session:
        await _resolve_target(session, campaign_id, assign_to, actor_id, web=web)


async def import_stream(
    sessions: async_sessionmaker[AsyncSession],
    stream: BinaryIO,
    *,
    name: str,
    region: str,
    campaign_id: int | None = None,
    assign_to: Sequence[str] = (),
    encoding: str = "utf-8",
    actor_label: str = "cli",
    actor_id: int | None = None,
    progress: Callable[[int], None] | None = None,
    on_batch: Callable[[ImportProgress], Awaitable[None]] | None = None,
    errors_kept: int | None = None,
    overwrite: bool = False,
    policy: DialingPolicy | None = None,
    web: bool = False,
    on_lines: Callable[[ImportReport], Awaitable[None]] | None = None,
    bulk: bool | None = None,
    bulk_min_bytes: int = BULK_MIN_BYTES,
) -> ImportReport:
    """Import a seekable binary file, a batch at a time, without holding up the event loop.

    The CSV reader and the phone number parsing run in a worker thread, one
    batch ahead of the database writes, so the loop (the web pages, and the
    AMI worker in ``dialer serve``) only ever waits for one batch's SQL to be
    built.  ``on_batch`` is awaited after each batch; ``errors_kept`` keeps
    only the first rejected rows (by line) of a big file in memory, while the
    counts stay exact.

    ``actor_id`` is the user importing (None: an operator on the command
    line).  Unless an administrator, they merge rows only into the contacts
    they may see; a number already on file for a contact out of their view
    rejects its row, and the contact is left as it was.

    ``overwrite`` lets the file's values replace different ones on file (see
    :mod:`dialer.domain.contact_merge`); ``policy`` flags the rows whose
    numbers it refuses; ``web`` words the reasons for the web page (no
    command-line options in them).  ``on_lines`` is awaited after each
    batch with that batch's report: its rejected rows, changes and flags,
    all of them, whatever ``errors_kept`` keeps in the returned report.

    ``bulk`` picks the path on PostgreSQL: True the bulk path
    (:mod:`dialer.services.bulk_import`: worker processes, ``COPY``,
    set-based inserts), False the batches described above, None the bulk
    path for files of ``bulk_min_bytes`` or more.  Both give the same
    contacts and the same report.  SQLite (the demo) always takes the batches.
    """
    use_bulk = await _bulk_chosen(sessions, stream, bulk, bulk_min_bytes)
    parsed = await asyncio.to_thread(
        parse_stream, stream, region=region, encoding=encoding, policy=policy, web=web
    )
    report = ImportReport(
        ignored_columns=list(parsed.columns.ignored),
        header=list(parsed.columns.header),
        overwrite=overwrite,
    )
    async with sessions() as session:
        target = await _resolve_target(session, campaign_id, assign_to, actor_id, web=web)
    target.overwrite = overwrite
    target.file_name = name
    target.actor_id = actor_id
    target.actor_label = actor_label
    started_at = datetime.now(UTC)
    callbacks = ImportCallbacks(progress, on_batch, on_lines, errors_kept)
    if use_bulk:
        # Imported here: the bulk path builds on this module's rows and batches.
        from dialer.services import bulk_import

        await bulk_import.import_rows(
            sessions, parsed, target, report, callbacks, region=region, policy=policy
        )
    else:
        await _import_batches(sessions, parsed, target, report, callbacks)
    async with sessions.begin() as session:
        await audit.record(
            session,
            action="contacts.import",
            entity_type="import",
            entity_id=name,
            changes={
                "imported": report.imported,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "rejected": report.rejected,
                "campaign_id": campaign_id,
                "added_to_list": report.added_to_list,
                "conflicts": report.conflicts,
                "flagged": report.flagged,
                "overwrite": overwrite,
            },
            actor_id=actor_id,
            actor_label=actor_label,
        )
        if campaign_id is not None and target.assigned:
            # Told once the whole file is in, not per batch: one notification
            # per volunteer for the import, which a retried import does not repeat
            # (it finds the contacts on the list already).
            await notifications.contacts_assigned(
                session, campaign_id, target.assigned, at=started_at
            )
    report.sort()
    return report


# A contact a batch puts on the campaign's list: (0 for a contact on file, 1 for a
# person new in the file; the line of its row; the contact's id).  Sorted, a
# batch's candidates are in the order it hands them to the volunteers.
ListCandidate = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class ImportCallbacks:
    """What :func:`import_stream` tells its caller as it goes (see there)."""

    progress: Callable[[int], None] | None = None
    on_batch: Callable[[ImportProgress], Awaitable[None]] | None = None
    on_lines: Callable[[ImportReport], Awaitable[None]] | None = None
    errors_kept: int | None = None

    async def done(self, report: ImportReport, lines: ImportReport, rows: int, at: int) -> None:
        """``lines`` (the rows just handled, ``rows`` of them, ``at`` bytes into the
        file) are in: tell the caller, and add them to ``report``."""
        if self.on_lines:
            await self.on_lines(lines)
        report.absorb(lines)
        if self.errors_kept is not None:
            report.keep_first_errors(self.errors_kept)
        if self.progress:
            self.progress(rows)
        if self.on_batch:
            await self.on_batch(ImportProgress(report.rows, at))


async def _bulk_chosen(
    sessions: async_sessionmaker[AsyncSession], stream: BinaryIO, bulk: bool | None, min_bytes: int
) -> bool:
    if postgresql_engine(sessions) is None:
        if bulk:
            log.info("the bulk import needs PostgreSQL: importing in batches")
        return False
    if bulk is not None:
        return bulk
    return await asyncio.to_thread(_size, stream) >= min_bytes


def _size(stream: BinaryIO) -> int:
    """The file's size; leaves it at its start."""
    size = stream.seek(0, os.SEEK_END)
    stream.seek(0)
    return size


async def _import_batches(
    sessions: async_sessionmaker[AsyncSession],
    parsed: ParsedFile,
    target: _Target,
    report: ImportReport,
    callbacks: ImportCallbacks,
) -> None:
    """The batch path: parse a batch ahead in a thread, write each batch in its transaction."""
    ahead = asyncio.ensure_future(asyncio.to_thread(parsed.take, BATCH_SIZE))
    try:
        while True:
            items, bytes_done = await ahead
            if not items:
                break
            ahead = asyncio.ensure_future(asyncio.to_thread(parsed.take, BATCH_SIZE))
            batch: list[ParsedRow] = []
            lines = ImportReport()
            for item in items:
                if isinstance(item, RowError):
                    lines.rejected += 1
                    lines.errors.append(item)
                else:
                    batch.append(item)
            if batch:
                await write_batch(sessions, batch, target, lines)
            await callbacks.done(report, lines, len(items), bytes_done)
    finally:
        # The thread parsing ahead must be done with the file before anyone closes it.
        if not ahead.done():
            await asyncio.wait([ahead])
        if not ahead.cancelled():
            # Retrieved so that it is not logged as lost: when it failed, the
            # loop above raised it already, or a failure of its own is raised.
            ahead.exception()


async def write_batch(
    sessions: async_sessionmaker[AsyncSession],
    batch: list[ParsedRow],
    target: _Target,
    report: ImportReport,
    *,
    listed: list[ListCandidate] | None = None,
) -> None:
    """Write one batch of parsed rows in its own transaction, adding to ``report``.

    Every row that merges (into a contact on file, or with another row of
    the batch) goes through here, on both paths; the bulk path
    (:mod:`dialer.services.bulk_import`) inserts only the rows that are new
    people on their own.  With ``listed``, the batch's contacts are not put
    on the campaign's list but collected there, for the bulk path to add a
    window of batches at once in the same order.
    """
    # A concurrent import may insert the same number between our lookup and
    # our insert; the next attempt sees it and merges instead.  Several
    # imports at once (two bulk imports and this one) can each commit a
    # clashing number in turn, so one retry is not always enough.
    for attempt in range(_CONFLICT_ATTEMPTS):
        partial = ImportReport()
        # A rolled-back attempt must not count its assignments, nor move the
        # round-robin on: the retry hands out the same contacts again.
        assigned, next_volunteer = dict(target.assigned), target.next_volunteer
        candidates: list[ListCandidate] | None = None if listed is None else []
        try:
            async with sessions.begin() as session:
                await _write_batch(session, batch, target, partial, candidates)
        except IntegrityError:
            target.assigned, target.next_volunteer = assigned, next_volunteer
            if attempt == _CONFLICT_ATTEMPTS - 1:
                raise
            continue
        report.absorb(partial)
        if listed is not None and candidates:
            listed.extend(candidates)
        return


# How many times a batch is written before a clash with another import's
# numbers is an error (each attempt sees what the others committed).
_CONFLICT_ATTEMPTS = 5

# The contact's columns an imported row may change (see decide_merge).
_CONTACT_COLUMNS = (
    "first_name",
    "last_name",
    "email",
    "language",
    "address",
    "area",
    "support_score",
    "timezone",
    "tags",
    "notes",
    "do_not_call",
    "dnc_reason",
)


def _name_of(values: Mapping[str, Any]) -> str:
    return " ".join(part for part in (values.get("first_name"), values.get("last_name")) if part)


async def _write_batch(
    session: AsyncSession,
    batch: list[ParsedRow],
    target: _Target,
    report: ImportReport,
    listed: list[ListCandidate] | None = None,
) -> None:
    numbers = {e164 for row in batch for e164, _kind in row.phones}
    found = await session.execute(
        select(ContactPhone.e164, ContactPhone.contact_id).where(ContactPhone.e164.in_(numbers))
    )
    owner: dict[str, int] = {e164: contact_id for e164, contact_id in found}
    # Teams are walls: a contact the importer may not see is neither merged
    # into nor added to the campaign, and its row says nothing about it.
    outside: set[int] = set()
    if owner and target.scope is not None:
        owner_ids = set(owner.values())
        visible = await session.scalars(
            select(Contact.id).where(Contact.id.in_(owner_ids), target.scope.contact_filter())
        )
        outside = owner_ids - set(visible)
    existing: dict[int, Contact] = {}
    if mergeable := set(owner.values()) - outside:
        loaded = await session.scalars(select(Contact).where(Contact.id.in_(mergeable)))
        existing = {contact.id: contact for contact in loaded}

    # Rows that are new people; several rows may share a number within the
    # batch, and then they are one person: merged into the first such row,
    # by the same rule as into a contact on file.  Their values are copied,
    # so that a retried batch starts from the rows as parsed.
    new_people: list[tuple[ParsedRow, dict[str, Any], list[tuple[str, PhoneType]]]] = []
    pending_owner: dict[str, int] = {}  # number -> index in new_people
    new_phones: list[dict[str, Any]] = []
    # What the batch's rows change in each existing contact, written together.
    merges: dict[int, tuple[Contact, dict[str, Any]]] = {}
    # With overwrite: each contact's changes, for the audit log.
    audited: dict[int, list[RowChange]] = {}
    candidates: list[ListCandidate] = []
    now = datetime.now(UTC)

    def reject(row: ParsedRow, reason: str) -> None:
        report.rejected += 1
        report.errors.append(RowError(row.line, reason, row.cells))

    for row in batch:
        owners = {owner[e164] for e164, _kind in row.phones if e164 in owner}
        pending = {pending_owner[e164] for e164, _kind in row.phones if e164 in pending_owner}
        if owners & outside:
            reject(
                row,
                _(
                    "this number is already on file for another team; "
                    "an administrator can add it to this campaign"
                ),
            )
            continue
        if len(owners) + len(pending) > 1:
            names = ", ".join(f"#{contact_id}" for contact_id in sorted(owners))
            reject(
                row,
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
            continue
        if row.flags:
            report.flagged += 1
            report.flags.extend(RowFlag(row.line, e164, why) for e164, why in row.flags)
        if owners:
            contact = existing[owners.pop()]
            _contact, updates = merges.setdefault(contact.id, (contact, {}))
            current = {
                name: updates[name] if name in updates else getattr(contact, name)
                for name in _CONTACT_COLUMNS
            }
            decision = decide_merge(current, row.values, overwrite=target.overwrite, now=now)
            updates.update(decision.updates)
            changes = list(decision.changes)
            for e164, kind in row.phones:
                if e164 not in owner:
                    new_phones.append({"contact_id": contact.id, "e164": e164, "phone_type": kind})
                    owner[e164] = contact.id
                    changes.append(FieldChange("phone", ChangeKind.ADDED, "", e164))
            lines = [RowChange(row.line, contact.id, _name_of(current), c) for c in changes]
            report.changes.extend(lines)
            if target.overwrite and decision.updates:
                audited.setdefault(contact.id, []).extend(lines)
            candidates.append((0, row.line, contact.id))
        elif pending:
            index = pending.pop()
            _first, values, phones = new_people[index]
            decision = decide_merge(values, row.values, overwrite=target.overwrite, now=now)
            values.update(decision.updates)
            changes = list(decision.changes)
            for e164, kind in row.phones:
                if e164 not in pending_owner:
                    phones.append((e164, kind))
                    pending_owner[e164] = index
                    changes.append(FieldChange("phone", ChangeKind.ADDED, "", e164))
            report.changes.extend(RowChange(row.line, None, _name_of(values), c) for c in changes)
        else:
            for e164, _kind in row.phones:
                pending_owner[e164] = len(new_people)
            new_people.append((row, dict(row.values), list(row.phones)))
            continue
        # A row merged into a contact (on file or earlier in the file).
        if decision.conflict:
            report.conflicts += 1
        if changes and any(change.kind is not ChangeKind.KEPT for change in changes):
            report.updated += 1
        else:
            report.unchanged += 1

    changed_contacts = [(contact, updates) for contact, updates in merges.values() if updates]
    if changed_contacts:
        await contacts.update_contacts(session, changed_contacts)
    for contact_id, lines in audited.items():
        await audit.record(
            session,
            action="contact.import_overwrite",
            entity_type="contact",
            entity_id=contact_id,
            changes={
                "file": target.file_name,
                "fields": [
                    {
                        "line": line.line,
                        "field": line.change.field,
                        "kind": line.change.kind.value,
                        "old": line.change.old,
                        "new": line.change.new,
                    }
                    for line in lines
                ],
            },
            actor_id=target.actor_id,
            actor_label=target.actor_label,
        )
    if new_people:
        ids = await contacts.insert_contacts(
            session, [_new_contact_values(values, now) for _row, values, _phones in new_people]
        )
        for (first_row, _values, phones), contact_id in zip(new_people, ids, strict=True):
            candidates.append((1, first_row.line, contact_id))
            for e164, kind in phones:
                new_phones.append({"contact_id": contact_id, "e164": e164, "phone_type": kind})
        report.imported += len(new_people)
    if new_phones:
        for phone in new_phones:
            phone.setdefault("created_at", now)
            phone.setdefault("wrong_number", False)
            phone.setdefault("do_not_call", False)
        await contacts.insert_phones(session, new_phones)
    if target.campaign_id is not None and candidates:
        if listed is not None:
            listed.extend(candidates)
        else:
            contact_ids = [contact_id for _new, _line, contact_id in candidates]
            report.added_to_list += await _add_to_list(session, target, contact_ids, now)


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
        "dnc_reason": (values.get("dnc_reason") or DEFAULT_DNC_REASON) if do_not_call else None,
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
    picked = [
        (contact_id, target.pick_volunteer())
        for contact_id in unique_ids
        if contact_id not in already
    ]
    entries = [
        {
            "campaign_id": target.campaign_id,
            "contact_id": contact_id,
            "volunteer_id": volunteer_id,
            "attempts": 0,
            "done": False,
            "assigned_at": now,
        }
        for contact_id, volunteer_id in picked
    ]
    if entries:
        await lists.add_entries(session, entries)
        for _contact_id, volunteer_id in picked:
            if volunteer_id is not None:
                target.assigned[volunteer_id] = target.assigned.get(volunteer_id, 0) + 1
    return len(entries)


log = logging.getLogger(__name__)

# The downloads read a job's report lines this many at a time.
_DOWNLOAD_PAGE = 5000

# The import page shows at most this many rejected rows; the counts cover them all.
JOB_ERRORS_KEPT = 500
# The process running an import refreshes its job's progress about this often...
PROGRESS_EVERY = 1.0
# ...so a running job left alone this long was cut short along with its process.
STALE_AFTER = timedelta(minutes=2)
# Seconds a stopped import's process has to end the statement it is running
# (a bulk import finishes the window it is merging) before it is killed.
CHILD_STOP_TIMEOUT = 30
# Uploads wait for their import in temporary files named so; one older than
# this was left behind by a web process that was killed (no import lasts a day).
UPLOAD_PREFIX = "dialer-import-"
UPLOAD_LEFTOVER_AGE = timedelta(days=1)


def remove_leftover_uploads(
    directory: Path | None = None, *, older_than: timedelta = UPLOAD_LEFTOVER_AGE
) -> int:
    """Delete uploads older than ``older_than`` from ``directory`` (the system's temporary
    directory by default); returns how many.  Blocking: run it in a thread."""
    folder = Path(tempfile.gettempdir()) if directory is None else directory
    cutoff = time.time() - older_than.total_seconds()
    removed = 0
    for path in folder.glob(f"{UPLOAD_PREFIX}*"):
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except OSError:
            continue  # gone meanwhile, or not ours to delete
    return removed


@dataclass(frozen=True, slots=True)
class ImportJobView:
    """A background import as its page shows it."""

    id: int
    campaign_id: int | None
    file_name: str
    # "running", "done", "failed" (the file was refused; see error) or "interrupted".
    state: str
    bytes_total: int
    bytes_done: int
    rows_done: int
    report: ImportReport | None
    error: str | None

    @property
    def finished(self) -> bool:
        return self.state != "running"

    @property
    def percent(self) -> int:
        if self.state == "done":
            return 100
        if self.bytes_total <= 0:
            return 0
        return min(99, self.bytes_done * 100 // self.bytes_total)

    @property
    def rows_estimate(self) -> int | None:
        """The rows the whole file likely holds, from the bytes per row read so far."""
        if self.state == "done" and self.report is not None:
            return self.report.rows
        if self.bytes_done <= 0 or self.rows_done <= 0:
            return None
        return max(self.rows_done, round(self.rows_done * self.bytes_total / self.bytes_done))

    def progress_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "finished": self.finished,
            "rows_done": self.rows_done,
            "rows_estimate": self.rows_estimate,
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "percent": self.percent,
        }


async def run_job(
    sessions: async_sessionmaker[AsyncSession], job_id: int, upload: Path, **options: Any
) -> None:
    """Import ``upload`` for the job ``job_id``, keeping its progress and then its end there.

    ``options`` are :func:`import_stream`'s, the dialing policy given as
    :func:`policy_options` makes it (options cross into a child process as
    JSON).  Every rejected row, change and flag is kept in ``import_job_rows``
    for the downloads.  Cancelled, the job ends interrupted.
    """
    loop = asyncio.get_running_loop()
    last_saved = loop.time()
    policy = options.pop("policy", None)
    if isinstance(policy, dict):
        options["policy"] = DialingPolicy.parse(policy["allowed"], policy["blocked_prefixes"])

    async def keep_lines(lines: ImportReport) -> None:
        rows = job_rows(job_id, lines)
        if rows:
            async with sessions.begin() as session:
                await imports.add_rows(session, rows)

    async def save_progress(progress: ImportProgress) -> None:
        nonlocal last_saved
        if loop.time() - last_saved < PROGRESS_EVERY:
            return
        last_saved = loop.time()
        async with sessions.begin() as session:
            await imports.record_progress(
                session,
                job_id,
                bytes_done=progress.bytes_done,
                rows_done=progress.rows_done,
                at=datetime.now(UTC),
            )

    state, report, error = "failed", None, None
    stream = await asyncio.to_thread(_open, upload)
    try:
        result = await import_stream(
            sessions,
            stream,
            on_batch=save_progress,
            on_lines=keep_lines,
            errors_kept=JOB_ERRORS_KEPT,
            **options,
        )
        result.trim(JOB_ERRORS_KEPT)
        state, report = "done", result
    except ImportFileError as refused:
        error = str(refused)
    except asyncio.CancelledError:
        state = "interrupted"
        raise
    except Exception:
        log.exception("import job %s failed", job_id)
        error = _unexpected_end()
    finally:
        stream.close()
        await _finish(sessions, job_id, state, report, error)


def policy_options(policy: DialingPolicy) -> dict[str, list[str]]:
    """The dialing policy as JSON, for :func:`run_job` in a child process."""
    return {"allowed": sorted(policy.allowed), "blocked_prefixes": list(policy.blocked_prefixes)}


def job_rows(job_id: int, lines: ImportReport) -> list[dict[str, Any]]:
    """A batch's rejected rows, changes and flags as ``import_job_rows`` rows."""
    rows: list[dict[str, Any]] = [
        {
            "job_id": job_id,
            "kind": "rejected",
            "line": error.line,
            "data": {"reason": error.reason, "cells": list(error.cells)},
        }
        for error in lines.errors
    ]
    rows.extend(
        {"job_id": job_id, "kind": "change", "line": change.line, "data": {"c": change.to_json()}}
        for change in lines.changes
    )
    rows.extend(
        {
            "job_id": job_id,
            "kind": "flagged",
            "line": flag.line,
            "data": {"number": flag.number, "reason": flag.reason},
        }
        for flag in lines.flags
    )
    return rows


def _unexpected_end() -> str:
    return _(
        "an unexpected error stopped the import; the rows before it were imported, "
        "import the file again to finish"
    )


async def _finish(
    sessions: async_sessionmaker[AsyncSession],
    job_id: int,
    state: str,
    report: ImportReport | None,
    error: str | None,
) -> None:
    try:
        async with sessions.begin() as session:
            await imports.finish_job(
                session,
                job_id,
                state=state,
                at=datetime.now(UTC),
                report=None if report is None else report.to_json(),
                error=error,
                rows_done=None if report is None else report.rows,
            )
    except Exception:
        # The job then shows as interrupted once its progress is stale.
        log.exception("could not record the end of import job %s", job_id)


def postgresql_engine(sessions: async_sessionmaker[AsyncSession]) -> AsyncEngine | None:
    """The engine ``sessions`` are bound to when it is PostgreSQL; None for SQLite (the demo)."""
    engine = sessions.kw.get("bind")
    if not isinstance(engine, AsyncEngine) or engine.url.get_backend_name() != "postgresql":
        return None
    return engine


def _database_url(sessions: async_sessionmaker[AsyncSession]) -> str | None:
    """The PostgreSQL URL a child process can connect with; None for SQLite (the demo)."""
    engine = postgresql_engine(sessions)
    return None if engine is None else engine.url.render_as_string(hide_password=False)


class ImportService:
    """Imports for the command line (:meth:`import_contacts`, awaited) and the web
    (:meth:`start_import`, in the background, followed through :meth:`job`).

    On PostgreSQL a background import runs in a child process
    (:mod:`dialer.services.import_worker`), at a lower CPU priority: parsing
    and writing a million rows is seconds of Python at a time, and in the
    web process, even in a thread, it would hold the interpreter lock away
    from the event loop (the pages, and the AMI worker of ``dialer serve``).
    On SQLite (the demo, small files, one writer) it runs in the process.

    Progress and reports live in ``import_jobs``, so every web process behind
    a load balancer can show any import.  An import stops with the web
    process that started it (:meth:`close` marks it interrupted; after a crash
    it shows as interrupted once its progress is stale); importing the file
    again finishes it, the rows already in coming out unchanged.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        upload_directory: Path | None = None,
        policy: DialingPolicy | None = None,
        bulk_min_bytes: int = BULK_MIN_BYTES,
    ) -> None:
        self._sessions = sessions
        # The policy the calls follow: rows with numbers it refuses are flagged.
        self._policy = policy
        # Uploads this large take the bulk path (on PostgreSQL; see import_stream).
        self._bulk_min_bytes = bulk_min_bytes
        self._running: dict[int, asyncio.Task[None]] = {}
        # Where the web leaves uploads (the system's temporary directory by default).
        self._upload_directory = upload_directory
        self._leftovers_checked_at: float | None = None

    async def start_import(
        self,
        upload: Path,
        *,
        file_name: str,
        region: str,
        campaign_id: int,
        assign_to: Sequence[str] = (),
        encoding: str = "utf-8",
        actor_id: int | None = None,
        actor_label: str = "web",
        overwrite: bool = False,
    ) -> int:
        """Start importing ``upload`` in the background and return its job's id.

        ``upload`` is a temporary file that this service now owns and deletes.
        A file refused as a whole (no phone column, unknown assignee...)
        raises :class:`ImportFileError` at once, and nothing is written.
        """
        try:
            stream = await asyncio.to_thread(_open, upload)
            try:
                await check_file(
                    self._sessions,
                    stream,
                    region=region,
                    campaign_id=campaign_id,
                    assign_to=assign_to,
                    encoding=encoding,
                    actor_id=actor_id,
                    web=True,
                )
                size = (await asyncio.to_thread(os.fstat, stream.fileno())).st_size
            finally:
                stream.close()
            now = datetime.now(UTC)
            async with self._sessions.begin() as session:
                job = ImportJob(
                    campaign_id=campaign_id,
                    actor_id=actor_id,
                    file_name=file_name,
                    state="running",
                    bytes_total=size,
                    bytes_done=0,
                    rows_done=0,
                    started_at=now,
                    updated_at=now,
                )
                await imports.add_job(session, job)
                job_id = job.id
        except BaseException:
            await asyncio.to_thread(upload.unlink, missing_ok=True)
            raise
        options = {
            "name": file_name,
            "region": region,
            "campaign_id": campaign_id,
            "assign_to": list(assign_to),
            "encoding": encoding,
            "actor_id": actor_id,
            "actor_label": actor_label,
            "overwrite": overwrite,
            "web": True,
            "bulk_min_bytes": self._bulk_min_bytes,
        }
        if self._policy is not None:
            options["policy"] = policy_options(self._policy)
        task = asyncio.create_task(self._run(job_id, upload, options), name=f"import-{job_id}")
        self._running[job_id] = task
        task.add_done_callback(lambda _done: self._running.pop(job_id, None))
        return job_id

    async def _run(self, job_id: int, upload: Path, options: dict[str, Any]) -> None:
        await self._remove_leftover_uploads()
        try:
            database_url = _database_url(self._sessions)
            if database_url is None:
                await run_job(self._sessions, job_id, upload, **options)
            else:
                await self._run_in_child(database_url, job_id, upload, options)
        except Exception:
            # E.g. no process could be started: the job must not stay "running".
            log.exception("import job %s could not run", job_id)
            await _finish(self._sessions, job_id, "failed", None, _unexpected_end())
        finally:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(upload.unlink, missing_ok=True)

    async def _remove_leftover_uploads(self) -> None:
        """Delete the uploads a killed process left: at the first import, then hourly at most."""
        now = time.monotonic()
        if self._leftovers_checked_at is not None and now - self._leftovers_checked_at < 3600:
            return
        self._leftovers_checked_at = now
        try:
            removed = await asyncio.to_thread(remove_leftover_uploads, self._upload_directory)
        except OSError:
            log.exception("could not look for leftover uploads")
            return
        if removed:
            log.info("deleted %s upload(s) left behind by an earlier process", removed)

    async def _run_in_child(
        self, database_url: str, job_id: int, upload: Path, options: dict[str, Any]
    ) -> None:
        # The URL, with its password, goes through a pipe: never in the
        # command line or the environment, which other local users can read.
        request = {
            "database_url": database_url,
            "job_id": job_id,
            "upload": str(upload),
            "language": current_locale().language,
            "options": options,
        }
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dialer.services.import_worker", stdin=asyncio.subprocess.PIPE
        )
        try:
            await child.communicate(json.dumps(request).encode())
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                child.terminate()
            try:
                async with asyncio.timeout(CHILD_STOP_TIMEOUT):
                    await child.wait()
            except TimeoutError:
                log.error("import job %s: its process did not stop; killing it", job_id)
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                await child.wait()
            await _finish(self._sessions, job_id, "interrupted", None, None)
            raise
        if child.returncode != 0:
            log.error("import job %s: its process exited with %s", job_id, child.returncode)
            await _finish(self._sessions, job_id, "failed", None, _unexpected_end())

    async def job(self, job_id: int, *, campaign_id: int) -> ImportJobView | None:
        """The job, if it belongs to this campaign."""
        async with self._sessions() as session:
            job = await session.get(ImportJob, job_id)
        if job is None or job.campaign_id != campaign_id:
            return None
        state = job.state
        if state == "running" and job.updated_at < datetime.now(UTC) - STALE_AFTER:
            state = "interrupted"
        return ImportJobView(
            id=job.id,
            campaign_id=job.campaign_id,
            file_name=job.file_name,
            state=state,
            bytes_total=job.bytes_total,
            bytes_done=job.bytes_total if state == "done" else job.bytes_done,
            rows_done=job.rows_done,
            report=None if job.report is None else ImportReport.from_json(job.report),
            error=job.error,
        )

    async def write_rejected_csv(self, job: ImportJobView, out: TextIO) -> None:
        """Every rejected row of ``job`` as CSV: the line, why (in the words the import
        used), then the row's cells as they were in the file."""
        header = job.report.header if job.report is not None else []
        writer = csv.writer(out)
        writer.writerow(
            [
                pgettext("import download", "line"),
                pgettext("import download", "why it was rejected"),
            ]
            + [spreadsheet_safe(name) for name in header]
        )
        async for row in self._job_rows(job.id, "rejected"):
            cells = [spreadsheet_safe(cell) for cell in row.data.get("cells", [])]
            writer.writerow([row.line, spreadsheet_safe(row.data.get("reason", "")), *cells])

    async def write_changes_csv(self, job: ImportJobView, out: TextIO) -> None:
        """Every field-level change, conflict and flagged number of ``job`` as CSV,
        worded in the current language."""
        writer = csv.writer(out)
        writer.writerow(
            [
                pgettext("import download", "line"),
                pgettext("import download", "contact"),
                pgettext("import download", "field"),
                pgettext("import download", "what happened"),
                pgettext("import download", "on file before"),
                pgettext("import download", "in the file"),
                pgettext("import download", "details"),
            ]
        )
        async for row in self._job_rows(job.id, "change", "flagged"):
            if row.kind == "change":
                change = RowChange.from_json(row.data["c"])
                who = change.contact or (f"#{change.contact_id}" if change.contact_id else "")
                cells = [
                    who,
                    field_label(change.change.field),
                    change.kind_label(),
                    change.change.old,
                    change.change.new,
                    change.describe(),
                ]
            else:
                flag = RowFlag(row.line, str(row.data["number"]), str(row.data["reason"]))
                cells = [
                    "",
                    field_label("phone"),
                    pgettext("import change", "will not be dialed"),
                    "",
                    flag.shown_number,
                    flag.reason,
                ]
            writer.writerow([row.line, *(spreadsheet_safe(cell) for cell in cells)])

    async def _job_rows(self, job_id: int, *kinds: str) -> AsyncIterator[ImportJobRow]:
        """The job's report lines of these kinds, in file order, a page at a time."""
        after_line, after_id = -1, 0
        while True:
            async with self._sessions() as session:
                page = list(
                    await session.scalars(
                        select(ImportJobRow)
                        .where(
                            ImportJobRow.job_id == job_id,
                            ImportJobRow.kind.in_(kinds),
                            tuple_(ImportJobRow.line, ImportJobRow.id) > (after_line, after_id),
                        )
                        .order_by(ImportJobRow.line, ImportJobRow.id)
                        .limit(_DOWNLOAD_PAGE)
                    )
                )
            for row in page:
                yield row
            if len(page) < _DOWNLOAD_PAGE:
                return
            after_line, after_id = page[-1].line, page[-1].id

    async def close(self) -> None:
        """Stop the imports this process started (it is shutting down): each ends interrupted."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
