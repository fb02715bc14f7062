"""Writes ``import_jobs`` and ``import_job_rows``; nothing else does.

A background import is started (``add_job``), reports how far it has read
(``record_progress``, which also shows its process is alive), keeps every
rejected row, field-level change and flagged number as it goes
(``add_rows``, for the downloads) and ends with its report or the reason
the file was refused (``finish_job``).  Callers
own the transaction; every function here sends its SQL before it returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from dialer.store.models import ImportJob, ImportJobRow


async def add_job(session: AsyncSession, job: ImportJob) -> None:
    session.add(job)
    await session.flush()


async def record_progress(
    session: AsyncSession, job_id: int, *, bytes_done: int, rows_done: int, at: datetime
) -> None:
    await session.execute(
        update(ImportJob)
        .where(ImportJob.id == job_id, ImportJob.state == "running")
        .values(bytes_done=bytes_done, rows_done=rows_done, updated_at=at)
    )


async def add_rows(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert report lines (``job_id``, ``kind``, ``line``, ``data``) in one executemany."""
    if rows:
        await session.execute(insert(ImportJobRow), rows)


async def finish_job(
    session: AsyncSession,
    job_id: int,
    *,
    state: str,
    at: datetime,
    report: dict[str, Any] | None = None,
    error: str | None = None,
    bytes_done: int | None = None,
    rows_done: int | None = None,
) -> None:
    values: dict[str, Any] = {
        "state": state,
        "report": report,
        "error": error,
        "updated_at": at,
        "finished_at": at,
    }
    if bytes_done is not None:
        values["bytes_done"] = bytes_done
    if rows_done is not None:
        values["rows_done"] = rows_done
    # Only a running job ends: whichever of the import and its supervisor
    # records the end first is the one kept.
    await session.execute(
        update(ImportJob)
        .where(ImportJob.id == job_id, ImportJob.state == "running")
        .values(**values)
    )
