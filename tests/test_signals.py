"""SIGTERM (``ray job stop``, batch schedulers) and SIGINT (Ctrl-C) to a running job: the job's own
line, exit 143/130, no traceback and no Ray stack dump; the rerun finishes byte-identical to a clean
run (issue 27 item 2, issue 26 item 6).

Each job runs as a process with its own embedded Ray, as a user runs it; the signal goes to the
driver's pid after its first shard landed, while the fault hook holds another shard in an actor.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fault_seam import synthesize_with_faults
from tiny_assets import make_tiny_synthesis_inputs
from uiface_ray import storage

ROOT = Path(__file__).resolve().parents[1]
LINES = {
    signal.SIGTERM: (143, "terminated: stopped; rerun the same command to resume"),
    signal.SIGINT: (130, "interrupted: stopped; rerun the same command to resume"),
}


def synth_cmd(model: str, identities: str, out: Path, *extra: str) -> list[str]:
    """``jobs/synthesize.py`` on the tiny inputs: 2 CPU actors, one identity per shard; ``extra`` overrides."""
    return [
        sys.executable,
        "jobs/synthesize.py",
        f"--model={model}",
        f"--identities={identities}",
        f"--output={out}",
        "--images_per_identity=2",
        "--identities_per_shard=1",
        "--seed=3",
        "--batch_size=2",
        "--sampler.num_inference_steps=4",
        "--actors.num_actors=2",
        "--actors.use_gpu=false",
        "--ray.num_cpus=2",
        "--progress_every_s=1",
        *extra,
    ]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PYTHONPATH=str(ROOT), RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", **extra)
    return env


def _shards(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").glob("*.parquet"))}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_tiny_synthesis_inputs(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def clean(inputs, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("clean") / "ds"
    done = subprocess.run(synth_cmd(*inputs, out), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    shards = _shards(out)
    assert len(shards) == 4
    return shards


def stop_mid_run(cmd: list[str], out: Path, markers: Path, sig: int, log: Path) -> tuple[int, str]:
    """Run ``cmd`` (a :func:`synth_cmd`) through the tests' fault launcher holding shard 1; once
    shard 0 has landed, send ``sig`` to the driver's pid.  Returns (exit code, stderr+stdout)."""
    hold = {"hold_shard": 1, "hold_seconds": 600, "marker_dir": str(markers)}
    assert cmd[1] == "jobs/synthesize.py", cmd
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [cmd[0], *synthesize_with_faults.args(hold, cmd[2:])],
            cwd=ROOT,
            env=_env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.time() + 400
            while not ((markers / "holding-1").exists() and (out / "shards" / "shard-00000.parquet").exists()):
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.time() < deadline, "shard 0 never landed while shard 1 was held"
                time.sleep(0.3)
            os.kill(proc.pid, sig)
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return code, log.read_text(errors="replace")


def _check_stopped(code: int, text: str, sig: int) -> None:
    want_code, want_line = LINES[sig]
    assert code == want_code, text[-3000:]
    assert [line for line in text.splitlines() if line.strip()][-1] == want_line, text[-3000:]
    assert "Traceback" not in text and "received at time" not in text, text[-3000:]


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)], ids=["SIGTERM", "SIGINT"]
)
def test_signal_mid_synthesis_ends_with_our_line_and_the_rerun_is_identical(inputs, clean, tmp_path, sig):
    out = tmp_path / "ds"
    code, text = stop_mid_run(synth_cmd(*inputs, out), out, tmp_path / "markers", sig, tmp_path / "driver.log")
    _check_stopped(code, text, sig)
    assert "shard-00001.parquet" not in _shards(out)
    rerun = subprocess.run(synth_cmd(*inputs, out), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _shards(out) == clean
    assert json.loads(storage.read_bytes(str(out / "manifest.json")))["complete"] is True


def test_a_signal_inside_an_import_waits_for_the_import(tmp_path):
    """SIGTERM raised inside ``import torch`` aborted the pipeline (exit -6): a signal that lands in an
    import is asked again once the import is done, then ends the job as usual."""
    (tmp_path / "slow_module.py").write_text(
        "import os, signal, time, pathlib\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(1.0)\n"
        f"pathlib.Path({str(tmp_path / 'imported')!r}).write_text('done')\n"
    )
    job = (
        "import sys, time\n"
        "from uiface_ray.config import Config\n"
        "from uiface_ray.runtime.job import run_job\n"
        "def body(cfg):\n"
        "    import slow_module\n"
        "    time.sleep(30)\n"
        "sys.exit(run_job(Config, body, []))\n"
    )
    env = _env()
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{tmp_path}"
    run = subprocess.run([sys.executable, "-c", job], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 143, run.stderr[-2000:]
    assert run.stderr.strip().splitlines()[-1] == LINES[signal.SIGTERM][1]
    assert (tmp_path / "imported").read_text() == "done"  # the import ran to its end
