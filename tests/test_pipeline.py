"""The main command's job: stage configs, the no-data message, and (slow) the whole chain end to end."""

from __future__ import annotations

import json
import time
import subprocess
import sys
from pathlib import Path

import pytest

from uiface_ray.cli import load_config
from uiface_ray.config import ConfigError
from uiface_ray.runtime.config import PipelineConfig
from uiface_ray.runtime.pipeline import check_faces_source, stage_config
from uiface_ray.synth.config import SynthesisConfig

ROOT = Path(__file__).resolve().parents[1]


STAGE_NAMES = ("prepare_faces", "embed", "train_diffusion", "make_identities", "synthesize", "metrics", "export")


# The pipeline at toy scale: the flags the tests (and the docs test, on scripts/run.sh) add.
TINY_PIPELINE_FLAGS = (
    "--train_config=configs/train_diffusion_tiny.yaml",
    "--max_images_per_identity=3",
    "--num_identities=2",
    "--images_per_identity=2",
    "--num_inference_steps=4",
    "--stages.prepare_faces.max_identities=6",
    "--stages.train_diffusion.max_steps=4",
    "--stages.train_diffusion.checkpoint_every=4",
    "--stages.train_diffusion.num_workers=1",
    "--stages.train_diffusion.grid.num_inference_steps=2",
    "--stages.train_diffusion.grid.num_identities=4",
    "--stages.make_identities.similarity_threshold=0.99",
    "--stages.make_identities.leakage_threshold=0.99",
    "--stages.metrics.msssim_size=48",
)


def _tiny_pipeline(lfw_dir: Path, rel_work: str) -> list[str]:
    """``jobs/pipeline.py`` at toy scale, from the repository root with relative paths only."""
    import os

    lfw_rel = os.path.relpath(lfw_dir, ROOT)
    return [
        sys.executable,
        "jobs/pipeline.py",
        "--config",
        "configs/pipeline.yaml",
        f"--workdir={rel_work}/work",
        f"--generator_cache={rel_work}/gen",
        f"--faces_source={lfw_rel}/images",
        f"--people_file={lfw_rel}/peopleDevTrain.txt",
        *TINY_PIPELINE_FLAGS,
    ]


def test_example_config_loads():
    cfg = load_config(PipelineConfig, ROOT / "configs" / "pipeline.yaml")
    assert cfg.num_actors == 2 and cfg.ray.num_cpus == 2
    assert Path(ROOT / cfg.train_config).is_file()


def test_stage_override_error_names_stage_and_key():
    base = {"model": "m", "identities": "i", "output": "o"}
    with pytest.raises(ConfigError) as err:
        stage_config(SynthesisConfig, "synthesize", base, {"sampler": {"mode": "fancy"}})
    assert "stages.synthesize.sampler.mode" in str(err.value)
    ok = stage_config(SynthesisConfig, "synthesize", base, {"sampler": {"num_inference_steps": 7}})
    assert ok.sampler.num_inference_steps == 7 and ok.model == "m"


def test_missing_faces_says_how_to_point_at_data(tmp_path):
    cfg = PipelineConfig(faces_source=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as err:
        check_faces_source(cfg)
    msg = str(err.value)
    assert "nowhere" in msg and "train.rec" in msg and "one sub-folder per identity" in msg
    out = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "pipeline.py"), f"--faces_source={tmp_path}/nowhere"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.count("error:") == 1 and "Traceback" not in out.stderr


@pytest.mark.slow
def test_pipeline_end_to_end_tiny_from_repo_root_with_relative_paths(lfw_dir):
    """Every stage on real faces at toy scale, as scripts/run.sh runs it: from the repository root, with
    relative paths only (Ray Train workers and actors run elsewhere), into the export; a rerun skips
    what is complete, and no temporary folder is left behind."""
    import os
    import shutil
    import tempfile
    import uuid

    rel_work = f"out/pytest-pipeline-{uuid.uuid4().hex[:8]}"
    tmp = tempfile.mkdtemp(prefix="uq", dir="/tmp")  # short: Ray's socket paths live under it
    args = _tiny_pipeline(lfw_dir, rel_work)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1", "TMPDIR": tmp}
    try:
        first = subprocess.run(args, capture_output=True, text=True, timeout=1200, cwd=ROOT, env=env)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        work = ROOT / rel_work / "work"
        manifest = json.loads((work / "synthetic" / "manifest.json").read_text())
        assert manifest["num_rows"] == 4 and manifest["complete"] is True
        assert (work / "export").is_dir() and (work / "report.md").is_file()
        # the generator landed where it was asked, not under Ray's session folder
        assert list((ROOT / rel_work / "gen").glob("*/latest.json"))
        report = (work / "report.md").read_text()
        for stage in (
            "prepare_faces",
            "embed",
            "train_diffusion",
            "make_identities",
            "synthesize",
            "metrics",
            "export",
        ):
            assert f"| {stage} |" in report
        both = (first.stdout + first.stderr).splitlines()
        trained = [line for line in both if "[train] checkpoint step" in line]
        assert len(trained) == 1, trained  # each worker line reaches the driver once
        where = [i for i, line in enumerate(both) if "Traceback" in line]
        assert not where, "\n".join(both[max(0, where[0] - 5) : where[0] + 60])
        warned = [line for line in both if "Warning:" in line]
        assert not warned, warned  # a healthy run prints no library warnings (Ray Data's included)
        second = subprocess.run(args, capture_output=True, text=True, timeout=1200, cwd=ROOT, env=env)
        assert second.returncode == 0, second.stderr[-3000:]
        assert "prepare_faces: already complete" in second.stdout and "embed: already complete" in second.stdout
        assert "all already complete" in second.stdout
        left = [p.name for p in Path(tmp).iterdir() if p.name.startswith("uiface-")]
        assert left == [], left
    finally:
        shutil.rmtree(ROOT / rel_work, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


def test_train_stage_keeps_yaml_sections_it_does_not_set(tmp_path, monkeypatch):
    """The pipeline fills data.table; the YAML's other data keys survive (a deep merge)."""
    from uiface_ray.runtime.pipeline import Upstream, resolve_pipeline

    monkeypatch.chdir(ROOT)
    from uiface_ray.runtime.pipeline_stages import plan_train_diffusion

    cfg = resolve_pipeline(load_config(PipelineConfig, ROOT / "configs" / "pipeline.yaml", [f"--workdir={tmp_path}"]))
    built = plan_train_diffusion(cfg, Upstream(embedded=str(tmp_path / "faces_dlib.parquet"), embed_stamp="x")).config
    assert built.data.table.endswith("faces_dlib.parquet") and built.data.min_images_per_identity == 5
    assert built.max_steps == 60
    assert built.output.startswith(cfg.generator_cache)  # a cache folder keyed by config and data


def test_paths_resolved_at_the_driver_and_people_file_auto(tmp_path, monkeypatch):
    from uiface_ray.runtime.pipeline import resolve_pipeline

    monkeypatch.chdir(tmp_path)
    cfg = resolve_pipeline(PipelineConfig())
    assert cfg.workdir == str(tmp_path / "out" / "pipeline")
    assert cfg.faces_source == str((tmp_path / "../shared/data/lfw112/images").resolve())
    assert cfg.people_file == str((tmp_path / "../shared/data/lfw112/peopleDevTrain.txt").resolve())
    assert cfg.generator_cache == str(tmp_path / ".cache" / "generators")
    own = resolve_pipeline(PipelineConfig(faces_source="my_faces"))
    assert own.faces_source == str(tmp_path / "my_faces") and own.people_file is None  # every folder of yours
    s3 = resolve_pipeline(PipelineConfig(workdir="s3://bucket/run", people_file="people.txt"))
    assert s3.workdir == "s3://bucket/run" and s3.people_file == str(tmp_path / "people.txt")


def test_misspelt_flag_names_the_command_line_and_suggests_the_key():
    out = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "pipeline.py"), "--faces.source=/data/x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "faces: unknown key (did you mean 'faces_source'?) [from command line --faces.source]" in out.stderr


# ---------------------------------------------------------------------------------------------
# the runner, on stand-in stages (no Ray)


class _Toy(__import__("uiface_ray.config", fromlist=["Config"]).Config):
    value: int = 0


def _toy_stages(workdir: Path, ran: list[str], fail: str | None = None, value: int = 1):
    from uiface_ray.errors import InputError
    from uiface_ray.runtime.pipeline import Stage, StageOutcome, StagePlan

    def make(name: str, marker: bool):
        def plan(cfg, up):
            def run(c):
                ran.append(name)
                if name == fail:
                    raise InputError(f"bad input to {name}")
                (workdir / name).write_text(str(c.value))
                return StageOutcome(f"{name} done", {"dataset": str(workdir / name)} if name == "b" else {})

            out = str(workdir / name)
            return StagePlan(
                _Toy(value=value),
                run,
                complete_marker=out if marker else None,
                produces={"faces": out} if name == "a" else {},
            )

        return Stage(name, plan)

    return [make("a", True), make("b", True), make("c", False)]


def test_runner_skips_complete_stages_and_passes_outputs_forward(tmp_path):
    from uiface_ray.runtime.pipeline import run_stages

    cfg = PipelineConfig(workdir=str(tmp_path))
    ran: list[str] = []
    result = run_stages(cfg, _toy_stages(tmp_path, ran), log=lambda _m: None)
    assert ran == ["a", "b", "c"] and [r.skipped for r in result.stages] == [False, False, False]
    assert result.upstream.faces == str(tmp_path / "a") and result.upstream.dataset == str(tmp_path / "b")
    assert (tmp_path / "a.stamp").is_file() and not (tmp_path / "c.stamp").exists()
    ran.clear()
    again = run_stages(cfg, _toy_stages(tmp_path, ran), log=lambda _m: None)
    assert ran == ["c"] and [r.skipped for r in again.stages] == [True, True, False]
    assert again.upstream.faces == str(tmp_path / "a")  # a skipped stage still hands its outputs on
    ran.clear()
    run_stages(cfg, _toy_stages(tmp_path, ran, value=2), log=lambda _m: None)  # another config: rerun
    assert ran == ["a", "b", "c"]


def test_a_failing_stage_is_named_and_earlier_outputs_stay(tmp_path):
    from uiface_ray.runtime.pipeline import PipelineStageError, run_stages

    cfg = PipelineConfig(workdir=str(tmp_path))
    ran: list[str] = []
    with pytest.raises(PipelineStageError, match="pipeline stage b: bad input to b"):
        run_stages(cfg, _toy_stages(tmp_path, ran, fail="b"), log=lambda _m: None)
    assert ran == ["a", "b"] and (tmp_path / "a").read_text() == "1" and (tmp_path / "a.stamp").is_file()
    assert not (tmp_path / "b.stamp").exists()
    ran.clear()
    run_stages(cfg, _toy_stages(tmp_path, ran), log=lambda _m: None)
    assert ran == ["b", "c"]  # the rerun resumes at the failed stage


def test_stage_plans_need_no_ray_and_validate_the_stage_config(tmp_path, monkeypatch):
    """Every stage's config is built from the pipeline's and checked, without running anything."""
    from uiface_ray.runtime.pipeline import Upstream, resolve_pipeline
    from uiface_ray.runtime.pipeline_stages import STAGES

    monkeypatch.chdir(ROOT)
    cfg = resolve_pipeline(load_config(PipelineConfig, ROOT / "configs" / "pipeline.yaml", [f"--workdir={tmp_path}"]))
    up = Upstream(faces="f", embedded="e", embed_stamp="x", generator="g", identities="i", dataset="d", metrics="m")
    names = [s.name for s in STAGES]
    assert names == ["prepare_faces", "embed", "train_diffusion", "make_identities", "synthesize", "metrics", "export"]
    plans = {stage.name: stage.plan(cfg, up) for stage in STAGES}
    assert plans["embed"].config.input == "f" and plans["synthesize"].config.identities == "i"
    assert plans["export"].config.metrics == "m" and plans["metrics"].config.data == "d"
    assert plans["export"].config.ray == cfg.ray == plans["synthesize"].config.ray  # the export runs on Ray too
    assert plans["make_identities"].config.model == "g"
    with pytest.raises(ConfigError, match="pipeline stage synthesize: stages.synthesize.seed"):
        bad = cfg.model_copy(update={"stages": cfg.stages.model_copy(update={"synthesize": {"seed": "x"}})})
        plans["synthesize"] = STAGES[4].plan(bad, up)


SIGNAL_LINES = {
    "SIGTERM": (143, "terminated: stopped; rerun the same command to resume"),
    "SIGINT": (130, "interrupted: stopped; rerun the same command to resume"),
}


def _stop_at_stage(args: list[str], env: dict, stage: str, sig_name: str) -> None:
    """Run the pipeline, send ``sig_name`` to its driver as soon as ``stage`` starts running, and
    check the job's own last line, exit code and that nothing printed a traceback or Ray's dump."""
    import os
    import signal
    import time

    k = STAGE_NAMES.index(stage) + 1
    want = f"[pipeline] {k}/{len(STAGE_NAMES)} {stage}: running"
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    lines: list[str] = []
    try:
        deadline = time.time() + 900
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith(want):
                time.sleep(0.5)  # inside the stage
                os.kill(proc.pid, getattr(signal, sig_name))
                break
            assert time.time() < deadline, "\n".join(lines[-40:])
        else:
            raise AssertionError(f"{stage} never started:\n" + "\n".join(lines[-40:]))
        lines += proc.stdout.read().splitlines()
        code = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = "\n".join(lines)
    after = text[text.index(want) :]  # what the job printed once signalled
    want_code, want_line = SIGNAL_LINES[sig_name]
    assert code == want_code, f"{stage} / {sig_name}: exit {code}\n{after[:2500]}\n...\n{after[-2500:]}"
    assert [line for line in lines if line.strip()][-1] == want_line, text[-4000:]
    assert "Traceback" not in text and "received at time" not in text, text[-4000:]


def _walk_stages(lfw_dir: Path, stages: tuple[str, ...], sig_name: str, rerun: bool) -> None:
    """Stop the pipeline at each of ``stages`` in turn (each rerun resumes where the last stopped),
    then (``rerun``) run it to the end."""
    import os
    import shutil
    import tempfile
    import uuid

    rel_work = f"out/pytest-pipeline-sig-{uuid.uuid4().hex[:8]}"
    tmp = tempfile.mkdtemp(prefix="uq", dir="/tmp")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1", "TMPDIR": tmp, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    args = _tiny_pipeline(lfw_dir, rel_work)
    try:
        for stage in stages:
            _stop_at_stage(args, env, stage, sig_name)
        if rerun:
            done = subprocess.run(args, capture_output=True, text=True, timeout=1800, cwd=ROOT, env=env)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            assert "[pipeline] report ->" in done.stdout
            manifest = json.loads((ROOT / rel_work / "work" / "synthetic" / "manifest.json").read_text())
            assert manifest["complete"] is True
    finally:
        shutil.rmtree(ROOT / rel_work, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


def test_sigterm_in_the_first_stage_ends_with_the_jobs_line(lfw_dir):
    """The default suite's representative: SIGTERM while the pipeline prepares faces (Ray is up)."""
    _walk_stages(lfw_dir, ("prepare_faces",), "SIGTERM", rerun=False)


@pytest.mark.slow
@pytest.mark.parametrize("sig_name", ["SIGTERM", "SIGINT"])
def test_signal_at_each_stage_then_the_rerun_completes(lfw_dir, sig_name):
    """SIGTERM / SIGINT at each of the seven stages (each run resumes the last): the job's own line
    and 143/130 every time, and the rerun completes (issue 27 item 2)."""
    _walk_stages(lfw_dir, STAGE_NAMES, sig_name, rerun=True)


def test_stage_settings_are_pipeline_fields_and_build_the_stage_configs_of_before(tmp_path, monkeypatch):
    """The settings the pipeline gave its stages in code are PipelineConfig fields (issue 33 item 3),
    shown by --help; their defaults build the very stage configs of before (same stamps, so a complete
    stage stays complete), and each field reaches its stage."""
    from uiface_ray.cli import config_help
    from uiface_ray.evaluate.config import MetricsConfig
    from uiface_ray.identities.config import MakeIdentitiesConfig
    from uiface_ray.runtime.pipeline import Upstream, resolve_pipeline, stamp
    from uiface_ray.runtime.pipeline_stages import STAGES

    monkeypatch.chdir(ROOT)
    up = Upstream(faces="f", embedded="e", embed_stamp="x", generator="g", identities="i", dataset="d", metrics="m")

    def plans(*flags: str) -> dict:
        cfg = load_config(PipelineConfig, ROOT / "configs" / "pipeline.yaml", [f"--workdir={tmp_path}", *flags])
        cfg = resolve_pipeline(cfg)
        return cfg, {stage.name: stage.plan(cfg, up).config for stage in STAGES}

    cfg, now = plans()
    store = {"storage": cfg.storage.model_dump()}
    ray = {"ray": cfg.ray.model_dump(), **store}
    before = {  # the literal stage settings of pipeline_stages.py before they were fields
        "synthesize": stage_config(
            SynthesisConfig,
            "synthesize",
            {
                **{"model": "g", "identities": "i", "output": f"{tmp_path}/synthetic", "seed": 0, **ray},
                **{"images_per_identity": 4, "identities_per_shard": 2, "batch_size": 8, "image_format": "png"},
                "sampler": {"mode": "uiface", "num_inference_steps": 25},
                "actors": {"num_actors": 2},
            },
            {},
        ),
        "make_identities": stage_config(
            MakeIdentitiesConfig,
            "make_identities",
            {
                **{"model": "g", "output": f"{tmp_path}/identities.parquet", "num_identities": 16, "seed": 0},
                **{"training_embeddings": "e", "encoder": {"kind": "dlib"}, "num_inference_steps": 25},
                **{"candidates_per_task": 16, "similarity_threshold": 0.9, "leakage_threshold": 0.9},
                **{"max_candidates": 16 * 16, "actors": {"num_actors": 2}, **ray},
            },
            {},
        ),
        "metrics": stage_config(
            MetricsConfig,
            "metrics",
            {"data": "d", "real": "e", "out": f"{tmp_path}/metrics", "encoder": {"kind": "dlib"}, **store}
            | {"real_max_images": 500, "k": 3},
            {},
        ),
    }
    for name, old in before.items():
        assert now[name] == old and stamp(now[name]) == stamp(old), name
    assert now["prepare_faces"].resolution == 112 and now["embed"].encoder.kind == "dlib"

    flags = {
        "synthesis_batch_size=4": ("synthesize", lambda c: c.batch_size == 4),
        "identities_per_shard=3": ("synthesize", lambda c: c.identities_per_shard == 3),
        "image_format=jpeg": ("synthesize", lambda c: c.image_format == "jpeg"),
        "sampler_mode=baseline": ("synthesize", lambda c: c.sampler.mode == "baseline"),
        "candidates_per_task=8": ("make_identities", lambda c: c.candidates_per_task == 8),
        "max_candidates_per_identity=3": ("make_identities", lambda c: c.max_candidates == 3 * 16),
        "metrics_k=5": ("metrics", lambda c: c.k == 5),
        "metrics_real_max_images=100": ("metrics", lambda c: c.real_max_images == 100),
        "face_resolution=64": ("prepare_faces", lambda c: c.resolution == 64),
        "encoder.batch_size=7": ("metrics", lambda c: c.encoder.batch_size == 7),
    }
    _, changed = plans(*(f"--{flag}" for flag in flags))
    for flag, (stage, check) in flags.items():
        assert check(changed[stage]), flag
    assert all(changed[s].encoder.batch_size == 7 for s in ("embed", "make_identities", "metrics"))
    shown = config_help(PipelineConfig, "jobs/pipeline.py", None)
    for flag in flags:
        assert f"  --{flag.split('=')[0]}  [" in shown, flag


def test_each_run_keeps_its_report_and_a_rerun_shows_the_original_times(tmp_path):
    """Every run writes runs/<run>.md and runs/<run>.json and leaves the earlier ones; report.md is the
    newest with a link to it; a rerun's reused stages say which run did them, when, and how long it took
    (issue 34 item 5)."""
    import dataclasses

    from uiface_ray.runtime.pipeline import read_runs, run_stages, write_report

    cfg = PipelineConfig(workdir=str(tmp_path))
    ran: list[str] = []
    first = run_stages(cfg, _toy_stages(tmp_path, ran), log=lambda _m: None)
    first.stages = [dataclasses.replace(r, seconds=r.seconds + 12.5) for r in first.stages]  # a measurable time
    write_report(cfg, first)
    (run1,) = read_runs(str(tmp_path), cfg.storage)
    report1 = (tmp_path / "runs" / f"{run1['run']}.md").read_text()
    assert "| a | 12.5 | ran now |" in report1 and "total: 38 s" in report1

    ran.clear()
    second = run_stages(cfg, _toy_stages(tmp_path, ran), log=lambda _m: None)
    assert ran == ["c"]
    write_report(cfg, second)
    run1_again, run2 = read_runs(str(tmp_path), cfg.storage)
    assert run1_again == run1 and (tmp_path / "runs" / f"{run1['run']}.md").read_text() == report1
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(
        f"{r['run']}.{ext}" for r in (run1, run2) for ext in ("md", "json")
    )
    newest = (tmp_path / "report.md").read_text()
    assert newest.splitlines()[0].startswith(f"newest run: [runs/{run2['run']}.md]")
    assert newest.endswith((tmp_path / "runs" / f"{run2['run']}.md").read_text())
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(first.stages[0].started))
    assert f"| a | 0.0 | reused: ran in run `{run1['run']}` at {when}, took 12.5 s |" in newest
    assert "| c | " in newest and "ran now" in newest.split("| c |")[1].splitlines()[0]
    assert "total: 0 s (25 s with the reused stages' original times)" in newest  # a and b: 12.5 s each
    from uiface_ray.runtime.estimate_probe import last_run_line

    assert last_run_line(cfg).startswith(f"the last run of this workdir, {run2['run']} at ")  # the dry run's line


def test_a_stopped_run_keeps_the_record_of_its_finished_stages(tmp_path, monkeypatch):
    """A run that fails (or is stopped) at stage b still records stage a, so the rerun that reuses a
    says when and how long it took."""
    import contextlib

    import uiface_ray.runtime.pipeline_stages as ps
    from uiface_ray.runtime.pipeline import PipelineStageError, read_runs

    ran: list[str] = []
    monkeypatch.setattr(ps, "ray_session", lambda _ray: contextlib.nullcontext())
    cfg = PipelineConfig(workdir=str(tmp_path / "work"), faces_source=str(tmp_path), people_file=None)
    (tmp_path / "work").mkdir()
    monkeypatch.setattr(ps, "STAGES", _toy_stages(tmp_path / "work", ran, fail="b"))
    with pytest.raises(PipelineStageError):
        ps.run_pipeline(cfg, log=lambda _m: None)
    (stopped,) = read_runs(cfg.workdir, cfg.storage)
    assert [s["name"] for s in stopped["stages"]] == ["a"] and "bad input to b" in stopped["stopped"]
    assert (
        "**stopped** after 1 stage(s): PipelineStageError: pipeline stage b: bad input to b"
        in (tmp_path / "work" / "runs" / f"{stopped['run']}.md").read_text()
    )
    monkeypatch.setattr(ps, "STAGES", _toy_stages(tmp_path / "work", ran))
    result = ps.run_pipeline(cfg, log=lambda _m: None)
    report = Path(result.report).read_text()
    assert f"| a | 0.0 | reused: ran in run `{stopped['run']}` at " in report and "| b | " in report
    assert len(read_runs(cfg.workdir, cfg.storage)) == 2
