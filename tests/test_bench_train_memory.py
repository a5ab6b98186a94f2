"""benchmarks/bench_train_memory.py --quick runs the FR job on the new data path (and on the old one,
from a temporary worktree of 4c98b94, where that commit is in the clone) and prints a row per job;
it leaves no worktree and no temporary folder behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_benchmark_prints_a_row_per_job(lfw_dir):
    has_old = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", "4c98b94^{commit}"]).returncode == 0
    paths = "old,new" if has_old else "new"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_train_memory.py"), "--quick", f"--paths={paths}"],
        capture_output=True,
        text=True,
        timeout=1500,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [line.split() for line in proc.stdout.splitlines() if re.match(r"fr\s+(old|new)\s+\d+", line)]
    assert len(rows) == 2 * len(paths.split(",")), proc.stdout
    for row in rows:
        worker, job, first, rate = (float(v) for v in row[3:7])
        assert 100 < worker <= job and first > 0 and rate > 0, row
    work = re.search(r"tables and trees in (\S+),", proc.stderr).group(1)
    assert not Path(work).exists()
    listed = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True).stdout
    assert work not in listed  # its worktrees removed (other sessions may hold their own)
