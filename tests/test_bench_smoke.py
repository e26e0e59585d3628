"""The benchmark command runs and prints its table (timings are not judged here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.prereq import require
from tests.harness.systemd import prerequisites

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.systemd
@pytest.mark.timeout(20)
def test_the_quick_benchmark_prints_the_floor_and_p1_table() -> None:
    """If bench.run runs in its quickest mode on floor and P1, it prints the table."""
    ok, reason = prerequisites()
    require(ok, reason)

    command = ["-m", "bench.run", "--quick", "--runs", "4", "--only", "floor,P1"]

    done = subprocess.run(
        [sys.executable, *command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=18,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("figure") and "ours median" in line for line in lines)
    assert any(line.startswith("floor (inotify+verify+write)") for line in lines)
    assert any(line.startswith("P1 licence -> status (full<->full)") for line in lines)
    assert any(line.startswith("P1b licence -> SMD stopped") for line in lines)
