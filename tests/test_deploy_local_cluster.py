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

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
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


def _wait_until_started(proc: subprocess.Popen, url: str, log: Path, timeout_s: float = 240) -> None:
    """Until `ray start` says the runtime is up and the dashboard answers."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if "Ray runtime started" in log.read_text(errors="replace"):
            try:
                with urllib.request.urlopen(f"{url}/api/version", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
        time.sleep(1)
    raise RuntimeError(f"head not up after {timeout_s} s:\n{log.read_text()[-3000:]}")


def node_args(name: str, num_cpus: int) -> tuple[list[str], str, tuple[int, int, int]]:
    """``ray start --block`` arguments shared by a head and a worker node on loopback, each port
    free and outside the workers' range; returns (arguments, temp dir, (gcs, dashboard, client)
    ports for a head)."""
    lo, hi = _free_port_range()
    ports = [port for port in _free_ports(20) if not lo <= port <= hi][:9]  # none inside the workers' range
    agent, agent_grpc, metrics, runtime_env, node_manager, object_manager, gcs, dashboard, client = ports
    temp_dir = tempfile.mkdtemp(prefix=f"ray{name[0]}-", dir="/tmp")  # short: socket paths have a length limit
    args = [
        str(RAY),
        "start",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={runtime_env}",
        f"--node-manager-port={node_manager}",
        f"--object-manager-port={object_manager}",
        f"--min-worker-port={lo}",
        f"--max-worker-port={hi}",
        f"--num-cpus={num_cpus}",
        "--num-gpus=0",
        "--object-store-memory=100000000",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    return args, temp_dir, (gcs, dashboard, client)


def node_env(temp_dir: str) -> dict[str, str]:
    """The environment of a node of :func:`node_args`: its processes' temporary files (the dashboard's
    multiprocessing forkserver makes a ``pymp-*`` folder that only a normal exit removes) go into
    the node's temp dir, which the test removes."""
    return {**_env(), "TMPDIR": temp_dir}


def head_args(gcs: int, dashboard: int, client: int) -> list[str]:
    """What makes a node of :func:`node_args` a head with its dashboard on loopback."""
    return [
        "--head",
        f"--port={gcs}",
        f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={client}",
        "--dashboard-host=127.0.0.1",
        "--include-dashboard=true",
    ]


def _launch_head(tmp_path: Path, attempt: int) -> tuple[subprocess.Popen, str, str, Path]:
    cmd, temp_dir, (gcs, dashboard, client) = node_args("head", 2)
    cmd += head_args(gcs, dashboard, client)
    log = tmp_path / f"ray-head-{attempt}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=node_env(temp_dir), cwd=tmp_path, start_new_session=True
        )
    return proc, f"http://127.0.0.1:{dashboard}", temp_dir, log


@pytest.fixture()
def ray_head(tmp_path):
    """A head node in its own session; yields the job-server URL. Ray gives its raylet a fixed 30 s
    to register, which a loaded 2-core machine can miss, so a failed start is retried (fresh ports)."""
    errors = []
    for attempt in range(3):
        proc, url, temp_dir, log = _launch_head(tmp_path, attempt)
        try:
            _wait_until_started(proc, url, log)
        except RuntimeError as err:
            errors.append(str(err))
            _stop(proc)
            shutil.rmtree(temp_dir, ignore_errors=True)
            continue
        try:
            yield url
        finally:
            _stop(proc)
            shutil.rmtree(temp_dir, ignore_errors=True)
        return
    raise RuntimeError("the Ray head did not start in 3 tries:\n" + "\n---\n".join(errors))


def _get_json(url: str, attempts: int = 5) -> dict | None:
    """GET a job-server URL; None on 404; transient connection errors are retried."""
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            error = err
        except OSError as err:  # connection reset / refused under load
            error = err
        time.sleep(2 * (attempt + 1))
    raise RuntimeError(f"job server kept failing at {url}: {error}")


def _job_status(url: str, job_id: str, first_error: subprocess.CompletedProcess) -> str:
    info = _get_json(f"{url}/api/jobs/{job_id}")
    if info is None:
        raise AssertionError(
            f"job {job_id} was never created:\n{first_error.stdout[-3000:]}{first_error.stderr[-3000:]}"
        )
    return info["status"]


def _job_logs(url: str, job_id: str) -> str:
    return (_get_json(f"{url}/api/jobs/{job_id}/logs") or {}).get("logs", "")


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

    from uiface_ray.cli import load_config
    from uiface_ray.synth.config import SynthesisConfig
    from uiface_ray.synth.dataset import open_dataset

    model_url, identities_url = make_tiny_synthesis_inputs(tmp_path / "inputs", num_identities=NUM_IDENTITIES)
    out = tmp_path / "synthetic"
    job_id = f"uiface-deploy-test-{os.getpid()}"
    cmd = [
        str(RAY),
        "job",
        "submit",
        "--address",
        ray_head,
        "--submission-id",
        job_id,
        "--no-wait",
        # from the repository root with relative paths, exactly as the README shows
        "--runtime-env",
        "deploy/runtime_env.yaml",
        "--working-dir",
        ".",
        "--",
        "python",
        "jobs/synthesize.py",
        "--config",
        "configs/synthesize_tiny.yaml",
        f"--model={model_url}",
        f"--identities={identities_url}",
        f"--output={out}",
    ]
    submitted = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    # On a loaded machine the CLI's connection can drop after the server took the job; the job's
    # own status then decides (GET /api/jobs/<id>), so a job is never submitted twice.
    status = _job_status(ray_head, job_id, first_error=submitted)
    deadline = time.time() + 600
    while status not in ("SUCCEEDED", "FAILED", "STOPPED") and time.time() < deadline:
        time.sleep(3)
        status = _job_status(ray_head, job_id, first_error=submitted)
    logs = _job_logs(ray_head, job_id)
    assert status == "SUCCEEDED", f"job {job_id} ended {status}:\n{logs[-6000:]}"
    cfg = load_config(SynthesisConfig, TINY)
    done_line = next((l for l in logs.splitlines() if "[synthesize] done:" in l), None)
    assert done_line and f"done: {NUM_IDENTITIES * cfg.images_per_identity} images" in done_line, logs[-6000:]
    print(done_line)  # the job's own count and rate (pytest -s shows it)

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
