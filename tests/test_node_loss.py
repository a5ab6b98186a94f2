"""A lost node must not end the job (issue 27 item 1): a real two-node Ray cluster on this machine
(a head and a worker node, each with 1 CPU, its own ports and temp folder), synthesis running with
one actor on each node, the worker node's raylet killed by its pid after the first shard landed.
The job finishes by itself, every shard byte-identical to a clean run, as a direct driver
(``RAY_ADDRESS``) and under ``ray job submit``.

Nodes start with ``ray start --block`` in their own process groups and are stopped by signals to
those groups (never ``ray stop``); head, worker and clients all run with RAY_AUTH_MODE=disabled.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from test_deploy_local_cluster import (
    RAY,
    ROOT,
    _env,
    _get_json,
    _job_logs,
    _job_status,
    _stop,
    _wait_until_started,
    head_args,
    node_args,
    node_env,
)
from fault_seam import synthesize_with_faults
from test_signals import synth_cmd
from tiny_assets import descendants, make_tiny_synthesis_inputs

pytestmark = pytest.mark.slow

NUM_IDENTITIES = 6
HOLD = {"hold_shard": 1, "hold_seconds": 45}  # keeps the run going until the worker node is gone


def _synth_args(model: str, identities: str, out: Path) -> list[str]:
    """The job's arguments (without the interpreter and the job file): 6 one-identity shards, 2 actors,
    no restarts."""
    return synth_cmd(model, identities, out, "--actors.max_restarts=0", "--progress_every_s=2")[2:]


def _node(
    tmp_path: Path, name: str, gcs: int | None, extra_env: dict, temp_dir: str | None = None
) -> tuple[subprocess.Popen, str | None, str, int]:
    """``ray start --block`` of a head (``gcs`` None: picks its ports) or a worker node joining ``gcs``;
    1 CPU each, in its own temp dir or in ``temp_dir`` (the head's: as two nodes started on one machine
    without --temp-dir share /tmp/ray).  Returns (process, dashboard URL of a head, temp dir, GCS port)."""
    cmd, own_temp, (gcs_port, dash, client) = node_args(name, 1)
    if temp_dir is None:
        temp_dir = own_temp
    else:
        os.rmdir(own_temp)
        cmd = [f"--temp-dir={temp_dir}" if arg.startswith("--temp-dir=") else arg for arg in cmd]
    url = None
    if gcs is None:
        url = f"http://127.0.0.1:{dash}"
        cmd += head_args(gcs_port, dash, client)
    else:
        cmd.append(f"--address=127.0.0.1:{gcs}")
    log = tmp_path / f"ray-{name}.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            cmd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**node_env(temp_dir), **extra_env},
            cwd=tmp_path,
            start_new_session=True,
        )
    if url:
        try:
            _wait_until_started(proc, url, log)
        except RuntimeError:
            _stop(proc)
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise
        return proc, url, temp_dir, gcs_port
    return proc, None, temp_dir, gcs


def _wait_cpus(gcs: int, cpus: float, worker: subprocess.Popen, timeout_s: float = 240) -> bool:
    """Until the cluster lists ``cpus`` CPUs in total (the worker node has registered); False if
    the worker's ``ray start`` exited first."""
    deadline = time.time() + timeout_s
    out = ""
    while time.time() < deadline:
        if worker.poll() is not None:
            return False
        out = subprocess.run(
            [str(RAY), "status", f"--address=127.0.0.1:{gcs}"], env=_env(), capture_output=True, text=True, timeout=60
        ).stdout
        if f"/{cpus:.1f} CPU" in out:
            return True
        time.sleep(2)
    raise RuntimeError(f"the cluster never reached {cpus} CPUs:\n{out}")


def _raylet_pid(node: subprocess.Popen) -> int:
    """The pid of the raylet among the descendants of a node's ``ray start``."""
    raylets = [pid for pid, args in descendants(node.pid) if os.path.basename(args.split()[0]) == "raylet"]
    assert len(raylets) == 1, f"raylets under the worker node: {raylets}"
    return raylets[0]


def _shards(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").glob("*.parquet"))}


def _kill_worker_after_first_shard(worker: subprocess.Popen, out: Path, running) -> None:
    deadline = time.time() + 400
    while not (out / "shards" / "shard-00000.parquet").exists():
        assert running(), "the job ended before its first shard"
        assert time.time() < deadline, "no shard landed"
        time.sleep(0.3)
    os.kill(_raylet_pid(worker), signal.SIGKILL)


def submit(url: str, job_id: str, args: list[str], faults: dict):
    """``ray job submit`` of ``jobs/synthesize.py <args>`` from this checkout with the tests' fault
    launcher holding ``faults`` (it travels as a py_module beside deploy/runtime_env.yaml's settings);
    returns a function that says whether the job is still pending or running."""
    entry = ["python", "-m", synthesize_with_faults.MODULE, *synthesize_with_faults.args(faults, args)[1:]]
    cmd = [str(RAY), "job", "submit", "--address", url, "--submission-id", job_id, "--no-wait",
           "--runtime-env-json", synthesize_with_faults.submit_runtime_env(), "--working-dir", ".", "--", *entry]  # fmt: skip
    submitted = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    return lambda: _job_status(url, job_id, submitted) in ("PENDING", "RUNNING")


def wait_job(url: str, job_id: str, timeout_s: float = 600) -> str:
    """The job's final status (SUCCEEDED, FAILED, STOPPED)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        info = _get_json(f"{url}/api/jobs/{job_id}") or {}
        if info.get("status") in ("SUCCEEDED", "FAILED", "STOPPED"):
            return info["status"]
        time.sleep(3)
    raise AssertionError(f"job {job_id} still running after {timeout_s} s")


@pytest.fixture()
def cluster(tmp_path):
    """A head (1 CPU) and a worker node (1 CPU); yields (dashboard URL, GCS port, start_worker) where
    start_worker() starts a fresh worker node."""
    yield from _cluster(tmp_path, shared_temp=False)


@pytest.fixture()
def shared_temp_cluster(tmp_path):
    """The same, with the worker nodes in the head's temp dir (one session folder for both)."""
    yield from _cluster(tmp_path, shared_temp=True)


def _cluster(tmp_path: Path, shared_temp: bool):
    procs, temps = [], []
    try:
        for attempt in range(3):  # Ray gives a raylet 30 s to register: a loaded machine can miss it
            try:
                head, url, temp, gcs = _node(tmp_path, f"head{attempt}", None, {})
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        procs.append(head)
        temps.append(temp)

        def start_worker() -> subprocess.Popen:
            for _ in range(3):  # a port taken meanwhile by another process: try fresh ones
                worker, _, wtemp, _ = _node(tmp_path, f"worker{len(procs)}", gcs, {}, temp if shared_temp else None)
                procs.append(worker)
                temps.append(wtemp)
                if _wait_cpus(gcs, 2.0, worker):
                    return worker
            raise RuntimeError("the worker node did not start in 3 tries")

        yield url, gcs, start_worker
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for temp in temps:
            shutil.rmtree(temp, ignore_errors=True)


def test_worker_node_lost_mid_run_the_job_finishes_identical(cluster, tmp_path):
    url, gcs, start_worker = cluster
    model, identities = make_tiny_synthesis_inputs(tmp_path / "inputs", num_identities=NUM_IDENTITIES)
    env = {**_env(), "RAY_ADDRESS": f"127.0.0.1:{gcs}", "PYTHONPATH": str(ROOT)}
    python = str(Path(_env()["PATH"].split(os.pathsep)[0]) / "python")

    # a clean run on the same two nodes
    worker = start_worker()
    clean_out = tmp_path / "clean"
    clean = subprocess.run(
        [python, "jobs/synthesize.py", *_synth_args(model, identities, clean_out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert clean.returncode == 0, clean.stderr[-3000:]
    reference = _shards(clean_out)
    assert len(reference) == NUM_IDENTITIES

    # 1. a direct driver (RAY_ADDRESS), the worker node's raylet killed after the first shard
    out = tmp_path / "driver"
    log = tmp_path / "driver.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [python, *synthesize_with_faults.args(HOLD, _synth_args(model, identities, out))],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        _kill_worker_after_first_shard(worker, out, lambda: proc.poll() is None)
        code = proc.wait(timeout=600)
    text = log.read_text(errors="replace")
    assert code == 0, text[-4000:]
    assert "Traceback" not in text and "[synthesize] done:" in text, text[-4000:]
    assert _shards(out) == reference
    assert json.loads((out / "manifest.json").read_text())["complete"] is True

    # 2. the same under `ray job submit`, on a fresh worker node (the lost one's CPU no longer counts)
    worker = start_worker()
    out = tmp_path / "submitted"
    job_id = f"uiface-node-loss-{os.getpid()}"
    running = submit(url, job_id, _synth_args(model, identities, out), HOLD)
    _kill_worker_after_first_shard(worker, out, running)
    status = wait_job(url, job_id)
    logs = _job_logs(url, job_id)
    assert status == "SUCCEEDED", logs[-4000:]
    assert "Traceback" not in logs and "error:" not in logs, logs[-4000:]
    assert _shards(out) == reference
    assert not (out / "journal").exists()


def test_ray_job_stop_ends_the_log_with_the_jobs_line(cluster, tmp_path):
    """`ray job stop` sends SIGTERM to the driver (issue 26 item 6): the job's log ends with its own
    `terminated:` line, not Ray's stack dump.  (Ray 2.60 records a stopped job as STOPPED with no
    driver exit code, whatever the driver returns.)"""
    url, _, start_worker = cluster
    start_worker()
    model, identities = make_tiny_synthesis_inputs(tmp_path / "inputs", num_identities=NUM_IDENTITIES)
    out = tmp_path / "stopped"
    job_id = f"uiface-stop-{os.getpid()}"
    running = submit(url, job_id, _synth_args(model, identities, out), HOLD)
    deadline = time.time() + 400
    while not (out / "shards" / "shard-00000.parquet").exists():
        assert running() and time.time() < deadline, _job_logs(url, job_id)[-3000:]
        time.sleep(0.3)
    stop = subprocess.run(
        [str(RAY), "job", "stop", "--address", url, job_id], env=_env(), capture_output=True, text=True, timeout=120
    )
    assert stop.returncode == 0, stop.stderr[-2000:]
    assert wait_job(url, job_id) == "STOPPED"
    logs = _job_logs(url, job_id)
    lines = [line for line in logs.splitlines() if line.strip()]
    assert lines[-1] == "terminated: stopped; rerun the same command to resume", logs[-3000:]
    assert "received at time" not in logs and "Traceback" not in logs, logs[-3000:]


def test_a_submitted_job_on_two_nodes_sharing_a_temp_dir_commits(shared_temp_cluster, tmp_path):
    """Issue 34 item 9: ``ray job submit`` of synthesis on two nodes started with ``ray start`` on one
    machine (one temp dir, so one session folder) ended FAILED with ``error: cannot remove
    <out>/journal: FileNotFoundError`` although every shard was complete.  Cause: the worker node's
    runtime-env agent unpacks the job's working_dir again (``overwrite=True``) into the folder both
    nodes share when the first actor lands there, removing the directory the driver runs in; fsspec's
    local ``rm`` asks for the working directory (``os.getcwd()``), which then raises.  No node loss
    is needed: the fault-free run fails the same way."""
    url, gcs, start_worker = shared_temp_cluster
    start_worker()
    model, identities = make_tiny_synthesis_inputs(tmp_path / "inputs", num_identities=NUM_IDENTITIES)
    out = tmp_path / "submitted"
    job_id = f"uiface-shared-temp-{os.getpid()}"
    submit(url, job_id, _synth_args(model, identities, out), {})
    status = wait_job(url, job_id)
    logs = _job_logs(url, job_id)
    assert status == "SUCCEEDED", logs[-4000:]
    assert "Traceback" not in logs and "error:" not in logs, logs[-4000:]
    assert json.loads((out / "manifest.json").read_text())["complete"] is True
    assert len(_shards(out)) == NUM_IDENTITIES and not (out / "journal").exists()
