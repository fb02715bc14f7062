"""Reader for recorded AMI sessions (the ``.ami`` format).

A file is a sequence of frames; each starts with a marker line ending in
``\\n`` (``>>> t=SECONDS`` for what the client sent, ``<<< t=SECONDS`` for
what Asterisk sent) followed by the bytes exactly as they crossed the wire.
Two bodies are notes rather than bytes, and are reported as such.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

_MARKER = re.compile(rb"^(<<<|>>>) t=([0-9]+(?:\.[0-9]+)?)\n", re.MULTILINE)
_NOTES = {
    b"(connection closed by Asterisk)": "closed_by_server",
    b"(client drops the TCP connection without Logoff)": "dropped_by_client",
}

Direction = Literal["client", "server"]


@dataclass(frozen=True, slots=True)
class Frame:
    direction: Direction
    t: float
    data: bytes
    # "closed_by_server" / "dropped_by_client" when the frame is a note.
    note: str | None = None


def parse_transcript(raw: bytes) -> list[Frame]:
    frames: list[Frame] = []
    markers = list(_MARKER.finditer(raw))
    if not markers or markers[0].start() != 0:
        raise ValueError("not an AMI transcript: it must start with a '<<< t=' or '>>> t=' line")
    for index, marker in enumerate(markers):
        end = markers[index + 1].start() if index + 1 < len(markers) else len(raw)
        data = raw[marker.end() : end]
        direction: Direction = "server" if marker.group(1) == b"<<<" else "client"
        note = _NOTES.get(data.strip())
        frames.append(Frame(direction, float(marker.group(2)), b"" if note else data, note))
    return frames


def read_transcript(path: str | Path) -> list[Frame]:
    return parse_transcript(Path(path).read_bytes())


def server_bytes(frames: list[Frame]) -> Iterator[bytes]:
    """The byte chunks Asterisk sent, in order, as a client would receive them."""
    for frame in frames:
        if frame.direction == "server" and frame.note is None:
            yield frame.data
