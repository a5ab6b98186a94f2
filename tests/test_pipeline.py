"""The main command's job: stage configs, the no-data message, and (slow) the whole chain end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from uiface_ray.config import ConfigError, load_config
from uiface_ray.runtime.pipeline import PipelineConfig, check_faces_source, stage_config
from uiface_ray.synth.config import SynthesisConfig

ROOT = Path(__file__).resolve().parents[1]


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
    out = subprocess.run([sys.executable, str(ROOT / "jobs" / "pipeline.py"), f"--faces_source={tmp_path}/nowhere"],
                         capture_output=True, text=True, timeout=120)
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
    lfw_rel = os.path.relpath(lfw_dir, ROOT)
    tmp = tempfile.mkdtemp(prefix="uq", dir="/tmp")  # short: Ray's socket paths live under it
    args = [
        sys.executable, "jobs/pipeline.py", "--config", "configs/pipeline.yaml",
        f"--workdir={rel_work}/work", f"--generator_cache={rel_work}/gen",
        f"--faces_source={lfw_rel}/images", f"--people_file={lfw_rel}/peopleDevTrain.txt",
        "--train_config=configs/train_diffusion_tiny.yaml", "--max_images_per_identity=3",
        "--num_identities=2", "--images_per_identity=2", "--num_inference_steps=4",
        "--stages.prepare_faces.max_identities=6", "--stages.train_diffusion.max_steps=4",
        "--stages.train_diffusion.checkpoint_every=4", "--stages.train_diffusion.num_workers=1",
        "--stages.train_diffusion.grid.num_inference_steps=2", "--stages.train_diffusion.grid.num_identities=4",
        "--stages.make_identities.similarity_threshold=0.99", "--stages.make_identities.leakage_threshold=0.99",
        "--stages.metrics.msssim_size=48",
    ]
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
        for stage in ("prepare_faces", "embed", "train_diffusion", "make_identities", "synthesize", "metrics", "export"):
            assert f"| {stage} |" in report
        both = (first.stdout + first.stderr).splitlines()
        where = [i for i, line in enumerate(both) if "Traceback" in line]
        assert not where, "\n".join(both[max(0, where[0] - 5):where[0] + 60])
        second = subprocess.run(args, capture_output=True, text=True, timeout=1200, cwd=ROOT, env=env)
        assert second.returncode == 0, second.stderr[-3000:]
        assert "prepare_faces: already complete" in second.stdout and "embed: already complete" in second.stdout
        assert "all already complete" in second.stdout
        left = [p.name for p in Path(tmp).iterdir() if p.name.startswith("uiface-")]
        assert left == [], left
    finally:
        shutil.rmtree(ROOT / rel_work, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


def test_train_stage_keeps_yaml_sections_it_does_not_set(tmp_path):
    """The pipeline fills data.table; the YAML's other data keys survive (a deep merge)."""
    from uiface_ray.runtime import pipeline_stages

    class Recorder:
        embed_stamp = "x"
        generator = None

        def stage(self, name, fn, skip=False):
            self.name = name

    cfg = load_config(PipelineConfig, ROOT / "configs" / "pipeline.yaml", [f"--workdir={tmp_path}"])
    seen = {}
    original = pipeline_stages.stage_config

    def spy(cls, stage, base, overrides):
        built = original(cls, stage, base, overrides)
        seen[stage] = built
        return built

    pipeline_stages.stage_config = spy
    try:
        pipeline_stages.train(cfg, Recorder())
    finally:
        pipeline_stages.stage_config = original
    built = seen["train_diffusion"]
    assert built.data.table.endswith("faces_dlib.parquet") and built.data.min_images_per_identity == 5
    assert built.max_steps == 60


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
    out = subprocess.run([sys.executable, str(ROOT / "jobs" / "pipeline.py"), "--faces.source=/data/x"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "faces: unknown key (did you mean 'faces_source'?) [from command line --faces.source]" in out.stderr
