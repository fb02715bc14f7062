"""What an imported row does to a contact already on file: the one merge rule.

Pure: it compares what is on file with what the row says and returns the
column values to write plus a field-level account of every decision.  The
CSV importer calls it for each row that matches a contact by number (and for
rows of one file that are the same person); a bulk path (COPY into a
staging table) must call it too, so that both give the same contacts and
the same per-row report.

The rule, by default: a row fills the fields the contact has empty and
never overwrites a different value already there.  Such a difference is a
*conflict*: the contact keeps its value and the report shows both.  With
``overwrite`` the file wins and each replaced value is reported, old and
new.  Either way tags and notes are only ever added to, an empty cell never
erases anything, and an import never takes anyone off the do-not-call list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

# Fields compared one by one; the name (first and last) is compared as one
# field, because "Ada Duplicate" is not "Ada" plus a new last name.
SCALAR_FIELDS = (
    "email",
    "language",
    "address",
    "area",
    "support_score",
    "timezone",
    # Compared only for a contact already on the do-not-call list.
    "dnc_reason",
)
DEFAULT_DNC_REASON = "imported as do-not-call"


class ChangeKind(StrEnum):
    FILLED = "filled"  # the contact had nothing there; the file's value went in
    KEPT = "kept"  # a conflict: the contact keeps its value, the file's is reported
    REPLACED = "replaced"  # overwrite was asked: the file's value replaced the contact's
    ADDED = "added"  # tags, a note, a number, do-not-call: added, nothing lost


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One decision about one field; ``old`` and ``new`` are as a person reads them."""

    field: str  # "name", a SCALAR_FIELDS entry, "tags", "notes", "do_not_call" or "phone"
    kind: ChangeKind
    old: str
    new: str


@dataclass(slots=True)
class MergeDecision:
    # Column -> value to write (for a contact on file: only what changes).
    updates: dict[str, Any] = field(default_factory=dict)
    changes: list[FieldChange] = field(default_factory=list)

    @property
    def conflict(self) -> bool:
        return any(change.kind is ChangeKind.KEPT for change in self.changes)


def shown(value: Any) -> str:
    """A field's value as the report shows it."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value)
    return str(value)


def _same(left: Any, right: Any) -> bool:
    # "ada lovelace" and "Ada  Lovelace" are the same value, not a conflict.
    if isinstance(left, str) and isinstance(right, str):
        return " ".join(left.split()).casefold() == " ".join(right.split()).casefold()
    return bool(left == right)


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _full_name(first: str, last: str) -> str:
    return " ".join(part for part in (first, last) if part)


def decide_merge(
    current: Mapping[str, Any],
    incoming: Mapping[str, Any],
    *,
    overwrite: bool = False,
    now: datetime,
) -> MergeDecision:
    """What the row ``incoming`` (parsed, validated values) does to ``current``.

    ``current`` maps the contact's columns to what is on file (missing keys
    are empty); ``now`` dates a do-not-call flag the row adds.
    """
    decision = MergeDecision()
    _merge_name(current, incoming, overwrite, decision)
    for name in SCALAR_FIELDS:
        new = incoming.get(name)
        if _empty(new) or (name == "dnc_reason" and not current.get("do_not_call")):
            continue
        old = current.get(name)
        if _empty(old):
            decision.updates[name] = new
            decision.changes.append(FieldChange(name, ChangeKind.FILLED, "", shown(new)))
        elif _same(old, new):
            continue
        elif overwrite:
            decision.updates[name] = new
            decision.changes.append(FieldChange(name, ChangeKind.REPLACED, shown(old), shown(new)))
        else:
            decision.changes.append(FieldChange(name, ChangeKind.KEPT, shown(old), shown(new)))
    if incoming.get("tags"):
        tags = list(current.get("tags") or [])
        added = sorted(set(incoming["tags"]) - set(tags))
        if added:
            decision.updates["tags"] = sorted(set(tags) | set(added))
            decision.changes.append(
                FieldChange("tags", ChangeKind.ADDED, shown(tags), shown(added))
            )
    note = incoming.get("notes")
    notes = current.get("notes") or ""
    if note and note not in notes:
        decision.updates["notes"] = f"{notes}\n{note}" if notes else note
        decision.changes.append(FieldChange("notes", ChangeKind.ADDED, "", note))
    # Only ever onto the list: a "no" in the file never clears a flag
    # someone set on purpose (taking a contact off is a deliberate act).
    if incoming.get("do_not_call") and not current.get("do_not_call"):
        reason = incoming.get("dnc_reason") or DEFAULT_DNC_REASON
        decision.updates.update(do_not_call=True, dnc_at=now, dnc_reason=reason)
        decision.changes.append(FieldChange("do_not_call", ChangeKind.ADDED, "", reason))
    return decision


def _merge_name(
    current: Mapping[str, Any],
    incoming: Mapping[str, Any],
    overwrite: bool,
    decision: MergeDecision,
) -> None:
    old_first, old_last = current.get("first_name") or "", current.get("last_name") or ""
    new_first, new_last = incoming.get("first_name") or "", incoming.get("last_name") or ""
    if not (new_first or new_last):
        return
    differs = any(
        old and new and not _same(old, new)
        for old, new in ((old_first, new_first), (old_last, new_last))
    )
    before = _full_name(old_first, old_last)
    if differs and not overwrite:
        decision.changes.append(
            FieldChange("name", ChangeKind.KEPT, before, _full_name(new_first, new_last))
        )
        return
    updates = {
        column: new
        for column, old, new in (
            ("first_name", old_first, new_first),
            ("last_name", old_last, new_last),
        )
        if new and (not old or (overwrite and not _same(old, new)))
    }
    if not updates:
        return
    decision.updates.update(updates)
    after = _full_name(updates.get("first_name", old_first), updates.get("last_name", old_last))
    kind = ChangeKind.REPLACED if differs else ChangeKind.FILLED
    decision.changes.append(FieldChange("name", kind, before, after))
