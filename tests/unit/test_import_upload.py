"""The web's copy of a plain-form upload leaves nothing behind when it fails."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pytest

from web.routes import ops


class _FailingUpload(io.BytesIO):
    """A spooled upload whose reading fails half-way (an I/O error, a full disk)."""

    def read(self, size: int | None = -1, /) -> bytes:
        if self.tell() > 0:
            raise OSError(28, "No space left on device")
        return super().read(4)


def test_a_failed_copy_deletes_its_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(OSError, match="No space left"):
        ops._copy_to_temporary(_FailingUpload(b"name,phone\nA,5145550123\n"))
    assert list(tmp_path.iterdir()) == []


def test_a_copy_keeps_the_whole_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    data = b"name,phone\nA,5145550123\n"
    copy = ops._copy_to_temporary(io.BytesIO(data))
    assert copy.parent == tmp_path and copy.name.startswith("dialer-import-")
    assert copy.read_bytes() == data
