"""What the benchmarks share (run them as scripts: ``python bench/<name>.py``)."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from datetime import time as clock_time

from dialer.domain.survey import CallingHours, TimeWindow

# The local PostgreSQL the benchmarks create their databases on.
PG_SERVER = os.environ.get("DIALER_TEST_PG", "postgres@127.0.0.1:5432")
# The AMI secret the benchmarks' simulators and workers share.
SECRET = "bench-secret"
# Calling hours that never close: a bench's clock is whatever time it runs at.
ALWAYS = CallingHours(
    weekday=TimeWindow(start=clock_time(0), end=clock_time(23, 59, 59)),
    weekend=TimeWindow(start=clock_time(0), end=clock_time(23, 59, 59)),
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def desk_extensions(count: int) -> list[str]:
    """Extensions 20000 upwards that answer in the simulator.

    It makes extensions ending in 97, 98 and 99 busy, never answering and
    unreachable (ami_bridge/simulator/behaviour.py); a volunteer there would not measure
    what the bench means to.
    """
    found: list[str] = []
    number = 20000
    while len(found) < count:
        if number % 100 < 97:
            found.append(str(number))
        number += 1
    return found


def simulator_command(port: int, secret: str, time_scale: float) -> list[str]:
    """`dialer simulate-pbx` as the benches run it, after ``python``: the production AMI user."""
    return [
        "-m",
        "dialer",
        "simulate-pbx",
        "--port",
        str(port),
        "--username",
        "dialer",
        "--secret",
        secret,
        # As the production AMI user: no VarSet/Newexten noise.
        "--least-privilege",
        "--time-scale",
        str(time_scale),
    ]


class SseBody:
    """The body of one Server-Sent-Events response, cut into whole events as bytes arrive.

    For readers playing hundreds of browsers in one process: de-chunks
    (HTTP/1.1 chunked transfer) or takes the bytes as they are, and hands
    back only complete events (up to the last blank line).
    """

    def __init__(self, chunked: bool) -> None:
        self.chunked = chunked
        self.raw = bytearray()  # chunked body not yet decoded
        self.left = 0  # bytes left in the current chunk, its CRLF included
        self.text = bytearray()  # decoded body not yet cut at an event boundary

    def feed(self, data: bytes) -> bytes:
        """The complete events that ``data`` finished (b"" if none)."""
        if not self.chunked:
            self.text += data
        elif not (self.raw or self.left or self.text):
            # The usual case: one whole chunk that ends on an event boundary.
            line_end = data.find(b"\r\n", 0, 10)
            if line_end > 0:
                start = line_end + 2
                end = start + int(data[:line_end].split(b";")[0], 16)
                if end > start and len(data) == end + 2 and data.endswith(b"\n\n\r\n"):
                    return data[start:end]
            self._dechunk(data)
        else:
            self._dechunk(data)
        cut = self.text.rfind(b"\n\n")
        if cut < 0:
            return b""
        events = bytes(self.text[: cut + 2])
        del self.text[: cut + 2]
        return events

    def _dechunk(self, data: bytes) -> None:
        raw = self.raw
        raw += data
        position = 0
        while True:
            if self.left:
                take = min(self.left, len(raw) - position)
                # The last two bytes of a chunk are its CRLF, not body.
                body = min(take, self.left - 2)
                if body > 0:
                    self.text += raw[position : position + body]
                self.left -= take
                position += take
                if self.left:
                    break
            else:
                line_end = raw.find(b"\r\n", position)
                if line_end < 0:
                    break
                size = int(bytes(raw[position:line_end]).split(b";")[0], 16)
                position = line_end + 2
                if size == 0:
                    break
                self.left = size + 2
        del raw[:position]


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a live child process (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
