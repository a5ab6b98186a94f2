"""The documents' commands run as written (#26 items 1-3).

Fenced blocks whose info string is ``bash test`` in README.md and docs/*.md are run, in the order of
the file, by one ``bash -euo pipefail`` in a fresh copy of the checkout (the files a clone has,
``.venv`` linked to this one's), with the release's files written in the tiny test architecture
beside it (``../uiface-release/``), a bucket ``my-bucket`` on a loopback S3 server, and no
``PYTHONPATH``: the copy's own ``uiface_ray`` runs.  Blocks marked ``bash test teardown`` run
afterwards whatever happened (they stop the local Ray head).  What the test changes, and only that:

* port numbers: Ray's defaults (6379, 8265, the agent's and the client server's) may be held by
  another Ray on this machine, so free ports and a short ``--temp-dir`` replace them;
* sizes: ``jobs/import_official.py`` gets ``--architecture=tiny`` and ``jobs/synthesize.py`` a few
  identities, images and steps (:data:`TINY`), as a 216M-parameter UNet would not fit the test.

The fast tests check every shell command of the documents: ``ray job submit`` carries
``--address``, and a job runs with the virtualenv's Python, or with a bare ``python`` only as a
cluster's entrypoint after ``--``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.M | re.S)
TINY = {
    "jobs/import_official.py": " --architecture=tiny",
    "jobs/synthesize.py": " --images_per_identity=2 --identities_per_shard=2 --batch_size=4"
    " --sampler.num_inference_steps=3 --sampler.output_size=16 --actors.num_actors=1",
}
SHELLS = ("bash", "sh", "shell", "console")


def shell_blocks(path: Path) -> list[tuple[str, str]]:
    """(info string, body) of every shell fence in ``path``."""
    return [(m.group(2).strip(), m.group(3)) for m in FENCE.finditer(path.read_text()) if m.group(1) in SHELLS]


def logical_lines(body: str) -> list[str]:
    """Commands with their backslash continuations joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", body)
    return [ln.split(" # ")[0].strip() for ln in joined.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def command_problems(line: str) -> list[str]:
    problems = []
    if "ray job submit" in line and "--address" not in line:
        problems.append("ray job submit without --address")
    for match in re.finditer(r"(\S*python)\s+(\S*jobs/\w+\.py)", line):
        exe, before = match.group(1), line[: match.start()]
        entrypoint = "ray job submit" in before and " -- " in before + " "
        if exe in ("python", "python3") and not entrypoint:
            problems.append(f"{match.group(0)}: a bare python outside a cluster's entrypoint (use .venv/bin/python)")
        if exe.startswith(".venv/") and entrypoint:
            problems.append(f"{match.group(0)}: a relative .venv as entrypoint (not in the uploaded copy)")
    return problems


def test_every_documented_command_names_its_python_and_its_address():
    problems = []
    for path in DOCS:
        for _, body in shell_blocks(path):
            for line in logical_lines(body):
                problems += [f"{path.relative_to(ROOT)}: {p}" for p in command_problems(line)]
    assert problems == []


def test_the_checks_catch_the_commands_of_issue_26():
    old = "ray job submit --working-dir . -- python jobs/synthesize.py --config configs/synthesize_official.yaml"
    assert command_problems(old) == ["ray job submit without --address"]
    assert command_problems("python jobs/import_official.py --checkpoint=x")
    assert command_problems("ray job submit --address http://h:8265 -- .venv/bin/python jobs/export.py")
    good = 'ray job submit --address http://127.0.0.1:8265 --working-dir . -- "$PWD/.venv/bin/python" jobs/export.py'
    assert command_problems(good) == []


def test_official_md_marks_its_walkthrough_for_this_test():
    infos = [info for info, _ in shell_blocks(ROOT / "docs" / "OFFICIAL.md")]
    assert infos.count("test") >= 4 and infos.count("test teardown") == 1


def test_usage_line_says_how_to_run_a_job():
    out = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "synthesize.py"), "--help"], capture_output=True, text=True, timeout=120
    ).stdout
    first, second = out.splitlines()[:2]
    assert first.startswith("usage: .venv/bin/python jobs/synthesize.py ")
    assert "ray job submit --address" in second and "python jobs/synthesize.py" in second


# ---------------------------------------------------------------------------------------------
# the walkthrough itself


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _adapt(body: str, ports: dict[str, int], temp_dir: str) -> str:
    """The block with free ports instead of Ray's defaults and tiny sizes appended to the jobs."""
    gcs, dashboard, client, agent, grpc, metrics, runtime_env = (ports[k] for k in sorted(ports))
    text = body.replace("--port=6379", f"--port={gcs}").replace(":8265", f":{dashboard}")
    text = text.replace("--dashboard-port=8265", f"--dashboard-port={dashboard}")
    head_flags = (
        f" --ray-client-server-port={client} --dashboard-agent-listen-port={agent}"
        f" --dashboard-agent-grpc-port={grpc} --metrics-export-port={metrics}"
        f" --runtime-env-agent-port={runtime_env} --temp-dir={temp_dir}"
    )
    text = text.replace("ray start --head", "ray start --head" + head_flags)
    lines = []
    for line in re.sub(r"\\\n\s*", " ", text).splitlines():
        for job, extra in TINY.items():
            if job in line:
                line += extra
        lines.append(line)
    return "\n".join(lines) + "\n"


def _release_files(folder: Path) -> dict[str, str]:
    """The tiny architecture's weights under the release's file names; {name: sha256}."""
    from test_official_import import write_release_files

    write_release_files(folder, name="model_900000.ckpt")
    np.save(folder / "identities_10k.npy", np.random.default_rng(0).normal(size=(3, 512)).astype(np.float32))
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def _fresh_copy(dest: Path) -> None:
    """The files a clone of this checkout has (tracked, and new files not ignored), plus .venv."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    (dest / ".venv").symlink_to(sys.prefix)  # the virtualenv's root (sys.executable may link outside it)


def _stop_head(pid_file: Path) -> None:
    """If the teardown block failed: SIGTERM, then SIGKILL, the head this test started (by its pid)."""
    if not pid_file.is_file():
        return
    pid = int(pid_file.read_text().strip())
    for sig, wait_s in ((signal.SIGTERM, 60), (signal.SIGKILL, 10)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + wait_s
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(1)


def _run(script: str, cwd: Path, env: dict, log: Path, timeout_s: float) -> int:
    with open(log, "ab") as out:
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout_s,
        ).returncode


@pytest.mark.slow
def test_official_md_runs_as_written(s3_server, tmp_path):
    import boto3

    from uiface_ray.synth.manifest import read_manifest

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="my-bucket")
    clone = tmp_path / "clone"
    _fresh_copy(clone)
    hashes = _release_files(tmp_path / "uiface-release")
    names = ("gcs", "dashboard", "client", "agent", "grpc", "metrics", "runtime_env")
    ports = dict(zip(sorted(names), _free_ports(len(names))))
    temp_dir = tempfile.mkdtemp(prefix="rayd-", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    env.update(RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1")
    blocks = shell_blocks(ROOT / "docs" / "OFFICIAL.md")
    steps = [_adapt(body, ports, temp_dir) for info, body in blocks if info == "test"]
    teardown = [_adapt(body, ports, temp_dir) for info, body in blocks if info == "test teardown"]
    log = tmp_path / "commands.log"
    try:
        rc = _run("".join(f"echo '### block {i}'\n{s}" for i, s in enumerate(steps)), clone, env, log, 1500)
    finally:
        teardown_rc = _run("".join(teardown), clone, env, log, 180)
        _stop_head(clone / "out" / "ray-head.pid")
        shutil.rmtree(temp_dir, ignore_errors=True)
    output = log.read_text(errors="replace")
    assert rc == 0, output[-6000:]
    assert teardown_rc == 0, output[-3000:]
    assert read_manifest("s3://my-bucket/uiface/synthetic-official-10k").complete
    card = (clone / "out" / "official-card.md").read_text()
    assert f"`model_900000.ckpt` (sha256 `{hashes['model_900000.ckpt']}`)" in card
    assert "- Weights: non-EMA;" in card and "identities_10k.npy` (512-d), given" in card
    assert not any(temp_dir in line for line in _command_lines()), "the head left processes behind"


def _command_lines() -> list[str]:
    """The command line of every process on this machine (Linux /proc)."""
    lines = []
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(entry.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # ended meanwhile
            continue
    return lines
