"""Our jobs beside a real Ray head started with ``ray start`` (issue 34 items 2 and 9).

- A ``ray start --head`` on Ray's default ports, started on the same machine while a job runs on its
  embedded Ray, comes up and accepts a ``ray job submit``.  Before, the embedded Ray held the
  dashboard's 8265 and the dashboard agent's 52365, and the head refused every job ("No available
  agent to submit job").  This test takes the default ports itself, so it skips when any of them is
  in use (another head, or another session's job on this machine).
- A direct driver (``jobs/synthesize.py`` with ``RAY_ADDRESS``) whose head dies mid-run (every
  process of the head killed) ends with one ``error:`` line that says the cluster is gone and that
  rerunning resumes, and exit code 75, before Ray's own exit (code 1 after 61 s, no line of ours).

Each head runs in its own process group with its files in a short temporary folder, and is stopped
by its pid (SIGINT to the group, as for ``ray start --block``); nothing is left behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from fault_seam import synthesize_with_faults
from test_docs_commands import _free_ports
from test_session_security import Session
from tiny_assets import make_tiny_synthesis_inputs

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
DEFAULT_PORTS = (6379, 8265, 10001, 52365)


def _in_use(port: int) -> bool:
    """Whether something listens on ``port`` on any address of this machine (or holds it)."""
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", port))
            return False
        except OSError:
            return True


def _env(temp: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    env.update(TMPDIR=temp, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(ROOT), **extra)
    return env


class Head:
    """A ``ray start --head --block`` in its own process group, its files in ``temp``."""

    def __init__(self, temp: str, log: Path, *flags: str):
        self.temp, self.log = temp, log
        argv = [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=2"]
        argv += ["--disable-usage-stats", f"--temp-dir={temp}", *flags]
        with log.open("wb") as sink:
            self.proc = subprocess.Popen(
                argv, env=_env(temp), cwd=temp, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )

    def submit(self, dashboard: str, timeout_s: float) -> subprocess.CompletedProcess:
        """``ray job submit`` of a trivial job, retried until it succeeds or ``timeout_s`` passes."""
        argv = [RAY, "job", "submit", "--address", dashboard, "--", sys.executable, "-c", "print('a job ran here')"]
        deadline = time.time() + timeout_s
        while True:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")[-3000:]
            done = subprocess.run(argv, env=_env(self.temp), capture_output=True, text=True, timeout=300)
            if done.returncode == 0 or time.time() > deadline:
                return done
            time.sleep(3)

    def processes(self) -> list:
        """The head's process and all its descendants (psutil processes)."""
        import ray  # noqa: F401  (Ray ships psutil on its path)
        import psutil

        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def stop(self) -> None:
        """SIGINT to its process group (a ``--block`` head stops its processes), SIGKILL after 60 s;
        then every process still writing under its temporary folder, by pid."""
        from uiface_ray.runtime.reaper import session_processes

        for sig, wait_s in ((signal.SIGINT, 60), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        deadline = time.time() + 30
        while (left := session_processes(self.temp)) and time.time() < deadline:
            time.sleep(1)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.slow
def test_a_default_head_beside_an_embedded_job_accepts_a_submit(tmp_path):
    busy = [port for port in DEFAULT_PORTS if _in_use(port)]
    if busy:
        pytest.skip(f"Ray's default head ports {busy} are in use on this machine (another head or job runs)")
    job_tmp = tempfile.mkdtemp(prefix="uj", dir="/tmp")  # short: Ray's socket paths live under it
    head_tmp = tempfile.mkdtemp(prefix="uh", dir="/tmp")
    job = head = None
    try:
        job = Session(job_tmp, tmp_path / "job.log")  # a driver holding its embedded Ray, as a running job
        busy = [port for port in DEFAULT_PORTS if _in_use(port)]
        assert busy == [], f"the running job holds Ray's default head ports {busy}"
        head = Head(head_tmp, tmp_path / "head.log")  # every port Ray's default
        done = head.submit("http://127.0.0.1:8265", timeout_s=240)
        assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        assert "a job ran here" in done.stdout and "succeeded" in done.stdout, done.stdout[-2000:]
        assert job.proc.poll() is None, "the job's embedded Ray did not survive the head beside it"
    finally:
        if head is not None:
            head.stop()
        if job is not None:
            job.close()
        shutil.rmtree(head_tmp, ignore_errors=True)
        shutil.rmtree(job_tmp, ignore_errors=True)


@pytest.mark.slow
def test_a_direct_driver_whose_head_dies_ends_in_one_line(tmp_path):
    model, identities = make_tiny_synthesis_inputs(tmp_path / "in", num_identities=4)
    gcs, dashboard, client, agent, grpc, metrics, runtime_env = _free_ports(7)
    head_tmp = tempfile.mkdtemp(prefix="uh", dir="/tmp")
    flags = (
        f"--port={gcs}",
        f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={client}",
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={grpc}",
        f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={runtime_env}",
    )
    head = Head(head_tmp, tmp_path / "head.log", *flags)
    markers, out = tmp_path / "markers", tmp_path / "ds"
    job_args = [f"--model={model}", f"--identities={identities}", f"--output={out}", "--images_per_identity=2"]
    job_args += ["--identities_per_shard=1", "--batch_size=2", "--sampler.num_inference_steps=2"]
    job_args += ["--actors.num_actors=1", "--actors.use_gpu=false", "--ray.connect_timeout_s=20"]
    hold = {"hold_shard": 1, "hold_seconds": 600, "marker_dir": str(markers)}
    driver_tmp = tmp_path / "driver-tmp"
    driver_tmp.mkdir()
    driver = None
    try:
        assert head.submit(f"http://127.0.0.1:{dashboard}", timeout_s=240).returncode == 0, "the head never came up"
        env = _env(str(driver_tmp), RAY_ADDRESS=f"127.0.0.1:{gcs}", PYTHONUNBUFFERED="1")
        with (tmp_path / "driver.log").open("wb") as sink:
            driver = subprocess.Popen(
                [sys.executable, *synthesize_with_faults.args(hold, job_args)],
                cwd=ROOT,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.time() + 400
        while not (markers / "holding-1").exists():
            assert driver.poll() is None, (tmp_path / "driver.log").read_text(errors="replace")[-3000:]
            assert time.time() < deadline, "shard 1 was never held"
            time.sleep(0.5)
        for proc in head.processes():  # every process of the head node, as a lost machine
            try:
                proc.kill()
            except Exception:  # noqa: BLE001 - gone already
                pass
        killed = time.monotonic()
        code = driver.wait(timeout=150)
        took = time.monotonic() - killed
        text = (tmp_path / "driver.log").read_text(errors="replace")
        lines = [ln for ln in text.splitlines() if ln.strip()]
        assert code == 75, f"exit {code} after {took:.0f} s:\n{text[-3000:]}"
        assert lines[-1].startswith(f"error: the Ray cluster at 127.0.0.1:{gcs} is gone: "), text[-3000:]
        assert "rerun the same command" in lines[-1] and "resume" in lines[-1], lines[-1]
        assert "Traceback" not in text, text[-3000:]
        assert took < 58, f"the job ended {took:.0f} s after its head, not before Ray's own 60 s"
    finally:
        if driver is not None and driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
        head.stop()
        shutil.rmtree(head_tmp, ignore_errors=True)
