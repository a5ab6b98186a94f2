"""Faults met while diffusion training streams (issue 32 item 5), through the real job on Ray Train: a
table file truncated in the middle of a run ends it with one ``error:`` line naming the file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from train_tables import write_face_table_folder
from uiface_ray.model.config import ModelConfig

ROOT = Path(__file__).resolve().parents[1]


def streaming_config(table: str, output: str) -> dict:
    """A tiny pixel model; windows of 16 rows: two loader units an epoch."""
    return {
        "model": ModelConfig.tiny().model_dump(mode="json"),
        "data": {"table": table},
        "stream": {"shuffle_window": 16, "piece_rows": 4},
        "output": output,
        "grid": {"num_identities": 0},
        "max_steps": 100000,
        "batch_size": 4,
        "checkpoint_every": 100000,
        "log_every": 1,
        "num_workers": 1,
        "ray": {"num_cpus": 2},
    }


@pytest.mark.slow
def test_a_table_file_truncated_mid_run_is_one_error_line_naming_it(lfw_dir, tmp_path):
    table = write_face_table_folder(tmp_path / "faces", lfw_dir, files=2, row_group_rows=4, num_people=8, per_person=4)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(streaming_config(table, str(tmp_path / "run"))))
    victim = Path(table) / "part-001.parquet"
    tmp = tempfile.mkdtemp(prefix="uf", dir="/tmp")  # short: Ray's socket paths
    env = {**os.environ, "TMPDIR": tmp, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [sys.executable, "jobs/train_diffusion.py", "--config", str(tmp_path / "cfg.yaml")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        deadline = time.time() + 600
        for line in proc.stdout:  # the run is streaming: cut the file under it
            lines.append(line)
            if "[train] step 3/" in line:  # a worker's line, behind its "(RayTrainWorker pid=...)" prefix
                victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
                break
            assert time.time() < deadline, "".join(lines)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    text = "".join(lines) + out + err
    assert proc.returncode == 2, text[-4000:]
    errors = [line for line in (out + err).splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(victim) in errors[0], text[-4000:]
    assert err.splitlines()[-1] == errors[0] and "Ray Data" not in errors[0] and "UDF" not in errors[0], errors
    # (Ray Train's controller still logs the failed worker's traceback above it: Ray's log, not ours)
