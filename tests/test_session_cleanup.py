"""An embedded Ray session leaves nothing at all in the temporary folder.

Ray's dashboard starts its modules through a multiprocessing forkserver whose socket sits in a
``pymp-*`` folder that only a normal exit removes, and ``ray.shutdown`` kills the dashboard; Ray's
own session folder stayed behind too.  The embedded session now points its processes' ``TMPDIR``
and Ray's temp root into one private folder and removes that folder after shutting down."""

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
from pathlib import Path
sys.path.insert(0, {root!r})
from uiface_ray.config import RayConfig
from uiface_ray.runtime.session import ray_session
import ray

with ray_session(RayConfig(num_cpus=1)):
    assert ray.get(ray.put(41)) + 1 == 42
    during = sorted(p.name for p in Path({tmp!r}).rglob("pymp-*"))
    print("during", during, flush=True)
"""


def test_an_embedded_session_leaves_nothing_in_the_temporary_folder():
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
        # while Ray ran, its dashboard's forkserver had a folder in there (else this test proves nothing)
        assert "during ['pymp-" in proc.stdout, proc.stdout
        left = sorted(os.listdir(tmp))
        assert left == [], f"the session left {left} in the temporary folder"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
