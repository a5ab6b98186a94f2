"""An embedded Ray is its user's alone (issue 27, case 10), and a wrong Ray address fails fast (case 3).

A job with no Ray address starts an embedded Ray in a subprocess here (through ``ray_session``, as
every job does, under the suite's ``RAY_AUTH_MODE=disabled``); while it is up, someone else on the
machine tries its dashboard's job API and its GCS without the token, and every one of its listening
ports on a non-loopback address of the machine; its files must be out of everyone else's reach, and
once it ends nothing is left in the temporary folder."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SESSION = """
import json, os, sys
sys.path.insert(0, {root!r})
from uiface_ray.config import RayConfig
from uiface_ray.runtime.session import ray_session
import ray

with ray_session(RayConfig(num_cpus=1)):
    assert ray.get(ray.put(41)) + 1 == 42
    node = ray._private.worker._global_node
    info = dict(temp=node.get_temp_dir_path(), dashboard=node.webui_url, gcs=ray.get_runtime_context().gcs_address)
    print(json.dumps(info), flush=True)
    sys.stdin.readline()
print("shut down", flush=True)
"""

LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


class Session:
    """The subprocess holding an embedded Ray, its temporary folder and what it reported."""

    def __init__(self, tmp: str, log: Path):
        env = {**os.environ, "TMPDIR": tmp, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
            env.pop(key, None)
        self.tmp, self.log = tmp, log
        self.rc: int | None = None
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SESSION.format(root=str(ROOT))],
            env=env,
            cwd=tmp,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            text=True,
            start_new_session=True,  # its own process group: a test may kill the whole job
        )
        ready, _, _ = select.select([self.proc.stdout], [], [], 300)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("{"):
            self.close()
            pytest.fail(f"the session did not come up: {line!r} {log.read_text()[-3000:]}")
        self.info = json.loads(line)
        self.pids = _tree(self.proc.pid)

    def close(self) -> int:
        if self.rc is None:
            try:
                self.proc.stdin.write("\n")
                self.proc.stdin.flush()
            except OSError:
                pass
            try:
                self.rc = self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.rc = self.proc.wait()
        return self.rc


def _tree(pid: int) -> list[int]:
    import ray  # noqa: F401  (Ray ships psutil on its path)
    import psutil

    root = psutil.Process(pid)
    return [root.pid] + [p.pid for p in root.children(recursive=True)]


def _listening(pids: list[int]) -> list[tuple[str, int, str]]:
    import ray  # noqa: F401
    import psutil

    found = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            found += [
                (c.laddr.ip, c.laddr.port, proc.name()) for c in proc.net_connections("inet") if c.status == "LISTEN"
            ]
        except psutil.NoSuchProcess:
            continue
    return found


def _outside_address() -> str | None:
    """An IPv4 address of this machine that is not loopback, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.123", 9))  # no packet is sent: the kernel only picks a route
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def _others_can_read(path: Path) -> bool:
    """Whether a user outside this file's owner and group can read it (every folder above it open to
    others, the file itself readable by others)."""
    if not path.stat().st_mode & stat.S_IROTH:
        return False
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    tmp = tempfile.mkdtemp(prefix="us", dir="/tmp")  # short: Ray's socket paths live under it
    os.chmod(tmp, 0o1777)  # as open as /tmp itself
    s = None
    try:
        s = Session(tmp, tmp_path_factory.mktemp("session") / "stderr.log")
        yield s
    finally:
        if s is not None:
            s.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _private_folder(session: Session) -> Path:
    """The one folder the session made in the temporary folder (Ray's temp root lies inside it)."""
    entries = sorted(Path(session.tmp).iterdir())
    assert len(entries) == 1, f"the session wrote {[e.name for e in entries]} in the temporary folder"
    assert Path(session.info["temp"]).is_relative_to(entries[0]), (session.info, entries)
    return entries[0]


def _refused(request: urllib.request.Request) -> int:
    """The HTTP status of a request the dashboard must refuse (0 if it answered 2xx)."""
    try:
        with urllib.request.urlopen(request, timeout=30):
            return 0
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_job_api_and_the_gcs_refuse_a_caller_without_the_token(session, tmp_path):
    jobs = f"http://{session.info['dashboard']}/api/jobs/"
    assert _refused(urllib.request.Request(jobs)) in (401, 403), "the job list answered without the token"
    marker = tmp_path / "ran"
    body = json.dumps({"entrypoint": f"touch {marker}"}).encode()
    post = urllib.request.Request(jobs, data=body, headers={"Content-Type": "application/json"})
    assert _refused(post) in (401, 403), "a job was accepted without the token"
    # the dashboard is up and answers the session's own token (so the refusal above is the token's)
    token = (_private_folder(session) / "auth_token").read_text().strip()
    authorized = urllib.request.Request(
        f"http://{session.info['dashboard']}/api/version", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(authorized, timeout=30) as answer:
        assert answer.status == 200
    # a driver without the token (told to keep 127.0.0.1 as it is) cannot join and run a task
    attacker = (
        "import ray\nray.init(address=%r, log_to_driver=False)\n"
        "print(ray.get(ray.remote(lambda: 'RAN').remote(), timeout=30))\n" % session.info["gcs"]
    )
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.update(RAY_NUM_REDIS_GET_RETRIES="3", TMPDIR=str(tmp_path))
    for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(key, None)
    try:
        out = subprocess.run(
            [sys.executable, "-c", attacker], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=150
        )
        assert out.returncode != 0 and "RAN" not in out.stdout, out.stdout + out.stderr[-2000:]
    except subprocess.TimeoutExpired as waited:
        assert "RAN" not in str(waited.stdout or ""), waited.stdout
    assert not marker.exists(), "a job posted without the token ran"


def test_every_port_listens_on_loopback_only(session):
    pids = _tree(session.proc.pid)
    ports = _listening(pids)
    assert len(ports) >= 5, f"the session's processes hold too few sockets to be its Ray: {ports}"
    assert [p for p in ports if p[0] not in LOOPBACK] == [], ports
    outside = _outside_address()
    if outside is None:
        pytest.skip("this machine has no non-loopback IPv4 address to try the ports on")
    reached = []
    for _ip, port, name in ports:
        with socket.socket() as probe:
            probe.settimeout(3)
            if probe.connect_ex((outside, port)) == 0 and _held_by(outside, port, pids):
                reached.append((port, name))
    assert reached == [], f"reachable on {outside}: {reached}"


def test_no_port_is_one_a_real_head_takes_by_default(session):
    """A ``ray start --head`` beside a running job takes 6379, 8265, 10001 and 52365 (and 10002-19999
    for its workers): the embedded Ray listens on none of them (issue 34 item 2).  Before, its
    dashboard took 8265 and its dashboard agent 52365 whenever they were free."""
    ports = _listening(_tree(session.proc.pid))
    assert len(ports) >= 8, f"the session's processes hold too few sockets to be its Ray: {ports}"
    taken = [p for p in ports if p[1] in (6379, 8265, 10001, 52365) or 10002 <= p[1] <= 19999]
    assert taken == [], taken


def _held_by(ip: str, port: int, pids: list[int]) -> bool:
    """Whether the socket that took a connection to ip:port is one of ``pids``' (another Ray on the
    machine may hold the same port on that address, e.g. a dashboard agent's default 52365)."""
    import ray  # noqa: F401
    import psutil

    owners = {
        c.pid
        for c in psutil.net_connections("inet")
        if c.status == "LISTEN" and c.laddr.port == port and c.laddr.ip in (ip, "0.0.0.0", "::")
    }
    return None in owners or bool(owners & set(pids))  # an owner we cannot see counts as ours


def test_its_files_are_out_of_everyone_elses_reach(session):
    files = [p for p in Path(session.tmp).rglob("*") if p.is_file()]
    assert len(files) > 20, files  # Ray's logs and state are in there (else this proves nothing)
    readable = [str(p) for p in files if _others_can_read(p)]
    assert readable == [], f"{len(readable)} of {len(files)} files readable by others: {readable[:5]}"
    folder = _private_folder(session)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == os.getuid()
    token = folder / "auth_token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    # the token is in no log nor any other file of the session
    secret = token.read_text().strip()
    leaks = [str(p) for p in files if p != token and secret.encode() in p.read_bytes()]
    assert leaks == [], leaks


def test_the_session_ends_leaving_nothing(session):
    pids = session.pids
    assert session.close() == 0, session.log.read_text()[-3000:]
    left = sorted(os.listdir(session.tmp))
    assert left == [], f"the session left {left} in the temporary folder"
    deadline = time.time() + 30
    while (alive := [p for p in pids if _alive(p)]) and time.time() < deadline:
        time.sleep(0.5)
    assert alive == [], f"processes of the session still run: {alive}"


@pytest.mark.slow
def test_a_killed_drivers_session_ends_within_30_s(tmp_path):
    """``kill -9`` of the driver alone: within 30 s no process of its session is left (Ray 2.60
    left its dashboard agent and runtime-env agent alive for 60 s) and its private folder is gone,
    both removed by the session's reaper (issue 34 item 9)."""
    from uiface_ray.runtime.reaper import session_processes

    tmp = tempfile.mkdtemp(prefix="ud", dir="/tmp")
    try:
        killed = Session(tmp, tmp_path / "killed.log")
        folder = _private_folder(killed)
        pids = _tree(killed.proc.pid)
        assert len(session_processes(str(folder))) >= 5, "the session's processes are not found by its folder"
        os.kill(killed.proc.pid, signal.SIGKILL)  # the driver only, as a user's kill -9 <pid>
        killed.proc.wait(timeout=60)
        deadline = time.time() + 30
        while (alive := [p for p in pids if _alive(p)] + session_processes(str(folder))) and time.time() < deadline:
            time.sleep(0.5)
        left = _names(alive)
        assert alive == [], f"30 s after kill -9 of the driver these processes of its session still run: {left}"
        assert sorted(os.listdir(tmp)) == [], "the killed session's folder is still there"
    finally:
        _kill_left(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def _names(pids: list[int]) -> list[str]:
    import ray  # noqa: F401
    import psutil

    names = []
    for pid in sorted(set(pids)):
        try:
            names.append(f"{pid} {psutil.Process(pid).name()}")
        except psutil.NoSuchProcess:
            continue
    return names


def _kill_left(tmp: str) -> None:
    """SIGKILL, by pid, any process still holding a file under ``tmp`` (a failed test's leftovers)."""
    from uiface_ray.runtime.reaper import session_processes

    for folder in Path(tmp).glob("ray-*"):
        for pid in session_processes(str(folder)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _reaper_of(driver: int) -> int:
    """The pid of the embedded session's reaper: the driver's child that runs runtime/reaper.py."""
    import ray  # noqa: F401
    import psutil

    found = [p.pid for p in psutil.Process(driver).children() if any("reaper.py" in a for a in p.cmdline())]
    assert len(found) == 1, found
    return found[0]


def test_a_killed_jobs_folder_is_removed_by_the_next_session(tmp_path):
    """When the reaper is killed with the job (``kill -9`` of both), the next embedded session on the
    machine ends what is left of the killed session's processes and removes its folder."""
    tmp = tempfile.mkdtemp(prefix="uk", dir="/tmp")
    try:
        killed = Session(tmp, tmp_path / "killed.log")
        os.kill(_reaper_of(killed.proc.pid), signal.SIGKILL)  # its own session: the group's kill misses it
        os.killpg(killed.proc.pid, signal.SIGKILL)  # kill -9: no shutdown runs
        killed.proc.wait(timeout=60)
        left = sorted(os.listdir(tmp))
        assert len(left) == 1 and left[0].startswith("ray-"), left
        later = Session(tmp, tmp_path / "later.log")
        assert later.close() == 0, later.log.read_text()[-3000:]
        assert sorted(os.listdir(tmp)) == [], "the next session did not remove the killed one's folder"
        from uiface_ray.runtime.reaper import session_processes

        assert session_processes(str(Path(tmp) / left[0])) == [], "the killed session's processes outlived the next"
    finally:
        _kill_left(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    import ray  # noqa: F401
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# ---------------------------------------------------------------------------------------------
# case 3: a wrong address


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("how", ["RAY_ADDRESS", "--ray.address", "a-port-that-is-not-ray"])
def test_a_wrong_ray_address_ends_in_one_line(how, tmp_path):
    from tiny_assets import make_tiny_synthesis_inputs

    model, identities = make_tiny_synthesis_inputs(tmp_path / "in", num_identities=2)
    listener = socket.socket()
    if how == "a-port-that-is-not-ray":  # takes connections (the kernel's backlog) and never speaks gRPC
        listener.bind(("0.0.0.0", 0))
        listener.listen(8)
        port, why = listener.getsockname()[1], "the port answers but not as a Ray cluster"
    else:
        port, why = _closed_port(), "connection refused"
    address = f"127.0.0.1:{port}"
    argv = [sys.executable, "jobs/synthesize.py", f"--model={model}", f"--identities={identities}"]
    argv += [f"--output={tmp_path / 'out'}", "--images_per_identity=1", "--sampler.num_inference_steps=2"]
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    if how == "RAY_ADDRESS":
        env["RAY_ADDRESS"] = address  # and the default connect timeout
    else:
        argv += [f"--ray.address={address}", "--ray.connect_timeout_s=3"]
    started = time.monotonic()
    with listener:
        out = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    took = time.monotonic() - started
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert out.returncode == 2, out.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach the Ray cluster at {address}: {why}"), lines
    assert f"check {how if how == 'RAY_ADDRESS' else '--ray.address'}" in lines[0], lines[0]
    assert took < 150, f"{took:.0f} s"
    assert not (tmp_path / "out").exists()
