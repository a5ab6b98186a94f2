"""An export killed with ``kill -9`` in its last step (publishing the staged entries into the output),
then rerun with the same command, ends with the tree of a clean export: the same names and bytes
(issue 34 item 9).

The kill is real: the export runs in a child process that sends itself SIGKILL at a named step of
the publish, through ``run_export``'s ``publish_step`` argument (a test seam, never a config field).
One case needs no seam at all: the child kills itself right after the first ``storage.move`` of the
entries, the kill of the issue (before the fix, the rerun removed the moved ``images/`` and failed
with ``cannot move ... FileNotFoundError``).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from test_export import make_dataset
from uiface_ray import storage
from uiface_ray.export.config import ExportConfig
from uiface_ray.export.run import run_export

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import os, signal, sys
sys.path[:0] = [{root!r}]
from uiface_ray import storage
from uiface_ray.export.config import ExportConfig
from uiface_ray.export.run import run_export

target, seen = {target!r}, []

def step(label):
    seen.append(label)
    if label == target:
        os.kill(os.getpid(), signal.SIGKILL)

seam = {{"publish_step": step}} if target is not None else {{}}  # None: a plain export, no seam
if target == "after the first move":  # no seam: the first move of an entry into the output
    real_move, seam = storage.move, {{}}

    def move(src, dst, storage_cfg=None):
        real_move(src, dst, storage_cfg)
        if "/.staging-" in src and "/.staging-" not in dst:
            os.kill(os.getpid(), signal.SIGKILL)

    storage.move = move
run_export(ExportConfig(dataset={dataset!r}, output={output!r}, write_attempts=1), **seam)
print("STEPS=" + "|".join(seen))
"""


def _child(dataset: str, output: str, target: str | None) -> subprocess.CompletedProcess:
    code = CHILD.format(root=str(ROOT), target=target, dataset=dataset, output=output)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def tree(url: str) -> dict[str, str]:
    """Every file under ``url``: its path and the SHA-256 of its bytes."""
    return {f: hashlib.sha256(storage.read_bytes(storage.join(url, f))).hexdigest() for f in storage.find_files(url)}


def _clean_export(dataset: str, output: str) -> dict[str, str]:
    """The tree of a plain export run to its end in a child."""
    proc = _child(dataset, output, None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    clean = tree(output)
    assert "images" in {f.split("/")[0] for f in clean} and ".uiface-export.json" in clean
    assert not [f for f in clean if f.startswith(".staging-")]
    return clean


def _publish_steps(dataset: str, output: str) -> list[str]:
    """Every step of the publish, in order, from an export run to its end through the seam."""
    proc = _child(dataset, output, "")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().rsplit("STEPS=", 1)[1].split("|")


def _kill_then_rerun(dataset: str, output: str, target: str) -> dict[str, str]:
    proc = _child(dataset, output, target)  # a step the publish never reaches ends with 0: a failure here
    assert proc.returncode == -signal.SIGKILL, (target, proc.returncode, proc.stderr[-3000:])
    run_export(ExportConfig(dataset=dataset, output=output, write_attempts=1))  # the same command again
    return tree(output)


#: Steps of the publish that the default suite kills at (the slow test kills at every step).
SOME_STEPS = (
    "recorded publish",
    "removed images",
    "moved images",
    "recorded images",
    "moved train.rec",
    "removed staging done",
)


@pytest.fixture(scope="module")
def local_dataset(tmp_path_factory):
    base = tmp_path_factory.mktemp("crash")
    dataset = str(base / "ds")
    make_dataset(dataset)
    return base, dataset, _clean_export(dataset, str(base / "clean"))


def test_kill_right_after_the_first_move_then_rerun(local_dataset):
    """The issue's kill, with no seam: only ``images/`` had reached the output."""
    base, dataset, clean = local_dataset
    assert _kill_then_rerun(dataset, str(base / "first-move"), "after the first move") == clean


@pytest.mark.parametrize("target", SOME_STEPS)
def test_kill_in_the_publish_then_rerun(local_dataset, target):
    base, dataset, clean = local_dataset
    output = str(base / f"k-{target.replace(' ', '_')}")
    assert _kill_then_rerun(dataset, output, target) == clean


@pytest.mark.slow
@pytest.mark.parametrize("where", ["local", "s3"])
def test_kill_at_every_step_of_the_publish(tmp_path, where, request):
    """Every step of the publish on a local disk; on S3 (where an entry is copied, recorded, then its
    staged copy removed) every step of a folder (images/) and of a file (train.rec), and the first
    and last steps (each kill costs a whole export on the loopback S3 server)."""
    base = request.getfixturevalue("s3_bucket") if where == "s3" else str(tmp_path)
    dataset = storage.join(base, "ds")
    make_dataset(dataset)
    clean = _clean_export(dataset, storage.join(base, "clean"))
    steps = _publish_steps(dataset, storage.join(base, "steps"))
    assert tree(storage.join(base, "steps")) == clean and len(steps) >= 20, steps
    if where == "s3":
        assert "cleared images" in steps, steps
        steps = [s for s in steps if s.endswith((" images", " train.rec")) or "publish" in s or "staging" in s]
    for n, target in enumerate(steps):
        assert _kill_then_rerun(dataset, storage.join(base, f"k{n}"), target) == clean, target


def test_a_pending_publish_of_other_settings_is_completed_first(local_dataset):
    """Killed while publishing folders + card, then run with RecordIO only: the output is what the
    first export then the second, each run to its end, give."""
    base, dataset, _ = local_dataset
    first = dict(dataset=dataset, formats=("folders", "card"), write_attempts=1)
    second = dict(dataset=dataset, formats=("recordio",), write_attempts=1)
    expected = str(base / "two-clean")
    run_export(ExportConfig(**first, output=expected))
    run_export(ExportConfig(**second, output=expected))

    output = str(base / "two-killed")
    code = CHILD.replace(
        "ExportConfig(dataset={dataset!r}, ", 'ExportConfig(formats=("folders", "card"), dataset={dataset!r}, '
    )
    code = code.format(root=str(ROOT), target="moved images", dataset=dataset, output=output)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    run_export(ExportConfig(**second, output=output))
    assert tree(output) == tree(expected)
    assert not [n for n in os.listdir(output) if n.startswith(".staging-")]
