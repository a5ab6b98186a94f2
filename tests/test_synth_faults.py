"""Fault injection (slow): an actor killed by ray.kill while it holds a shard, and the driver (a
subprocess with its own embedded Ray) killed halfway then rerun: nothing lost, nothing duplicated,
shard bytes equal to a clean run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml

from fault_seam import synthesize_with_faults
from tiny_assets import make_tiny_synthesis_inputs
from uiface_ray import storage
from uiface_ray.runtime.session import _remove_dead_sessions
from uiface_ray.synth.faults import FaultInjectionConfig
from uiface_ray.synth.journal import read_committed
from uiface_ray.synth.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]


def _config(model, identities, output, **extra) -> dict:
    cfg = dict(
        model=model,
        identities=identities,
        output=output,
        images_per_identity=3,
        identities_per_shard=1,
        seed=5,
        batch_size=4,
        progress_every_s=0.0,
        sampler={"mode": "uiface", "num_inference_steps": 4},
        actors={"num_actors": 2, "use_gpu": False, "max_restarts": 0},
    )
    cfg.update(extra)
    return cfg


def _group_alive(pgid: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.split()[1] == str(pgid)]


def _shards(url: str) -> dict[str, bytes]:
    return {u.rsplit("/", 1)[-1]: storage.read_bytes(u) for u in storage.list_files(storage.join(url, "shards"))}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_tiny_synthesis_inputs(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def clean(ray_local, inputs, tmp_path_factory) -> dict[str, bytes]:
    from uiface_ray.runtime.synthesis import run_synthesis
    from uiface_ray.synth.config import SynthesisConfig

    out = str(tmp_path_factory.mktemp("clean") / "ds")
    assert run_synthesis(SynthesisConfig.model_validate(_config(*inputs, out))).shards_run == 4
    return _shards(out)


@pytest.mark.slow
def test_actor_killed_while_holding_a_shard(ray_local, inputs, clean, tmp_path):
    from uiface_ray.runtime.synthesis import run_synthesis
    from uiface_ray.synth.config import SynthesisConfig

    markers, out = tmp_path / "markers", str(tmp_path / "ds")
    cfg = SynthesisConfig.model_validate(_config(*inputs, out))
    faults = FaultInjectionConfig(hold_shard=1, hold_seconds=300, marker_dir=str(markers))
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(result=run_synthesis(cfg, faults=faults)), daemon=True)
    thread.start()
    marker = markers / "holding-1"
    deadline = time.time() + 180
    while not marker.exists():
        assert thread.is_alive() and time.time() < deadline, "shard 1 was never held"
        time.sleep(0.2)
    assert "shard-00001.parquet" not in _shards(out)
    ray_local.kill(ray_local.get_actor(marker.read_text()))  # Ray's own kill (no restart)
    thread.join(timeout=180)
    assert not thread.is_alive()
    result = box["result"]
    assert result.shard_retries >= 1 and result.num_rows == 12 and read_manifest(out).complete
    assert _shards(out) == clean


def _driver_pid(folder: Path) -> int | None:
    try:
        return int((folder / "driver.pid").read_text())
    except (OSError, ValueError):
        return None


@pytest.mark.slow
def test_driver_killed_halfway_then_rerun(ray_local, inputs, clean, tmp_path):
    from uiface_ray.runtime.synthesis import run_synthesis
    from uiface_ray.synth.config import SynthesisConfig

    model, identities = inputs
    out, markers = tmp_path / "ds", tmp_path / "markers"
    cfg_file = tmp_path / "synth.yaml"
    cfg_file.write_text(yaml.safe_dump(_config(model, identities, str(out), ray={"address": "local"})))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    hold = {"hold_shard": 3, "hold_seconds": 600, "marker_dir": str(markers)}
    log = (tmp_path / "driver.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, *synthesize_with_faults.args(hold, ["--config", str(cfg_file)])],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        while True:
            manifest = read_committed(str(out)) if (out / "manifest.json").exists() else None  # + journal
            if manifest is not None and len(manifest.shards) == 3 and (markers / "holding-3").exists():
                break
            assert proc.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            assert time.time() < deadline, "the driver never got 3 shards done"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything in its process group
        proc.wait(timeout=60)
    deadline = time.time() + 60
    while _group_alive(proc.pid) and time.time() < deadline:
        time.sleep(1)
    assert not _group_alive(proc.pid)
    # nothing ran the killed driver's shutdown, so its private session folder is still there; the next
    # embedded session removes it (this test resumes in-process, on the test session's own Ray)
    left = [f for f in Path(tempfile.gettempdir()).glob("ray-*") if _driver_pid(f) == proc.pid]
    assert len(left) == 1, left
    _remove_dead_sessions(Path(tempfile.gettempdir()))
    assert not left[0].exists()
    assert not read_manifest(str(out)).complete  # the manifest file: a checkpoint, not a finished dataset
    manifest = read_committed(str(out))
    assert not manifest.complete and len(manifest.shards) == 3
    assert "shard-00003.parquet" not in _shards(str(out))

    resumed = run_synthesis(SynthesisConfig.model_validate(_config(model, identities, str(out))))
    assert resumed.shards_run == 1 and resumed.num_rows == 12
    assert _shards(str(out)) == clean
    assert json.loads((out / "manifest.json").read_text())["complete"] is True
