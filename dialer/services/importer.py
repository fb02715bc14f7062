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
viewer's on the web and the environment's on the command line.
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
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dialer.domain.i18n import _, ngettext, pgettext
from dialer.domain.i18n import current as current_locale
from dialer.domain.numbers import InvalidPhoneNumber, to_e164
from dialer.domain.vocabulary import PhoneType
from dialer.services.access import Scope, scope_of
from dialer.store import audit, contacts, imports, lists
from dialer.store.models import (
    CallingListEntry,
    Campaign,
    Contact,
    ContactPhone,
    ImportJob,
    TeamMember,
    User,
)

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
        "extensions cannot be dialed": pgettext("phone number", "extensions cannot be dialed"),
        "contains letters": pgettext("phone number", "contains letters"),
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

    def keep_first_errors(self, limit: int) -> None:
        """Keep only the ``limit`` rejected rows of lowest line numbers; the counts stay exact."""
        # Trimmed only once twice the limit is reached, so sorting stays cheap.
        if len(self.errors) > 2 * limit:
            self.errors.sort(key=lambda error: error.line)
            del self.errors[limit:]

    def to_json(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "added_to_list": self.added_to_list,
            "ignored_columns": list(self.ignored_columns),
            "errors": [[error.line, error.reason] for error in self.errors],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImportReport:
        return cls(
            imported=int(data.get("imported", 0)),
            updated=int(data.get("updated", 0)),
            unchanged=int(data.get("unchanged", 0)),
            rejected=int(data.get("rejected", 0)),
            added_to_list=int(data.get("added_to_list", 0)),
            errors=[RowError(int(line), str(reason)) for line, reason in data.get("errors", [])],
            ignored_columns=[str(name) for name in data.get("ignored_columns", [])],
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


_READ_CHUNK = 1 << 20


class _Lines:
    """Decodes the file line by line, remembering which lines were not text.

    The file is read a chunk at a time, never whole: an upload of many
    megabytes costs one chunk of memory.  Lines end where ``bytes.splitlines``
    ends them (LF, CRLF or a lone CR), so the line numbers in the report are
    those a spreadsheet shows.
    """

    def __init__(self, stream: BinaryIO, encoding: str) -> None:
        self._stream = stream
        self._encoding = encoding
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
                self.undecodable[number] = _(
                    "not valid %(encoding)s text (byte 0x%(byte)s at column %(column)s); "
                    "save the file as UTF-8 or pass --encoding (e.g. latin-1)",
                    encoding=self._encoding,
                    byte=bad,
                    column=error.start + 1,
                )
                yield raw.decode(self._encoding, errors="replace")


def _is_blank(stream: BinaryIO) -> bool:
    """Whether the file holds only white space; rewinds it to its start."""
    try:
        while chunk := stream.read(_READ_CHUNK):
            if chunk.strip():
                return False
        return True
    finally:
        stream.seek(0)


@dataclass(slots=True)
class ParsedFile:
    """A file whose header was read: its columns, and its rows, parsed as they are taken."""

    columns: ColumnMap
    rows: Iterator[ParsedRow | RowError]
    lines: _Lines

    def take(self, count: int) -> tuple[list[ParsedRow | RowError], int]:
        """Parse up to ``count`` more rows, and say how far into the file they reach (bytes).

        CPU-bound (the CSV reader, phone number parsing): run it off the event loop.
        """
        taken = list(itertools.islice(self.rows, count))
        return taken, self.lines.bytes_read


def parse_stream(stream: BinaryIO, *, region: str, encoding: str = "utf-8") -> ParsedFile:
    """Read the header of a seekable binary file; nothing else is read yet."""
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"  # Excel writes a byte-order mark
    if _is_blank(stream):
        raise ImportFileError(_("the file is empty"))
    lines = _Lines(stream, encoding)
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

    return ParsedFile(columns, rows(), lines)


def parse_rows(
    data: bytes, *, region: str, encoding: str = "utf-8"
) -> tuple[ColumnMap, Iterator[ParsedRow | RowError]]:
    """:func:`parse_stream` over bytes already in memory."""
    parsed = parse_stream(io.BytesIO(data), region=region, encoding=encoding)
    return parsed.columns, parsed.rows


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
        if not raw.isdecimal() or not 1 <= int(raw) <= 5:
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
    """Options that apply to every row: where imported contacts go, and who imports them."""

    campaign_id: int | None
    volunteer_ids: list[int]
    # The contacts the importing user may see; None when they see everything
    # (an administrator, or an operator on the command line).
    scope: Scope | None = None
    next_volunteer: int = 0

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
) -> ImportReport:
    """Import ``path``; ``progress`` is called with the number of rows handled
    since its last call."""
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
) -> None:
    """Raise :class:`ImportFileError` if the file as a whole would be refused; writes nothing.

    Reads only the header, then rewinds the file.
    """
    try:
        await asyncio.to_thread(parse_stream, stream, region=region, encoding=encoding)
    finally:
        stream.seek(0)
    async with sessions() as session:
        await _resolve_target(session, campaign_id, assign_to, actor_id)


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
    """
    parsed = await asyncio.to_thread(parse_stream, stream, region=region, encoding=encoding)
    report = ImportReport(ignored_columns=list(parsed.columns.ignored))
    async with sessions() as session:
        target = await _resolve_target(session, campaign_id, assign_to, actor_id)
    ahead = asyncio.ensure_future(asyncio.to_thread(parsed.take, BATCH_SIZE))
    try:
        while True:
            items, bytes_done = await ahead
            if not items:
                break
            ahead = asyncio.ensure_future(asyncio.to_thread(parsed.take, BATCH_SIZE))
            batch: list[ParsedRow] = []
            for item in items:
                if isinstance(item, RowError):
                    report.rejected += 1
                    report.errors.append(item)
                else:
                    batch.append(item)
            if batch:
                await write_batch(sessions, batch, target, report)
            if errors_kept is not None:
                report.keep_first_errors(errors_kept)
            if progress:
                progress(len(items))
            if on_batch:
                await on_batch(ImportProgress(report.rows, bytes_done))
    finally:
        # The thread parsing ahead must be done with the file before anyone closes it.
        if not ahead.done():
            await asyncio.wait([ahead])
        if not ahead.cancelled():
            # Retrieved so that it is not logged as lost: when it failed, the
            # loop above raised it already, or a failure of its own is raised.
            ahead.exception()
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
            },
            actor_id=actor_id,
            actor_label=actor_label,
        )
    report.errors.sort(key=lambda error: error.line)
    return report


async def write_batch(
    sessions: async_sessionmaker[AsyncSession],
    batch: list[ParsedRow],
    target: _Target,
    report: ImportReport,
) -> None:
    """Write one batch of parsed rows in its own transaction, adding to ``report``.

    The one place rows reach the database: a bulk path (COPY into a staging
    table, for files of millions of rows) would replace what this calls.
    """
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
        if owners & outside:
            report.rejected += 1
            report.errors.append(
                RowError(
                    row.line,
                    _(
                        "this number is already on file for another team; "
                        "an administrator can add it to this campaign"
                    ),
                )
            )
            continue
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


log = logging.getLogger(__name__)

# The import page shows at most this many rejected rows; the counts cover them all.
JOB_ERRORS_KEPT = 500
# The process running an import refreshes its job's progress about this often...
PROGRESS_EVERY = 1.0
# ...so a running job left alone this long was cut short along with its process.
STALE_AFTER = timedelta(minutes=2)
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

    ``options`` are :func:`import_stream`'s.  Cancelled, the job ends interrupted.
    """
    loop = asyncio.get_running_loop()
    last_saved = loop.time()

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
            sessions, stream, on_batch=save_progress, errors_kept=JOB_ERRORS_KEPT, **options
        )
        del result.errors[JOB_ERRORS_KEPT:]
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


def _database_url(sessions: async_sessionmaker[AsyncSession]) -> str | None:
    """The PostgreSQL URL a child process can connect with; None for SQLite (the demo)."""
    engine = sessions.kw.get("bind")
    if not isinstance(engine, AsyncEngine) or engine.url.get_backend_name() != "postgresql":
        return None
    return engine.url.render_as_string(hide_password=False)


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
        self, sessions: async_sessionmaker[AsyncSession], *, upload_directory: Path | None = None
    ) -> None:
        self._sessions = sessions
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
        }
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

    async def close(self) -> None:
        """Stop the imports this process started (it is shutting down): each ends interrupted."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
