"""Every job answers --help without importing the heavy packages (torch, Ray, diffusers, pyarrow):
the help must come back in well under a second on a laptop, not after 7-25 s of imports.  The help
is wrapped to the terminal's width (``COLUMNS``; 80 when unknown, as in a pipe)."""

from __future__ import annotations

import os
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


def _help(job: str, columns: int | None) -> subprocess.CompletedProcess:
    path = str(ROOT / "jobs" / f"{job}.py")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run(
        [sys.executable, "-c", PROBE.format(path=path, heavy=HEAVY)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _widest(text: str) -> tuple[int, str]:
    return max((len(line), line) for line in text.splitlines())


@pytest.mark.parametrize("job", JOBS)
def test_help_is_light_and_fits_80_columns(job):
    out = _help(job, 80)
    last = out.stderr.strip().splitlines()[-1]
    assert "CODE=0" in last, out.stderr[-2000:]
    assert last.startswith("HEAVY= "), f"{job} --help imports {last.split()[0][6:]}"
    assert "usage:" in out.stdout and "--" in out.stdout
    assert _widest(out.stdout)[0] <= 80, _widest(out.stdout)
    assert len(out.stdout.splitlines()) > 10


@pytest.mark.parametrize("job", ["synthesize", "pipeline"])
def test_help_uses_the_terminal_width(job):
    """Wider with a wider COLUMNS (the same text, fewer lines); 80 when the width is unknown."""
    narrow, wide, unknown = _help(job, 80).stdout, _help(job, 132).stdout, _help(job, None).stdout
    assert 80 < _widest(wide)[0] <= 132, _widest(wide)
    assert len(wide.splitlines()) < len(narrow.splitlines())
    assert unknown == narrow  # stdout is a pipe here: no terminal to ask
    assert " ".join(wide.split()) == " ".join(narrow.split())
