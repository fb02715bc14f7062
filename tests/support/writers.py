"""Holds every write the product makes to ``dialer.store.writers.TABLE_WRITERS``.

A SQLAlchemy ``before_cursor_execute`` hook reads the table of each INSERT,
UPDATE and DELETE and walks the Python stack that issued it, across the
greenlets SQLAlchemy's asyncio layer runs statements in.  The innermost
frame of the product's own code must belong to the table's owner module,
or to a module the owner calls.  Writes with no product frame at all are a
test seeding its data, and migrations write what they like; both pass.

A write an ORM flush makes when a service commits counts against the
service: the owner's functions flush before they return, so the SQL runs
inside them.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import greenlet
from sqlalchemy import event
from sqlalchemy.engine import Engine

from dialer.store.writers import TABLE_WRITERS

_WRITE = re.compile(r'^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?(\w+)"?', re.IGNORECASE)
_PRODUCT = ("dialer.", "web.", "ami_bridge.")
# Modules that run statements on behalf of their caller: the frame that
# counts is the caller's.
_PASS_THROUGH = ("dialer.store.engine", "dialer.store.notify")
_MIGRATIONS = "dialer.store.migrations"


@dataclass(frozen=True)
class StrayWrite:
    table: str
    owner: str
    writer: str
    function: str
    line: int

    def __str__(self) -> str:
        return (
            f"{self.writer}.{self.function} (line {self.line}) wrote {self.table}, "
            f"which only {self.owner} may write"
        )


stray_writes: list[StrayWrite] = []


def _frames() -> Iterator[FrameType]:
    frame: FrameType | None = sys._getframe(2)
    current: Any = greenlet.getcurrent()
    while True:
        while frame is not None:
            yield frame
            frame = frame.f_back
        current = current.parent
        if current is None:
            return
        frame = current.gr_frame


def _check(statement: str) -> None:
    found = _WRITE.match(statement)
    if found is None:
        return
    table = found.group(1).lower()
    owner = TABLE_WRITERS.get(table)
    if owner is None:
        return
    for frame in _frames():
        module = str(frame.f_globals.get("__name__", ""))
        if not module.startswith(_PRODUCT) or module.startswith(_PASS_THROUGH):
            continue
        if module == owner or module.startswith(_MIGRATIONS):
            return
        stray_writes.append(StrayWrite(table, owner, module, frame.f_code.co_name, frame.f_lineno))
        return


def _before_cursor_execute(
    _conn: Any, _cursor: Any, statement: str, *_args: Any, **_kwargs: Any
) -> None:
    _check(statement)


def install() -> None:
    if not event.contains(Engine, "before_cursor_execute", _before_cursor_execute):
        event.listen(Engine, "before_cursor_execute", _before_cursor_execute)
