"""``--dist loadgroup`` keeps each xdist_group on one process.

.ci/run relies on it: the modules whose fixtures start their own Asterisk
(and wait out its ring timeouts) or run a million-row import are grouped so
that their fixtures run once and the heavy imports never run side by side.
pytest 9.2 with pytest-xdist 3.8 silently ignores the groups (see the pytest
cap in pyproject.toml); this fails if a version pair does that again.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

GROUPED_MODULE = """
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("{group}")]


@pytest.mark.parametrize("case", range(6))
def test_case(case: int) -> None:
    assert case >= 0
"""


def test_each_group_runs_on_one_process(tmp_path: Path) -> None:
    for group in ("first", "second"):
        (tmp_path / f"test_{group}.py").write_text(GROUPED_MODULE.format(group=group))
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: slow\n")
    command = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider"]
    run = subprocess.run(
        [*command, "-n", "2", "--dist", "loadgroup", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    workers: dict[str, set[str]] = defaultdict(set)
    for worker, group in re.findall(r"\[(gw\d+)\].*PASSED \S+@(\w+)", run.stdout):
        workers[group].add(worker)
    assert set(workers) == {"first", "second"}, run.stdout
    assert all(len(ran_on) == 1 for ran_on in workers.values()), dict(workers)
