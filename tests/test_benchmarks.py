"""Benchmarks that cannot rot (issue 34 item 8): every ``benchmarks/*.py`` runs here with ``--quick``
(seconds, tiny sizes, the real code path), in its own process from a scratch folder, as a user runs it.

:data:`RUNS` names the arguments of each; a benchmark missing from it (a new one) fails
:func:`test_every_benchmark_is_run`, so none slips by.  ``RAY_ADDRESS`` points at an address where
nothing answers: a benchmark that attached to whatever cluster runs on the machine (a plain
``ray.init()``) fails here, one that starts its own private Ray (``ray_session`` with
``address: local``, as the jobs do) does not.  A benchmark that needs the shared LFW faces or dlib
and does not find them exits 77 (``tests/bench_inputs.py``): a skip, a failure under ``CI=true``.
Each benchmark's time is printed with the load average (``-s`` shows them).
"""

from __future__ import annotations

import getpass
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
SKIP = 77  # tests/bench_inputs.SKIP


def _train_local(tmp: Path) -> list[str]:
    """benchmarks/train_local.py runs a train_diffusion config: the demo config, 2 steps, a random table."""
    sys.path.insert(0, str(ROOT / "tests"))
    from bench_inputs import random_face_table

    table = random_face_table(str(tmp / "faces.parquet"), num_people=3, per_person=3)
    return [
        "--config",
        str(ROOT / "configs" / "train_diffusion_demo32.yaml"),
        f"--data.table={table}",
        "--data.min_images_per_identity=2",
        f"--output={tmp / 'run'}",
        "--max_steps=2",
        "--batch_size=4",
        "--log_every=1",
        "--checkpoint_every=2",
        "--grid.num_identities=0",
        "--torch_threads=1",
    ]


#: The command line of each benchmark here: a list, or a function of a scratch folder that builds
#: the inputs and returns one.  A name whose file is not in this tree (another branch's) is skipped.
RUNS: dict[str, list[str] | Callable[[Path], list[str]]] = {
    "bench_official.py": ["--quick", "--tiny"],
    "bench_sampler.py": ["--quick"],
    "bench_scale.py": ["--quick"],
    "bench_synthesis.py": ["--quick"],
    "bench_train_diffusion.py": ["--quick"],
    "context_gain.py": ["--quick"],
    "dlib_mean_reference.py": ["--quick"],
    "fr_calibration.py": ["--quick"],
    "perf.py": ["--quick"],
    "plot_training.py": ["--quick"],
    "precision_cost.py": ["--quick"],
    "precision_train_curves.py": ["--quick", "--threads", "1"],
    "train_convergence.py": ["--quick"],
    "stream_shuffle_quality.py": ["--quick"],
    "train_demo_eval.py": ["--quick"],
    "train_local.py": _train_local,
}

#: Run with ``--quick`` by another slow test (kept out of this one's time); checked below.
ELSEWHERE = {
    "device_check.py": "tests/test_device_check.py",
    "bench_train_memory.py": "tests/test_bench_train_memory.py",  # its old path needs the git history
}


def _benchmarks() -> list[str]:
    return sorted(p.name for p in BENCH.glob("*.py"))


def test_every_benchmark_is_run():
    """A benchmark this test does not run is a failure: add it to RUNS with its --quick arguments."""
    missing = [name for name in _benchmarks() if name not in RUNS and name not in ELSEWHERE]
    assert missing == [], f"benchmarks not run by tests/test_benchmarks.py: {missing}"
    for name, test in ELSEWHERE.items():
        text = (ROOT / test).read_text()
        assert name.replace(".py", "") in text and "--quick" in text, (name, test)
    for name, argv in RUNS.items():
        if (BENCH / name).is_file() and argv != _train_local:
            assert "--quick" in (BENCH / name).read_text(), f"{name} has no --quick mode"


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (the benchmark, not Ray's own daemons)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _load() -> str:
    return "load " + "/".join(f"{x:.1f}" for x in os.getloadavg())


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNS))
def test_benchmark_quick(name, tmp_path):
    if not (BENCH / name).is_file():
        pytest.skip(f"benchmarks/{name} is not in this tree (another branch's)")
    argv = RUNS[name]
    argv = argv(tmp_path) if callable(argv) else list(argv)
    env = {
        **{k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"},  # as a user runs it
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),  # where the benchmark should put torch's cache instead
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "RAY_ADDRESS": "127.0.0.1:9",  # nothing answers there: a benchmark must start its own Ray
    }
    torch_tmp = Path(tempfile.gettempdir()) / f"torchinductor_{getpass.getuser()}"
    torch_tmp_before = torch_tmp.exists()
    work = tmp_path / "cwd"
    work.mkdir()
    before, start, cpu = _load(), time.perf_counter(), _children_cpu()
    proc = subprocess.run(
        [sys.executable, str(BENCH / name), *argv],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    print(f"\n[benchmark] {name} {' '.join(argv)[:60]}: {seconds:.1f} s, {cpu:.1f} CPU s ({before}; after {_load()})")
    if proc.returncode == SKIP:
        reason = proc.stdout.strip().splitlines()[-1]
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} cannot run under CI: {reason}")
        pytest.skip(f"{name}: {reason}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.strip(), f"{name} printed nothing"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert sorted(os.listdir(work)) == [], f"{name} wrote into the folder it was run from"
    assert torch_tmp_before or not torch_tmp.exists(), f"{name} left {torch_tmp} (torch's compile cache)"
