"""The bulk path of the CSV import, for voter files of millions of rows (PostgreSQL).

Same rules and same report as the batch path (:mod:`dialer.services.importer`:
batches of 2,000 rows, each merged in Python and written in its
transaction), at a multiple of its speed.  :func:`importer.import_stream
<dialer.services.importer.import_stream>` takes this path when asked
(``bulk=True``) or, by default, on PostgreSQL for files of
``import_bulk_min_bytes`` (1 MB) or more; SQLite, the demo, keeps the batches.

Where the time went, profiled on a 100,000-row voter file (the batch path,
about 8,000 rows/s before the search indexes of migration 0011): CSV
reading 2%, writing 25%, and 70% the checks of each row, nearly all of it
phonenumbers (``to_e164`` and the dialing policy's check: about 150 us of
the 200 us a row took), in one process.  (The row check now parses each
number once, :func:`dialer.domain.numbers.check_number`: 55-70 us a row in
a worker, and PostgreSQL's upkeep of the contacts' GIN indexes is what
bounds this path; see docs/benchmarks.md.)  So:

- **The parent reads, workers check.**  The CSV reader stays in the parent
  (a quoted field may hold line breaks, so the bytes cannot be cut at
  arbitrary newlines; reading is cheap), in a thread, a batch at a time,
  and hands each batch's cells to a ``spawn`` process pool, one worker per
  available core.  Workers run :func:`importer.parse_row
  <dialer.services.importer.parse_row>`, the batch path's row rule word for word
  (with :mod:`dialer.services.bulk_numbers` making phonenumbers' region
  look-ups 5-10x cheaper, same answers), and send back the rows already
  written as ``COPY`` text, and the rejected rows: bytes and a few errors
  are all that is pickled.  At most :data:`CHUNKS_AHEAD` batches are in
  flight, so memory stays flat whatever the file's size.
- **``COPY`` into a staging table, then set-based SQL.**  Rows go by
  ``COPY`` into a temporary table (:mod:`dialer.store.bulk_contacts`), a
  window of :data:`WINDOW_BATCHES` batches at a time.  The rows that are
  new people on their own (none of their numbers on file, nor in a row of
  the same or an earlier batch of the window: the bulk of a voter file) are
  given ids and inserted with their numbers and their flags in one
  ``INSERT ... SELECT`` each, under an advisory lock that makes two bulk
  imports take turns; a unique-number violation from a concurrent import of
  the batch path rolls the window back and it is decided again (as the batch path's
  batches retry).
- **What is not set-based.**  Every other row merges: into a contact on
  file, or with other rows of the file sharing a number.  Those go through
  :func:`importer.write_batch <dialer.services.importer.write_batch>`,
  the batch path's code, batch by batch in file order, with the batches
  that path would have made (the row numbering is the same), so the merges,
  conflicts, overwrites and their audit, team walls, and rejections of rows
  joining two contacts are the batch path's exactly.  A first import of a voter
  file has few such rows; importing the same file again has only those, and
  runs at about the batch path's speed.
- **The calling list.**  A window's contacts go onto the campaign's list in
  one statement, in the order the batch path's batches would have put them (per
  batch: the contacts on file, then the new people, by line), each once,
  shared among ``assign_to`` in turn; the notifications are sent at the end
  as on the batch path.

The event loop only awaits: the reader runs in a thread, the checks in
processes, and ``COPY`` and the SQL on the server.  Progress is reported per
window (``progress``, ``on_batch``, ``on_lines``), as the batch path does per batch.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import os
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dialer.domain import i18n
from dialer.domain.compliance import DialingPolicy
from dialer.domain.contact_merge import DEFAULT_DNC_REASON
from dialer.domain.vocabulary import PhoneType
from dialer.services import bulk_numbers
from dialer.services.importer import (
    BATCH_SIZE,
    ColumnMap,
    ImportCallbacks,
    ImportReport,
    ListCandidate,
    ParsedFile,
    ParsedRow,
    RawRow,
    RowError,
    RowFlag,
    _Target,
    parse_row,
    postgresql_engine,
    write_batch,
)
from dialer.store import bulk_contacts, contacts, lists

log = logging.getLogger(__name__)

# Batches staged, merged and reported together: 50,000 rows.  Larger windows
# spend less per row on the statements' fixed costs; smaller ones report
# progress more often and stage less at once.
WINDOW_BATCHES = 25
# The first window is smaller: the import's progress shows within seconds of
# its start, not once the first 50,000 rows are in (15 s and more on a busy
# two-core machine).
FIRST_WINDOW_BATCHES = 5
# Batches read ahead of the window being written: the workers keep checking
# rows while the server inserts (about 15 MB of staged rows at most).
CHUNKS_AHEAD = WINDOW_BATCHES + 8
# A window decided anew after a concurrent import took one of its numbers.
ATTEMPTS = 3
# A list key after every other (see bulk_contacts.list_key).
_EVERYTHING = 1 << 62


def worker_count() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# -- in the worker processes ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Setup:
    """What every worker needs to check rows as the parent would."""

    columns: ColumnMap
    region: str
    policy: DialingPolicy | None
    # The reasons for rejected rows are worded in the import's language.
    language: str


_setup: _Setup | None = None


def _start_worker(setup: _Setup) -> None:
    global _setup
    _setup = setup
    i18n.activate(setup.language)
    bulk_numbers.install()


def _check_batch(batch: int, rows: list[RawRow]) -> tuple[bytes, list[RowError]]:
    """A batch's rows checked by :func:`importer.parse_row`: the good ones as
    ``COPY`` text for the staging table, and the rejected ones."""
    setup = _setup
    assert setup is not None, "the worker was started without its setup"
    staged: list[str] = []
    errors: list[RowError] = []
    for line, cells in rows:
        parsed = parse_row(line, cells, setup.columns, setup.region, setup.policy)
        if isinstance(parsed, RowError):
            errors.append(parsed)
            continue
        staged.append(
            bulk_contacts.stage_line(
                parsed.line, batch, parsed.values, parsed.phones, parsed.flags, parsed.cells
            )
        )
    return "".join(staged).encode(), errors


# -- in the importing process -----------------------------------------------------------


@dataclass(slots=True)
class _Chunk:
    """One batch as read: how many rows, how far into the file, and its checks under way."""

    batch: int
    items: int
    bytes_done: int
    errors: list[RowError]
    checked: asyncio.Future[tuple[bytes, list[RowError]]] | None


@dataclass(slots=True)
class _Window:
    items: int = 0
    batches: int = 0
    bytes_done: int = 0
    errors: list[RowError] = field(default_factory=list)
    last: bool = False  # the file ends with this window


def _take(parsed: ParsedFile, count: int) -> tuple[list[RawRow | RowError], int]:
    return list(itertools.islice(parsed.raw, count)), parsed.lines.bytes_read


async def import_rows(
    sessions: async_sessionmaker[AsyncSession],
    parsed: ParsedFile,
    target: _Target,
    report: ImportReport,
    callbacks: ImportCallbacks,
    *,
    region: str,
    policy: DialingPolicy | None,
) -> None:
    """Import the rows of ``parsed`` (its header read) into ``report``, a window at a time.

    Called by :func:`importer.import_stream <dialer.services.importer.import_stream>`,
    which resolves ``target`` before and writes the import's audit entry and
    notifications after, as for the batch path.
    """
    engine = postgresql_engine(sessions)
    if engine is None:
        raise RuntimeError("the bulk import needs PostgreSQL")
    setup = _Setup(parsed.columns, region, policy, i18n.current().language)
    pool = ProcessPoolExecutor(
        max_workers=worker_count(),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(setup,),
    )
    try:
        # One connection for the whole import: the staging tables live on it.
        async with engine.connect() as connection:
            stage = AsyncSession(bind=connection, expire_on_commit=False)
            try:
                async with stage.begin():
                    await bulk_contacts.create_tables(stage)
                await _BulkImport(sessions, stage, parsed, pool, target, report, callbacks).run()
            finally:
                await _drop_staging(stage)
    finally:
        await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


async def _drop_staging(stage: AsyncSession) -> None:
    try:
        await stage.rollback()
        async with stage.begin():
            await bulk_contacts.drop_tables(stage)
    except Exception:
        # The connection is likely gone, and its temporary tables with it.
        log.warning("could not drop the bulk import's staging tables", exc_info=True)
    finally:
        await stage.close()


class _BulkImport:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        stage: AsyncSession,
        parsed: ParsedFile,
        pool: ProcessPoolExecutor,
        target: _Target,
        report: ImportReport,
        callbacks: ImportCallbacks,
    ) -> None:
        self._sessions = sessions
        self._stage = stage
        self._parsed = parsed
        self._pool = pool
        self._target = target
        self._report = report
        self._callbacks = callbacks
        self._chunks: asyncio.Queue[_Chunk | None] = asyncio.Queue(CHUNKS_AHEAD)
        self._added_since_analyze = 0

    async def run(self) -> None:
        reader = asyncio.create_task(self._read(), name="bulk-import-reader")
        try:
            batches = FIRST_WINDOW_BATCHES
            while True:
                window = _Window()
                await self._stage_window(window, batches)
                batches = WINDOW_BATCHES
                if window.items:
                    await self._finish_merging(window)
                if window.last:
                    break
            await reader
        finally:
            if not reader.done():
                reader.cancel()
                await asyncio.wait([reader])
            if not reader.cancelled():
                reader.exception()  # retrieved; when it failed, it was raised above
            self._abandon_chunks()

    def _abandon_chunks(self) -> None:
        while not self._chunks.empty():
            chunk = self._chunks.get_nowait()
            if chunk is not None and chunk.checked is not None and not chunk.checked.cancel():
                chunk.checked.exception()  # done already: retrieved, not logged as lost

    async def _read(self) -> None:
        """Read the file a batch at a time (in a thread) and hand each to the workers."""
        loop = asyncio.get_running_loop()
        for batch in itertools.count():
            taking = asyncio.ensure_future(asyncio.to_thread(_take, self._parsed, BATCH_SIZE))
            try:
                items, bytes_done = await asyncio.shield(taking)
            except asyncio.CancelledError:
                # The thread must be done with the file before anyone closes it.
                await asyncio.wait([taking])
                raise
            if not items:
                break
            rows: list[RawRow] = [item for item in items if not isinstance(item, RowError)]
            errors = [item for item in items if isinstance(item, RowError)]
            checked = loop.run_in_executor(self._pool, _check_batch, batch, rows) if rows else None
            await self._chunks.put(_Chunk(batch, len(items), bytes_done, errors, checked))
        await self._chunks.put(None)

    async def _stage_window(self, window: _Window, batches: int) -> None:
        """``COPY`` the next window's rows (``batches`` batches) into the staging
        table as the workers finish them."""

        async def staged_lines() -> AsyncIterator[bytes]:
            while window.batches < batches:
                chunk = await self._chunks.get()
                if chunk is None:
                    window.last = True
                    return
                window.batches += 1
                window.items += chunk.items
                window.bytes_done = chunk.bytes_done
                window.errors.extend(chunk.errors)
                if chunk.checked is not None:
                    data, errors = await chunk.checked
                    window.errors.extend(errors)
                    if data:
                        yield data

        async with self._stage.begin():
            await bulk_contacts.copy_rows(self._stage, staged_lines())

    async def _finish_merging(self, window: _Window) -> None:
        """Merge the window, even when the import is stopped meanwhile.

        A statement the server is running goes on to its end whatever the
        client does (the driver drops the connection without cancelling it),
        and would still hold its locks and write rows after the import is
        recorded as stopped.  So a stop waits for the window being merged, a
        few seconds at most, and takes effect after it.
        """
        merging = asyncio.ensure_future(self._merge_window(window))
        try:
            await asyncio.shield(merging)
        except asyncio.CancelledError:
            await asyncio.wait([merging])
            raise

    async def _merge_window(self, window: _Window) -> None:
        lines = ImportReport(rejected=len(window.errors), errors=list(window.errors))
        now = datetime.now(UTC)
        imported, flags = await self._insert_new_people(now)
        lines.imported += imported
        lines.flagged += len({line for line, _e164, _why in flags})
        lines.flags.extend(RowFlag(line, e164, why) for line, e164, why in flags)

        async with self._stage.begin():
            self._added_since_analyze += imported
            if imported and await bulk_contacts.refresh_statistics(
                self._stage, self._added_since_analyze
            ):
                self._added_since_analyze = 0
            merging = await bulk_contacts.merging_rows(self._stage)
        campaign_id = self._target.campaign_id
        for batch, staged in itertools.groupby(merging, key=lambda row: row.batch):
            if campaign_id is not None:
                # The earlier batches' contacts go on the list first, as the batch path's
                # batches did: who may merge into a contact depends on its lists.
                lines.added_to_list += await self._add_to_list(
                    campaign_id, now, below=bulk_contacts.list_key(batch, 0, 0)
                )
            rows = [
                ParsedRow(
                    row.line,
                    row.values,
                    [(e164, PhoneType(kind)) for e164, kind in row.phones],
                    row.cells,
                    row.flags,
                )
                for row in staged
            ]
            listed: list[ListCandidate] = []
            await write_batch(self._sessions, rows, self._target, lines, listed=listed)
            if campaign_id is not None and listed:
                async with self._stage.begin():
                    await bulk_contacts.list_contacts(
                        self._stage,
                        [
                            (bulk_contacts.list_key(batch, new, line), contact_id)
                            for new, line, contact_id in listed
                        ],
                    )
        if campaign_id is not None:
            lines.added_to_list += await self._add_to_list(campaign_id, now, below=_EVERYTHING)
        async with self._stage.begin():
            await bulk_contacts.clear(self._stage)
        await self._callbacks.done(self._report, lines, window.items, window.bytes_done)

    async def _insert_new_people(self, now: datetime) -> tuple[int, list[tuple[int, str, str]]]:
        """Insert the window's new people set-based; how many, and their flagged numbers."""
        stage = self._stage
        for attempt in range(ATTEMPTS):
            try:
                async with stage.begin():
                    await bulk_contacts.lock_imports(stage)
                    count = await bulk_contacts.pick_new_people(stage)
                    flags: list[tuple[int, str, str]] = []
                    if count:
                        await contacts.insert_contacts_from(
                            stage,
                            bulk_contacts.CONTACT_COLUMNS,
                            bulk_contacts.new_contacts(now, DEFAULT_DNC_REASON),
                        )
                        await contacts.insert_phones_from(
                            stage, bulk_contacts.PHONE_COLUMNS, bulk_contacts.new_phones(now)
                        )
                        flags = await bulk_contacts.new_people_flags(stage)
                        if self._target.campaign_id is not None:
                            await bulk_contacts.list_new_people(stage)
                return count, flags
            except IntegrityError:
                # Another import (the batch path) took one of the numbers meanwhile:
                # decided again, that row now merges into its contact.
                if attempt == ATTEMPTS - 1:
                    raise
                log.info("a concurrent import took a number of this window: trying it again")
        raise AssertionError("unreachable")

    async def _add_to_list(self, campaign_id: int, now: datetime, *, below: int) -> int:
        """Put the window's contacts before ``below`` (a list key) on the campaign's
        list, in list order; how many were added."""
        target = self._target
        for attempt in range(ATTEMPTS):
            try:
                async with self._stage.begin():
                    volunteers = await lists.add_entries_from(
                        self._stage,
                        bulk_contacts.LIST_COLUMNS,
                        bulk_contacts.list_entries(
                            campaign_id,
                            target.volunteer_ids,
                            target.next_volunteer,
                            now,
                            below=below,
                        ),
                    )
                    await bulk_contacts.forget_listed(self._stage, below)
            except IntegrityError:
                # A concurrent import listed one of the contacts: the rest go in now.
                if attempt == ATTEMPTS - 1:
                    raise
                continue
            if target.volunteer_ids:
                target.next_volunteer += len(volunteers)
            for volunteer_id in volunteers:
                if volunteer_id is not None:
                    target.assigned[volunteer_id] = target.assigned.get(volunteer_id, 0) + 1
            return len(volunteers)
        raise AssertionError("unreachable")
