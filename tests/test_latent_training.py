"""Issue 24's reproduction: latent diffusion on a VQ autoencoder, started from the folder holding the
inputs with relative paths (``model.autoencoder: vq``), through the real job on Ray Train; and the same
with ``s3://`` paths and the S3 settings only in ``storage.*`` (no ``AWS_*`` variable anywhere)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tiny_assets import make_tiny_vq
from train_tables import write_face_table
from uiface_ray.model.config import ModelConfig

ROOT = Path(__file__).resolve().parents[1]


def latent_config(autoencoder: str, table: str, output: str) -> dict:
    """cfg.yaml of the issue: a tiny latent model, a few steps on one Ray Train worker."""
    return {
        "model": ModelConfig.tiny(space="latent", autoencoder=autoencoder).model_dump(mode="json"),
        "data": {"table": table},
        "output": output,
        "grid": {"num_identities": 2, "num_seeds": 2, "num_inference_steps": 2},
        "max_steps": 4,
        "batch_size": 8,
        "checkpoint_every": 4,
        "log_every": 2,
        "num_workers": 1,
        "ray": {"num_cpus": 2},
    }


def run_job(cwd: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    """``python <repo>/jobs/train_diffusion.py --config cfg.yaml`` from ``cwd``, Ray's temp folder short."""
    tmp = tempfile.mkdtemp(prefix="ub", dir="/tmp")  # short: Ray's socket paths
    env = {**env, "TMPDIR": tmp, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    try:
        return subprocess.run(
            [sys.executable, str(ROOT / "jobs" / "train_diffusion.py"), "--config", "cfg.yaml", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_latent_training_with_a_relative_autoencoder(lfw_dir, tmp_path):
    """The issue's command exactly: relative ``vq``, ``faces.parquet`` and ``run1``, run from their folder."""
    from uiface_ray.model.bundle import load_model

    work = tmp_path / "work"
    work.mkdir()
    make_tiny_vq(work / "vq")
    write_face_table(str(work / "faces.parquet"), lfw_dir, num_people=4, per_person=2)
    (work / "cfg.yaml").write_text(yaml.safe_dump(latent_config("vq", "faces.parquet", "run1")))
    run = run_job(work, dict(os.environ))
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert "Traceback" not in run.stderr, run.stderr[-4000:]
    latest = json.loads((work / "run1" / "latest.json").read_text())
    assert latest["step"] == 4
    model = load_model(latest["model"])
    assert model.autoencoder is not None and model.latent_shape() == (3, 8, 8)
    assert model.info["model_config"]["autoencoder"] == str(work / "vq")  # made absolute at the driver


@pytest.mark.slow
def test_latent_training_on_s3_with_credentials_only_in_the_config(lfw_dir, s3_server, s3_bucket, tmp_path):
    """Autoencoder, table and run folder on S3; endpoint and keys only in ``storage.*``: the Ray Train
    worker loads the autoencoder with them."""
    from uiface_ray.model.bundle import load_model
    from uiface_ray.storage.fs import read_bytes, upload_dir

    make_tiny_vq(tmp_path / "vq")
    upload_dir(str(tmp_path / "vq"), f"{s3_bucket}/vq")
    write_face_table(f"{s3_bucket}/faces.parquet", lfw_dir, num_people=4, per_person=2)
    config = latent_config(f"{s3_bucket}/vq", f"{s3_bucket}/faces.parquet", f"{s3_bucket}/run1")
    config["storage"] = {
        "endpoint_url": s3_server,
        "region": "us-east-1",
        "access_key_id": "cfg-key",
        "secret_access_key": "cfg-secret",
    }
    work = tmp_path / "work"
    work.mkdir()
    (work / "cfg.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = str(tmp_path / "home")  # no ~/.aws either
    run = run_job(work, env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    latest = json.loads(read_bytes(f"{s3_bucket}/run1/latest.json"))
    assert latest["step"] == 4
    assert load_model(latest["model"]).latent_shape() == (3, 8, 8)
