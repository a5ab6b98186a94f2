"""A real Ray cluster on this machine, used the way docs/DEPLOY.md uses the AWS one.

`ray start --head --block` runs on 127.0.0.1 with free ports, its own temp dir and 2 CPUs, in its
own process group; `ray job submit` uploads this checkout (deploy/runtime_env.yaml's excludes plus
.gitignore) and runs `python jobs/synthesize.py --config configs/synthesize_tiny.yaml` against it;
the test then checks the dataset is complete: the manifest lists every planned shard, the files on
disk are exactly those shards, hashes match and every (identity, image) pair is there once. The head
is stopped by SIGINT to its process group, never by `ray stop` (which would end every Ray process
on the machine). Head and client both run with RAY_AUTH_MODE=disabled.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from deploy_pins import ROOT

pytestmark = pytest.mark.slow

RAY = Path(sys.executable).with_name("ray")
JOB = ROOT / "jobs" / "synthesize.py"
TINY = ROOT / "configs" / "synthesize_tiny.yaml"
NUM_IDENTITIES = 4


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _free_port_range(size: int = 40) -> tuple[int, int]:
    """A run of ``size`` consecutive loopback ports that all bind right now."""
    rng = random.Random()
    for _ in range(50):
        base = rng.randrange(20000, 60000 - size)
        socks = []
        try:
            for port in range(base, base + size):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base, base + size - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free range of worker ports")


def _env() -> dict[str, str]:
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    # The job's `python` is the head's: put this environment's interpreter first, as the cluster
    # file does with ~/venv/bin.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT to the head's own process group, then harder signals if it lingers."""
    for sig, wait_s in ((signal.SIGINT, 60), (signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        # `ray start --block` is gone; make sure nothing it spawned is left in its group.
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(2)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wait_for_dashboard(proc: subprocess.Popen, url: str, log: Path, timeout_s: float = 240) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"dashboard at {url} not up after {timeout_s} s:\n{log.read_text()[-4000:]}")


@pytest.fixture()
def ray_head(tmp_path):
    """A head node in its own session; yields the job-server URL."""
    gcs, dashboard, client, agent, agent_grpc, metrics, runtime_env, node_manager, object_manager = _free_ports(9)
    lo, hi = _free_port_range()
    temp_dir = tempfile.mkdtemp(prefix="rayh-", dir="/tmp")  # short: Ray's socket paths have a length limit
    log = tmp_path / "ray-head.log"
    cmd = [
        str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
        f"--port={gcs}", f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
        f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}",
        f"--node-manager-port={node_manager}", f"--object-manager-port={object_manager}",
        f"--min-worker-port={lo}", f"--max-worker-port={hi}",
        "--num-cpus=2", "--num-gpus=0", "--object-store-memory=100000000",
        "--dashboard-host=127.0.0.1", "--include-dashboard=true", f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_env(), cwd=tmp_path,
                                start_new_session=True)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        _wait_for_dashboard(proc, url, log)
        yield url
    finally:
        _stop(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _need_job_files() -> None:
    missing = [str(p.relative_to(ROOT)) for p in (JOB, TINY) if not p.is_file()]
    if missing:
        msg = f"{', '.join(missing)} not in this checkout (jobs/synthesize.py lands separately)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)


def test_job_submit_synthesizes_a_complete_dataset(ray_head, tmp_path):
    _need_job_files()
    from tiny_assets import make_tiny_synthesis_inputs

    model_url, identities_url = make_tiny_synthesis_inputs(tmp_path / "inputs", num_identities=NUM_IDENTITIES)
    out = tmp_path / "synthetic"
    cmd = [
        str(RAY), "job", "submit", "--address", ray_head,
        "--runtime-env", str(ROOT / "deploy" / "runtime_env.yaml"), "--working-dir", str(ROOT),
        "--", "python", "jobs/synthesize.py", "--config", "configs/synthesize_tiny.yaml",
        f"--model={model_url}", f"--identities={identities_url}", f"--output={out}",
    ]
    done = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    logs = done.stdout[-6000:] + done.stderr[-3000:]
    assert done.returncode == 0, f"ray job submit failed ({done.returncode}):\n{logs}"
    assert "succeeded" in logs.lower(), logs

    from uiface_ray.config import load_config
    from uiface_ray.synth.config import SynthesisConfig
    from uiface_ray.synth.dataset import open_dataset

    cfg = load_config(SynthesisConfig, TINY)
    dataset = open_dataset(str(out))  # refuses an incomplete manifest
    manifest = dataset.manifest
    expected_shards = -(-NUM_IDENTITIES // cfg.identities_per_shard)
    assert manifest.complete and manifest.num_shards == expected_shards == len(manifest.shards)
    assert manifest.num_rows == NUM_IDENTITIES * cfg.images_per_identity
    on_disk = sorted(p.name for p in (out / "shards").iterdir())
    assert on_disk == sorted(s.name for s in manifest.shards), "stray or missing shard files"
    pairs = []
    for rows in dataset.iter_shards(verify=True):  # hashes and row counts against the manifest
        pairs += list(zip(rows.identity_id.tolist(), rows.image_index.tolist()))
    assert sorted(pairs) == [(i, k) for i in range(NUM_IDENTITIES) for k in range(cfg.images_per_identity)]
