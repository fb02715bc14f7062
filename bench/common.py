"""What the benchmarks share (run them as scripts: ``python bench/<name>.py``)."""

from __future__ import annotations

import socket
from collections.abc import Sequence


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
    unreachable (ami_bridge/simulator.py); a volunteer there would not measure
    what the bench means to.
    """
    found: list[str] = []
    number = 20000
    while len(found) < count:
        if number % 100 < 97:
            found.append(str(number))
        number += 1
    return found
