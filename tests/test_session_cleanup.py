"""An embedded Ray session leaves nothing in the temporary folder but Ray's own session logs.

Ray's dashboard starts its modules through a multiprocessing forkserver whose socket sits in a
``pymp-*`` folder that only a normal exit removes; ``ray.shutdown`` kills the dashboard, so every
job left one such folder behind until ``ray_session`` learned to remove it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SESSION = """
import os, sys
sys.path.insert(0, {root!r})
from uiface_ray.config import RayConfig
from uiface_ray.runtime.session import ray_session
import ray

with ray_session(RayConfig(num_cpus=1)):
    assert ray.get(ray.put(41)) + 1 == 42
    during = sorted(p for p in os.listdir({tmp!r}) if p.startswith("pymp-"))
    print("during", during, flush=True)
"""


def test_an_embedded_session_leaves_no_forkserver_folder():
    tmp = tempfile.mkdtemp(prefix="uq", dir="/tmp")  # short: Ray's socket paths live under it
    try:
        env = {**os.environ, "TMPDIR": tmp, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        proc = subprocess.run(
            [sys.executable, "-c", SESSION.format(root=str(ROOT), tmp=tmp)],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        # while Ray ran, its dashboard's forkserver had a folder here (else this test proves nothing)
        assert "during ['pymp-" in proc.stdout, proc.stdout
        left = sorted(p for p in os.listdir(tmp) if p.startswith("pymp-"))
        assert left == [], f"the session left {left} in the temporary folder"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
