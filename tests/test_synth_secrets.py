"""S3 configured only through the jobs' ``storage.*`` section (no ``AWS_*`` variable anywhere):
make_identities and synthesize run end to end through their own embedded Ray on the loopback S3
server, and the secret key appears in no file under Ray's temp folder, in no job output and in
nothing the jobs print (issue 15, cases 1 and 9)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tiny_assets import make_tiny_synthesis_inputs
from uiface_ray import storage
from uiface_ray.synth.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]
SECRET = "uifaceScaleSecret0123456789abcdefXYZ"
KEY_ID = "AKIAUIFACESCALETEST"


def _run(job: str, cfg: dict, tmp_path: Path, env: dict) -> subprocess.CompletedProcess:
    cfg_file = tmp_path / f"{job}.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    return subprocess.run(
        [sys.executable, f"jobs/{job}.py", "--config", str(cfg_file)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=600,
    )


def _files_holding(root: Path, needle: bytes) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle in path.read_bytes():
                    found.append(str(path))
            except OSError:
                continue
    return found


@pytest.mark.slow
def test_s3_through_storage_config_only_and_no_secret_leaks(s3_bucket, s3_server, tmp_path):
    pytest.importorskip("dlib")
    model, identities = make_tiny_synthesis_inputs(tmp_path / "tiny", num_identities=3)
    from uiface_ray.storage.fs import upload_dir

    upload_dir(model, storage.join(s3_bucket, "model"))
    st = {"endpoint_url": s3_server, "region": "us-east-1", "access_key_id": KEY_ID, "secret_access_key": SECRET}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "RAY_ADDRESS"}
    env["HOME"] = str(tmp_path / "home")  # no ~/.aws either
    ray_tmp = Path(tempfile.mkdtemp(prefix="uf-", dir="/tmp"))  # short: Ray's socket paths must fit
    env["RAY_TMPDIR"] = str(ray_tmp)
    try:
        ids_url = storage.join(s3_bucket, "ids", "identities.parquet")
        made = _run(
            "make_identities",
            {
                "model": storage.join(s3_bucket, "model"),
                "output": ids_url,
                "num_identities": 2,
                "similarity_threshold": 0.999,
                "candidates_per_task": 2,
                "max_candidates": 8,
                "num_inference_steps": 2,
                "encoder": {"kind": "dlib"},
                "actors": {"num_actors": 1, "use_gpu": False},
                "ray": {"address": "local", "num_cpus": 2},
                "storage": st,
            },
            tmp_path,
            env,
        )
        assert made.returncode == 0, made.stderr.decode()[-3000:]
        out = storage.join(s3_bucket, "synthetic")
        synth = _run(
            "synthesize",
            {
                "model": storage.join(s3_bucket, "model"),
                "identities": ids_url,
                "output": out,
                "images_per_identity": 2,
                "identities_per_shard": 1,
                "batch_size": 2,
                "progress_every_s": 0.0,
                "sampler": {"mode": "uiface", "num_inference_steps": 2},
                "actors": {"num_actors": 2, "use_gpu": False, "max_restarts": 0},
                "ray": {"address": "local", "num_cpus": 2},
                "storage": st,
            },
            tmp_path,
            env,
        )
        assert synth.returncode == 0, synth.stderr.decode()[-3000:]
        manifest = read_manifest(out)
        assert manifest.complete and manifest.num_rows == 4
        assert "Traceback" not in synth.stderr.decode() and "Traceback" not in made.stderr.decode()
        # the secret is nowhere: Ray's files, what the jobs printed, what they wrote
        assert list(ray_tmp.rglob("session_*")), "the jobs' Ray did not use RAY_TMPDIR"
        assert _files_holding(ray_tmp, SECRET.encode()) == []
        for proc in (made, synth):
            assert SECRET.encode() not in proc.stdout + proc.stderr
        folders = [storage.join(s3_bucket, "ids"), out, storage.join(out, "shards")]
        written = [storage.join(f, name) for f in folders for name in storage.list_file_info(f)]
        names = sorted(u.rsplit("/", 1)[1] for u in written)  # no journal, no lease left
        assert names == sorted(
            ["identities.parquet", "identities.summary.json", "manifest.json", "preview.png"]
            + ["shard-00000.parquet", "shard-00001.parquet"]
        ), names
        assert [u for u in written if SECRET.encode() in storage.read_bytes(u)] == []
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
