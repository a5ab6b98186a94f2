"""Every job answers --help without importing the heavy packages (torch, Ray, diffusers, pyarrow):
the help must come back in well under a second on a laptop, not after 7-25 s of imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JOBS = sorted(p.stem for p in (ROOT / "jobs").glob("*.py"))
HEAVY = ("torch", "ray", "diffusers", "pyarrow", "s3fs", "dlib")

PROBE = """
import runpy, sys
sys.argv = [{path!r}, "--help"]
try:
    runpy.run_path({path!r}, run_name="__main__")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = [m for m in {heavy!r} if m in sys.modules]
print("HEAVY=" + ",".join(heavy), "CODE=" + str(code), file=sys.stderr)
"""


@pytest.mark.parametrize("job", JOBS)
def test_help_is_light(job):
    path = str(ROOT / "jobs" / f"{job}.py")
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(path=path, heavy=HEAVY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    last = out.stderr.strip().splitlines()[-1]
    assert "CODE=0" in last, out.stderr[-2000:]
    assert last.startswith("HEAVY= "), f"{job} --help imports {last.split()[0][6:]}"
    assert "usage:" in out.stdout and "--" in out.stdout
