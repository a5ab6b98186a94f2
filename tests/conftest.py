"""Shared fixtures: the loopback S3 server, one local Ray, the real LFW faces."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LFW_DIR = Path(os.environ.get("UIFACE_LFW_DIR", ROOT.parent / "shared" / "data" / "lfw112"))

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need_lfw() -> Path:
    """The LFW folder, or a skip (a failure under CI=true, where it must be present)."""
    if not (LFW_DIR / "images").is_dir():
        msg = f"real faces not found at {LFW_DIR} (set UIFACE_LFW_DIR to an lfw112 folder)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + "; CI must have ../shared/data/lfw112")
        pytest.skip(msg)
    return LFW_DIR


# Everything a test run may leave in the repository root (caches, ignored build folders).
_ROOT_ALLOWED = {".pytest_cache", ".ruff_cache", "out", ".cache", "build", "__pycache__"}
_root_before: set[str] = set()


_torch_cache: list[str] = []


def pytest_sessionstart(session):  # noqa: ARG001
    _root_before.update(os.listdir(ROOT))
    # torch makes $TMPDIR/torchinductor_<user> when diffusers imports torch._dynamo and never removes
    # it: this run's processes (pytest, its jobs, the Ray heads it starts) share one folder, removed below.
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        _torch_cache.append(tempfile.mkdtemp(prefix="uiface-torch-cache-"))
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = _torch_cache[0]


def pytest_sessionfinish(session, exitstatus):  # noqa: ARG001
    """A test that writes into the folder pytest was started from (a relative path it did not mean)
    fails the run: it would leave files in the user's checkout."""
    for folder in _torch_cache:
        shutil.rmtree(folder, ignore_errors=True)
    new = sorted(set(os.listdir(ROOT)) - _root_before - _ROOT_ALLOWED)
    if new:
        print(f"\nerror: the tests left {new} in {ROOT}", file=sys.stderr)
        session.exitstatus = 1


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    return need_lfw()


@pytest.fixture(autouse=True, scope="session")
def _torch_threads():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-protocol server (moto_server) on a free loopback port, stopped by its pid."""
    beside = Path(sys.executable).with_name("moto_server")  # the test environment's own first
    exe = str(beside) if beside.exists() else shutil.which("moto_server")
    if not exe:
        pytest.fail("moto_server not found: install the test extra (pip install -e '.[test]')")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("moto_server exited at start")
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError("moto_server did not start within 30 s")
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield endpoint
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture()
def s3_bucket(s3_server) -> str:
    """A fresh bucket on the loopback server; returns its ``s3://`` URL."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    import fsspec

    fsspec.filesystem("s3").invalidate_cache()
    return f"s3://{name}"


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole test session, with a fixed number of CPUs."""
    import ray

    from uiface_ray.runtime.session import init_embedded_ray, shutdown_embedded_ray

    if not ray.is_initialized():
        # as the jobs start theirs: with the dashboard and RAY_ADDRESS for Ray's own helper actors, so
        # that Ray Train's placement-group cleaner never mistakes another Ray on this machine for ours;
        # token auth on, loopback only, its own private folder (removed by shutdown_embedded_ray)
        init_embedded_ray(num_cpus=2, log_to_driver=False)
    yield ray
    shutdown_embedded_ray()
