"""bench/scale.py still runs end to end: seeded, measured, printed, dropped.

At a toy size, so only that the bench works is checked, not the numbers;
the double-claim line is the one result that must hold at any size.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

# The heavy imports run one after another on one xdist worker (.ci/run's
# --dist loadgroup): two at once starve the two cores, and the timing
# assertions of the tests beside them.
pytestmark = pytest.mark.xdist_group("heavy_imports")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_scale_bench_runs_at_a_toy_size() -> None:
    database = f"dialer_scale_smoke_{uuid.uuid4().hex[:8]}"
    toy = [
        "--contacts", "3000", "--campaigns", "2", "--volunteers", "4", "--import-rows", "400",
        "--concurrency", "4", "--duration", "1", "--think", "0.2", "--stress-think", "0.1",
        "--samples", "2",
        "--budget", "1", "--import-timeout", "60", "--database", database, "--drop",
    ]  # fmt: skip
    finished = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scale.py"), *toy],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    table = finished.stdout
    lines = {
        name: re.search(rf"^\S+\s+{re.escape(name)}.*$", table, re.MULTILINE)
        for name in (
            "seed, all tables",
            "name fragment, as volunteer",
            "call-back due, as admin",
            "next contact, 4 volunteers",
            "double claims",
            "campaign dashboard",
            "export, statewide campaign",
            "raw COPY into a scratch table",
            "batch path (bulk=False)",
            "this process",
        )
    }
    assert all(lines.values()), f"lines missing: {[n for n, m in lines.items() if not m]}\n{table}"
    double = lines["double claims"]
    assert double is not None and re.search(r"\s0\s+0\s+pass$", double.group(0)), table
    assert not re.search(r"\serror\s", table), table
