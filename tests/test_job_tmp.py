"""A job leaves nothing in the temporary folder, not even the compile-cache folder torch makes
(``$TMPDIR/torchinductor_<user>``) when diffusers imports ``torch._dynamo``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

JOB = """
import sys
sys.path.insert(0, {root!r})
from uiface_ray.config import Config
from uiface_ray.runtime.job import run_job


class Settings(Config):
    pass


def body(cfg):
    from diffusers import UNet2DConditionModel  # imports torch._dynamo, which makes the cache folder

    print("imported", UNet2DConditionModel.__name__)


raise SystemExit(run_job(Settings, body, []))
"""


def test_a_job_leaves_no_torch_cache_folder_in_tmp(tmp_path):
    tmp, cache = tmp_path / "tmp", tmp_path / "cache"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "XDG_CACHE_HOME": str(cache)}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    proc = subprocess.run(
        [sys.executable, "-c", JOB.format(root=str(ROOT))], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "imported UNet2DConditionModel" in proc.stdout
    assert sorted(p.name for p in tmp.iterdir()) == []
    assert (cache / "uiface-ray" / "torchinductor").is_dir()


def test_a_cache_folder_the_user_chose_is_kept(tmp_path):
    chosen = tmp_path / "mine"
    env = {**os.environ, "TMPDIR": str(tmp_path), "TORCHINDUCTOR_CACHE_DIR": str(chosen)}
    code = JOB.format(root=str(ROOT)).replace(
        'print("imported"', 'import os; print(os.environ["TORCHINDUCTOR_CACHE_DIR"], "imported"'
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"{chosen} imported")
    assert chosen.is_dir()
