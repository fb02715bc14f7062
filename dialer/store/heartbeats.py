"""Writes ``worker_heartbeats``; nothing else does.

A running worker refreshes its PBX's row every few seconds (``beat``) and
deletes it when it stops cleanly (``remove``); web processes on other hosts
read who is up (``presence``).  Every time is the database's own clock
(``now()``), so a web host whose clock drifts still judges a heartbeat's
age right.  Callers own the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Table, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dialer.store.engine import insert_on_conflict
from dialer.store.models import User, WorkerHeartbeat

_HEARTBEATS = cast(Table, WorkerHeartbeat.__table__)

# How often a worker says it is alive, and how long a silence means it is not:
# three beats missed (a stopped, hung or cut-off worker, not a slow commit).
BEAT_SECONDS = 5.0
STALE_AFTER_SECONDS = 15.0


@dataclass(frozen=True)
class WorkerPresence:
    """What the database knows of one PBX's worker."""

    pbx: str
    # None when no worker of this PBX is running, or none ever stopped uncleanly.
    seen_seconds_ago: float | None = None
    host: str | None = None
    pid: int | None = None
    ami_connected: bool = False

    @property
    def up(self) -> bool:
        return self.seen_seconds_ago is not None and self.seen_seconds_ago <= STALE_AFTER_SECONDS


async def beat(
    session: AsyncSession,
    *,
    pbx: str,
    host: str,
    pid: int,
    started_at: datetime,
    ami_connected: bool,
) -> None:
    """Insert or refresh this worker's row, stamped with the database's clock."""
    values = {
        "pbx": pbx,
        "host": host[:255],
        "pid": pid,
        "started_at": started_at,
        "seen_at": func.now(),
        "ami_connected": ami_connected,
    }
    changed = {key: value for key, value in values.items() if key != "pbx"}
    upsert = insert_on_conflict(session, _HEARTBEATS).values(values)
    await session.execute(upsert.on_conflict_do_update(index_elements=["pbx"], set_=changed))


async def remove(session: AsyncSession, *, pbx: str, host: str, pid: int) -> None:
    """Delete this worker's row, not one a newer worker of the PBX already wrote."""
    await session.execute(
        delete(WorkerHeartbeat).where(
            WorkerHeartbeat.pbx == pbx,
            WorkerHeartbeat.host == host[:255],
            WorkerHeartbeat.pid == pid,
        )
    )


def _aware(moment: datetime) -> datetime:
    # SQLite's CURRENT_TIMESTAMP is UTC without saying so.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def presence(session: AsyncSession, expected: Iterable[str]) -> dict[str, WorkerPresence]:
    """Each PBX's worker: those ``expected``, those a user is assigned to, and
    any with a row (a worker that stopped without a clean shutdown)."""
    now = _aware(await session.scalar(select(func.now())) or datetime.now(UTC))
    found: dict[str, WorkerPresence] = {pbx: WorkerPresence(pbx) for pbx in expected}
    assigned = await session.scalars(
        select(User.pbx).where(User.pbx.is_not(None), User.is_active.is_(True)).distinct()
    )
    for pbx in assigned:
        if pbx is not None:
            found.setdefault(pbx, WorkerPresence(pbx))
    for row in await session.scalars(select(WorkerHeartbeat)):
        found[row.pbx] = WorkerPresence(
            row.pbx,
            seen_seconds_ago=max((now - _aware(row.seen_at)).total_seconds(), 0.0),
            host=row.host,
            pid=row.pid,
            ami_connected=row.ami_connected,
        )
    return dict(sorted(found.items()))
