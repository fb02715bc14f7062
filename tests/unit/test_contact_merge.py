"""The one merge rule an import applies to a contact on file, and its translated words."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from dialer.domain import i18n
from dialer.domain.compliance import DialingPolicy
from dialer.domain.contact_merge import ChangeKind, FieldChange, decide_merge
from dialer.services.importer import (
    ParsedRow,
    RowChange,
    RowError,
    csv_problem,
    parse_stream,
)

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
ADA = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "email": "ada@example.org",
    "language": None,
    "tags": ["voter"],
    "notes": "",
    "do_not_call": False,
}


def test_a_different_name_is_kept_and_reported_as_a_conflict() -> None:
    decision = decide_merge(ADA, {"first_name": "Ada", "last_name": "Duplicate"}, now=NOW)
    assert decision.updates == {}
    assert decision.changes == [
        FieldChange("name", ChangeKind.KEPT, "Ada Lovelace", "Ada Duplicate")
    ]
    assert decision.conflict


def test_empty_fields_are_filled_and_differences_kept() -> None:
    decision = decide_merge(
        ADA, {"email": "other@example.org", "language": "fr", "tags": ["donor"]}, now=NOW
    )
    assert decision.updates == {"language": "fr", "tags": ["donor", "voter"]}
    assert decision.changes == [
        FieldChange("email", ChangeKind.KEPT, "ada@example.org", "other@example.org"),
        FieldChange("language", ChangeKind.FILLED, "", "fr"),
        FieldChange("tags", ChangeKind.ADDED, "voter", "donor"),
    ]


def test_the_same_value_written_differently_is_no_conflict() -> None:
    decision = decide_merge(ADA, {"first_name": "ADA", "last_name": " lovelace"}, now=NOW)
    assert (decision.updates, decision.changes) == ({}, [])


def test_overwrite_replaces_and_reports_old_and_new() -> None:
    decision = decide_merge(
        ADA,
        {"first_name": "Ada", "last_name": "Duplicate", "email": "new@example.org"},
        overwrite=True,
        now=NOW,
    )
    assert decision.updates == {"last_name": "Duplicate", "email": "new@example.org"}
    assert decision.changes == [
        FieldChange("name", ChangeKind.REPLACED, "Ada Lovelace", "Ada Duplicate"),
        FieldChange("email", ChangeKind.REPLACED, "ada@example.org", "new@example.org"),
    ]
    assert not decision.conflict


@pytest.mark.parametrize("overwrite", [False, True])
def test_an_import_never_takes_a_contact_off_the_do_not_call_list(overwrite: bool) -> None:
    on_list = {**ADA, "do_not_call": True, "dnc_reason": "asked"}
    decision = decide_merge(on_list, {"do_not_call": False}, overwrite=overwrite, now=NOW)
    assert decision.updates == {}
    added = decide_merge(ADA, {"do_not_call": True}, now=NOW)
    assert added.updates == {
        "do_not_call": True,
        "dnc_at": NOW,
        "dnc_reason": "imported as do-not-call",
    }


def test_a_conflict_reads_in_french_at_display_time() -> None:
    change = RowChange(
        5, 1, "Ada Lovelace", FieldChange("name", ChangeKind.KEPT, "Ada Lovelace", "Ada Duplicate")
    )
    token = i18n.activate_scoped("fr")
    try:
        assert str(change) == (
            "ligne 5 : Ada Lovelace, nom : « Ada Lovelace » conservé, "
            "le fichier indique « Ada Duplicate »"
        )
    finally:
        i18n.deactivate(token)
    assert str(change) == (
        "line 5: Ada Lovelace, name: kept 'Ada Lovelace', the file says 'Ada Duplicate'"
    )


def test_every_parser_message_is_translated() -> None:
    """The csv module's own English never reaches a French report."""
    data = b'name,phone\n"Ada "the" Lovelace",5145550184\n'
    token = i18n.activate_scoped("fr")
    try:
        [row] = list(parse_stream(io.BytesIO(data), region="CA").rows)
        assert isinstance(row, RowError)
        assert row.reason == (
            "CSV mal formé : un champ entre guillemets continue après son guillemet "
            "fermant ; doublez les guillemets à l'intérieur d'un champ entre guillemets"
        )
        assert csv_problem(csv.Error("something new")) == "cette ligne n'est pas du CSV valide"
    finally:
        i18n.deactivate(token)


def test_a_number_the_policy_refuses_is_flagged_not_rejected() -> None:
    policy = DialingPolicy.parse(["CA"], ["+1900"])
    data = b"name,phone\nPaid Line,+1 900 555 0123\nFine,514 555 0184\n"
    rows = list(parse_stream(io.BytesIO(data), region="CA", policy=policy).rows)
    assert all(isinstance(row, ParsedRow) for row in rows)
    assert [row.flags for row in rows if isinstance(row, ParsedRow)] == [
        [("+19005550123", "the dialing policy refuses numbers starting with +1900")],
        [],
    ]
