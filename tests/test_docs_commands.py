"""The documents' commands run as written (#26 items 1-3, #34 item 1).

Every shell fence of README.md and of every document in docs/ is either run or marked, in its info string:

* ``bash test``: run, in the order of the file, by one ``bash -euo pipefail`` per document in a
  fresh copy of the checkout (the files a clone has, a ``.venv`` whose entries link to this one's,
  ``../shared/data/lfw112`` linked beside it), with no ``PYTHONPATH``: the copy's own ``uiface_ray``
  runs.  ``bash test teardown`` blocks run afterwards whatever happened (they stop the local head).
* ``bash no-test: <reason>``: not run, for the reason given (e.g. it is this test suite, or it
  needs a cluster, an AWS account or the user's own data).

docs/OFFICIAL.md runs with the release's files written in the tiny test architecture beside the
copy (``../uiface-release/``) and the document's own local S3 recipe (section 0 starts
``moto_server`` on loopback and makes ``my-bucket``; section 5 stops it): the shell starts with no
``AWS_*`` variable, so the recipe is the only S3 the commands see.  What the test changes in a
command, and only that (never a path):

* port numbers: Ray's defaults (6379, 8265, the agent's and the client server's) may be held by
  another Ray on this machine, so free ports and a short ``--temp-dir`` replace them;
* sizes, appended as flags to the commands of :data:`TINY` (later flags win): the tiny architecture
  (``--architecture=tiny``; the pipeline's ``--train_config=configs/train_diffusion_tiny.yaml``),
  few identities, images, candidates and DDIM steps, FR models of one step, and caps on the long
  trainings (``--max_steps``; a 70-minute run stops at step 2).  A model trained for a few steps
  draws near-identical faces, so the identity filters' thresholds are loosened (0.99) with them.

The fast tests check that every fence is run or marked with a reason, that the substitutions only
append flags, and every shell command of the documents: ``ray job submit`` carries ``--address``,
and a job runs with the virtualenv's Python, or with a bare ``python`` only as a cluster's
entrypoint after ``--``.
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
from test_pipeline import TINY_PIPELINE_FLAGS

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.M | re.S)
OFFICIAL, README, TRAINING = ROOT / "docs" / "OFFICIAL.md", ROOT / "README.md", ROOT / "docs" / "TRAINING.md"
RUN_OR_MARK = tuple(DOCS)  # every shell fence of every document is run, or marked with a reason
# The flags appended to each command that starts with the key (most specific key first).
TINY = {
    "jobs/import_official.py": " --architecture=tiny",
    "jobs/synthesize.py": " --images_per_identity=2 --identities_per_shard=2 --batch_size=4"
    " --sampler.num_inference_steps=3 --sampler.output_size=16 --actors.num_actors=1",
    "scripts/run.sh": " " + " ".join(TINY_PIPELINE_FLAGS),
    "jobs/prepare_faces.py --config": " --max_identities=3 --max_images_per_identity=6",
    "benchmarks/train_local.py": " --max_steps=2 --checkpoint_every=2 --log_every=1 --batch_size=8"
    " --grid.num_identities=3 --grid.num_inference_steps=2",
    "benchmarks/train_demo_eval.py": " --num-identities=2 --samples=2 --real-per-identity=2 --steps=2",
    "benchmarks/context_gain.py": " --images=8",
    "jobs/make_identities.py --config configs/make_identities_demo32.yaml": " --num_identities=2"
    " --max_candidates=64 --candidates_per_task=8 --num_inference_steps=2"
    " --similarity_threshold=0.99 --leakage_threshold=0.99",
    "jobs/ablation.py --config configs/ablation_demo32.yaml": " --num_identities=2 --images_per_identity=2"
    " --batch_size=8 --sampler.num_inference_steps=3 --fr_seeds=1 --fr.max_steps=1 --fr.batch_size=2"
    " --real_max_images=12 --verify_max_pairs=20 --metrics_k=2 --diversity_identities=2"
    " --interval_identities=2 --interval_images=2 --grid_identities=2 --grid_images=2",
}
MARK = re.compile(r"^(test|test teardown|no-test: \S.*)$")
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


def test_every_shell_fence_is_run_or_marked_with_a_reason():
    """A new command in README.md or any document of docs/ runs in the slow test unless its fence says why not."""
    unmarked = [
        f"{path.relative_to(ROOT)}: ```{info or '(no mark)'}"
        for path in RUN_OR_MARK
        for info, _ in shell_blocks(path)
        if not MARK.match(info)
    ]
    assert unmarked == []
    runs = {path.name: [info for info, _ in shell_blocks(path) if info == "test"] for path in RUN_OR_MARK}
    assert len(runs["README.md"]) >= 4 and len(runs["OFFICIAL.md"]) >= 4 and len(runs["TRAINING.md"]) >= 1


def test_the_mark_check_refuses_a_bare_fence_and_a_reasonless_mark():
    assert [bool(MARK.match(i)) for i in ("", "no-test", "no-test: ", "test", "no-test: needs a cluster")] == [
        False,
        False,
        False,
        True,
        True,
    ]


def test_substitutions_only_append_flags_before_the_comment():
    ports = dict.fromkeys(("a", "b", "c", "d", "e", "f", "g"), 1)
    body = "scripts/run.sh     # the main command\n.venv/bin/python jobs/prepare_faces.py --help\n"
    run, help_line = _adapt(body, ports, "/t").splitlines()
    assert run == "scripts/run.sh" + TINY["scripts/run.sh"] + "     # the main command"
    assert help_line == ".venv/bin/python jobs/prepare_faces.py --help"  # no key of TINY: as written
    cont = ".venv/bin/python jobs/import_official.py \\\n  --checkpoint=x --output=y\n"
    want = ".venv/bin/python jobs/import_official.py  --checkpoint=x --output=y --architecture=tiny\n"
    assert _adapt(cont, ports, "/t") == want


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
    usage = " ".join(out.split("\n\n")[0].split())  # the usage block, as wrapped to the terminal
    assert usage.startswith("usage: .venv/bin/python jobs/synthesize.py ")
    assert "ray job submit --address http://HEAD:8265 --working-dir . -- python jobs/synthesize.py" in usage


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
    """The block with free ports instead of Ray's defaults (when ``ports`` are given) and tiny
    sizes appended to the jobs."""
    text = body
    if ports:
        gcs, dashboard, client, agent, grpc, metrics, runtime_env = (ports[k] for k in sorted(ports))
        text = text.replace("--port=6379", f"--port={gcs}").replace(":8265", f":{dashboard}")
        text = text.replace("--dashboard-port=8265", f"--dashboard-port={dashboard}")
        head_flags = (
            f" --ray-client-server-port={client} --dashboard-agent-listen-port={agent}"
            f" --dashboard-agent-grpc-port={grpc} --metrics-export-port={metrics}"
            f" --runtime-env-agent-port={runtime_env} --temp-dir={temp_dir}"
        )
        text = text.replace("ray start --head", "ray start --head" + head_flags)
    return "\n".join(_tiny(line) for line in re.sub(r"\\\n\s*", " ", text).splitlines()) + "\n"


def _tiny(line: str) -> str:
    """``line`` with the flags of its command in :data:`TINY` appended (before a trailing comment)."""
    code, hash_, comment = line.partition(" # ")
    key = next((k for k in TINY if k in code), None)
    if key is None or line.lstrip().startswith("#"):
        return line
    stripped = code.rstrip()
    return stripped + TINY[key] + code[len(stripped) :] + hash_ + comment


def _release_files(folder: Path) -> dict[str, str]:
    """The tiny architecture's weights under the release's file names; {name: sha256}."""
    from test_official_import import write_release_files

    write_release_files(folder, name="model_900000.ckpt")
    np.save(folder / "identities_10k.npy", np.random.default_rng(0).normal(size=(3, 512)).astype(np.float32))
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def _fresh_copy(dest: Path) -> None:
    """The files a clone of this checkout has (tracked, and new files not ignored), a set-up .venv
    (:func:`_linked_venv`) and ``../shared/data/lfw112`` beside it when this checkout has the faces."""
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
    _linked_venv(Path(sys.prefix), dest / ".venv")  # the virtualenv's root (sys.executable may link outside it)
    lfw = Path(os.environ.get("UIFACE_LFW_DIR", ROOT.parent / "shared" / "data" / "lfw112"))
    if lfw.is_dir():
        (dest.parent / "shared" / "data").mkdir(parents=True, exist_ok=True)
        (dest.parent / "shared" / "data" / "lfw112").symlink_to(lfw.resolve())


def _linked_venv(venv: Path, dest: Path) -> None:
    """``dest`` as a virtualenv that scripts/setup.sh finds set up: its entries link to ``venv``'s,
    and its own install stamp is newer than the copy's pyproject.toml (so nothing is reinstalled,
    and nothing is written into ``venv``)."""
    dest.mkdir()
    for entry in venv.iterdir():
        if entry.name != ".uiface-installed":
            (dest / entry.name).symlink_to(entry)
    (dest / ".uiface-installed").touch()


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


def _env(tmp: str) -> dict[str, str]:
    """A new user's shell: no PYTHONPATH (the copy's own package runs), no Ray address or auth mode
    and no S3 endpoint or credentials of this test run; temporary files (embedded Rays' sessions) in ``tmp``."""
    drop = ("PYTHONPATH", "RAY_ADDRESS", "RAY_AUTH_MODE")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("AWS_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1", TMPDIR=tmp)
    return env


def _run_document(
    path: Path, clone: Path, env: dict, log: Path, ports: dict, timeout_s: float, before_teardown=None
) -> tuple[int, int]:
    """The ``test`` blocks of ``path`` in one shell, then ``before_teardown()`` (checks that need
    what the teardown stops), then its ``test teardown`` blocks; both exit codes."""
    blocks = shell_blocks(path)
    temp_dir = env["TMPDIR"]
    steps = [_adapt(body, ports, temp_dir) for info, body in blocks if info == "test"]
    teardown = [_adapt(body, ports, temp_dir) for info, body in blocks if info == "test teardown"]
    rc = _run("".join(f"echo '### block {i}'\n{s}" for i, s in enumerate(steps)), clone, env, log, timeout_s)
    try:
        if before_teardown is not None and rc == 0:
            before_teardown()
    finally:
        teardown_rc = _run("".join(teardown), clone, env, log, 180) if teardown else 0
    return rc, teardown_rc


def _run_in_fresh_copy(doc: Path, tmp_path: Path, prefix: str, timeout_s: float) -> tuple[Path, str, str]:
    """``doc``'s blocks in a fresh copy (no Ray head, no S3): ``(the copy, the commands' output, the
    temporary folder they used, removed by now)``; a failing block fails the test with the output's end."""
    clone = tmp_path / "clone"
    _fresh_copy(clone)
    temp_dir = tempfile.mkdtemp(prefix=prefix, dir="/tmp")  # short: Ray's socket paths have a length limit
    log = tmp_path / "commands.log"
    try:
        rc, _ = _run_document(doc, clone, _env(temp_dir), log, {}, timeout_s)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    output = log.read_text(errors="replace")
    assert rc == 0, output[-6000:]
    return clone, output, temp_dir


#: A Python warning from an installed library (pip's and setuptools' own, printed by setup, aside).
LIBRARY_WARNING = re.compile(r"site-packages/(?!setuptools/|pip/)\S+\.py:\d+: \w*Warning:")


@pytest.mark.slow
def test_readme_runs_as_written(lfw_dir, tmp_path):
    """Every ``bash test`` block of README.md: the main command, the identity-learning demonstration,
    a job, and the pipeline's dry run, each at toy scale (:data:`TINY`)."""
    clone, output, temp_dir = _run_in_fresh_copy(README, tmp_path, "rdm-", 900)
    out = clone / "out"
    assert (out / "pipeline" / "report.md").is_file() and (out / "pipeline" / "synthetic" / "preview.png").is_file()
    assert "[pipeline] 1/7 prepare_faces: already complete, would skip" in output  # the dry run after the run
    assert re.search(r"\[pipeline\]     [\d.e-]+ s per evaluation \(measured on 4 images, cpu\)", output), output[
        -3000:
    ]
    assert (out / "h2" / "loss.png").is_file() and (out / "h2" / "ablation_demo32" / "report" / "index.html").is_file()
    warned = [line for line in output.splitlines() if LIBRARY_WARNING.search(line)]
    assert not warned, warned  # a healthy run prints no library warnings (setup's build backend aside)
    assert not any(temp_dir in line for line in _command_lines()), "a job left processes behind"


@pytest.mark.slow
def test_official_md_runs_as_written(tmp_path):
    from uiface_ray.config import StorageConfig
    from uiface_ray.synth.manifest import read_manifest

    clone = tmp_path / "clone"
    _fresh_copy(clone)
    hashes = _release_files(tmp_path / "uiface-release")
    names = ("gcs", "dashboard", "client", "agent", "grpc", "metrics", "runtime_env")
    ports = dict(zip(sorted(names), _free_ports(len(names))))
    temp_dir = tempfile.mkdtemp(prefix="rayd-", dir="/tmp")  # short: Ray's socket paths have a length limit
    log = tmp_path / "commands.log"
    moto_pid = clone / "out" / "moto.pid"
    complete = []

    def the_dataset_is_in_the_recipes_bucket() -> None:
        storage = StorageConfig(
            endpoint_url=f"http://127.0.0.1:{_moto_port(moto_pid)}",
            access_key_id="testing",
            secret_access_key="testing",
        )
        complete.append(read_manifest("s3://my-bucket/uiface/synthetic-official-10k", storage).complete)

    try:
        rc, teardown_rc = _run_document(
            OFFICIAL, clone, _env(temp_dir), log, ports, 900, before_teardown=the_dataset_is_in_the_recipes_bucket
        )
    finally:
        _stop_head(clone / "out" / "ray-head.pid")
        _stop_head(moto_pid)  # if the teardown block did not
        shutil.rmtree(temp_dir, ignore_errors=True)
    output = log.read_text(errors="replace")
    assert rc == 0, output[-6000:]
    assert teardown_rc == 0, output[-3000:]
    assert complete == [True]
    assert not moto_pid.exists(), "the teardown did not stop the S3 stand-in"
    card = (clone / "out" / "official-card.md").read_text()
    assert f"`model_900000.ckpt` (sha256 `{hashes['model_900000.ckpt']}`)" in card
    assert "- Weights: non-EMA;" in card and "identities_10k.npy` (512-d), given" in card
    assert not any(temp_dir in line for line in _command_lines()), "the head left processes behind"


@pytest.mark.slow
def test_training_md_runs_as_written(lfw_dir, tmp_path):
    """docs/TRAINING.md's tiny twin, from its own face table (prepare, dlib embed) to the release's files."""
    clone, output, temp_dir = _run_in_fresh_copy(TRAINING, tmp_path, "trn-", 1200)
    out = clone / "out"
    assert (out / "faces_tiny.parquet").is_file() and (out / "autoencoder_paper_tiny").is_dir()
    assert (out / "train_diffusion_paper_tiny_diffusers" / "checkpoints" / "step-00000002" / "model").is_dir()
    assert (out / "paper_tiny_release" / "unet_config.yaml").is_file()
    assert "Traceback" not in output, output[-3000:]
    assert not any(temp_dir in line for line in _command_lines()), "a job left processes behind"


def _moto_port(pid_file: Path) -> int:
    """The port of the ``moto_server`` whose pid ``pid_file`` holds (from its command line: ``-p N``)."""
    argv = Path(f"/proc/{pid_file.read_text().strip()}/cmdline").read_bytes().decode().split("\0")
    return int(argv[argv.index("-p") + 1])


def _command_lines() -> list[str]:
    """The command line of every process on this machine (Linux /proc)."""
    lines = []
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(entry.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # ended meanwhile
            continue
    return lines
